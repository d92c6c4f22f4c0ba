#!/usr/bin/python3
"""A SigV4-signed websocket client for testing the stand-in without the agent: connects to an ACS
or TCS URL, sends the given frames, and prints one JSON line per event on stdout until the server
closes the connection (or SIGTERM):

  {"event": "connected"}
  {"event": "frame", "data": <the frame, parsed if JSON, else the text>}
  {"event": "closed", "code": <close code or null>}
  {"event": "handshake_failed", "status": 403, "body": "..."}

The upgrade GET is signed with botocore exactly as sent (spaces in the query as %20). With
--sign-frames each frame is sent the way the agent sends to TCS: the header block of a signed GET
of the same URL with the frame as its body, a blank line, then the frame.
Exit status: 0 after a close, 1 if the handshake failed, 2 on a usage error.
"""

import argparse
import asyncio
import json
import signal
import sys
from urllib.parse import urlsplit

import aiohttp
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_headers(url, args, body=b""):
    """The headers of a GET of `url` (http or ws scheme) signed by `args`' credentials."""
    parts = urlsplit(url)
    http_url = parts._replace(scheme="http").geturl()
    request = AWSRequest(method="GET", url=http_url, headers={"Host": parts.netloc}, data=body)
    SigV4Auth(
        Credentials(args.access_key, args.secret_key, args.session_token or None),
        args.service,
        args.region,
    ).add_auth(request)
    return dict(request.headers.items())


def emit(obj):
    print(json.dumps(obj), flush=True)


async def run(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    headers = signed_headers(args.url, args)
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                yarl.URL(args.url, encoded=True), headers=headers, autoping=True
            )
        except aiohttp.WSServerHandshakeError as e:
            emit({"event": "handshake_failed", "status": e.status, "body": e.message})
            return 1
        emit({"event": "connected"})
        for text in args.send:
            if args.sign_frames:
                frame_headers = signed_headers(args.url, args, text.encode("utf-8"))
                head = "".join(f"{k}: {v}\r\n" for k, v in sorted(frame_headers.items()))
                text = head + "\r\n" + text
            await ws.send_str(text)

        async def receive():
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        data = msg.data
                    emit({"event": "frame", "data": data})

        receiver = asyncio.ensure_future(receive())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([receiver, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper.done():
            await ws.close()
        receiver.cancel()
        stopper.cancel()
        emit({"event": "closed", "code": ws.close_code})
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="ws://127.0.0.1:PORT/ws?... exactly as to be sent"
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--session-token", default="")
    parser.add_argument("--service", default="ecs")
    parser.add_argument(
        "--send", action="append", default=[], help="a text frame to send after connecting"
    )
    parser.add_argument(
        "--sign-frames", action="store_true", help="sign each frame as the agent does for TCS"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
