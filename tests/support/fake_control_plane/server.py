#!/usr/bin/python3
"""A stand-in for the ECS control plane a node agent talks to, on loopback, for tests.

One asyncio process with two HTTP listeners on 127.0.0.1 (ports chosen by the kernel):
- the agent's side: the ECS API (POST /), the ACS websocket (GET /ws) and the TCS websocket
  (GET /tcs/ws), every request and handshake SigV4-verified with botocore;
- the test's side: the control API (see control.py and README.md).

When ready it prints one JSON line on stdout, {"api_port", "control_port", "endpoint",
"control", "pid"} (and writes the same line to --ports-file if given). SIGTERM or SIGINT (or POST
/shutdown, or with --exit-on-stdin-eof the end of stdin) closes the websockets with 1001 and
exits 0.

Run with Debian's Python and its python3-aiohttp and python3-botocore.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from aiohttp import web  # noqa: E402

from control import Control  # noqa: E402
from ecs_api import EcsApi  # noqa: E402
from models import Model  # noqa: E402
from recorder import Recorder  # noqa: E402
from sessions import Channel  # noqa: E402
from sigv4 import Key, Verifier  # noqa: E402

DEFAULT_SETTINGS = {
    # SigV4: the allowed clock skew, and whether '+' in a query means a space (it does not in
    # SigV4's canonical form; AWS front ends tolerate it).
    "max_skew_seconds": 900,
    "plus_is_space": False,
    # RegisterContainerInstance: the zone returned as ecs.availability-zone; attributes left out
    # of or changed in the answer (name -> value, null for no value), to test the agent's check
    # that every attribute it sent came back; clusters that exist (null: any).
    "availability_zone": None,
    "rci_drop_attributes": [],
    "rci_override_attributes": {},
    "known_clusters": None,
    # DiscoverPollEndpoint and the handshakes insist on a registered container instance.
    "require_registered_instance": True,
    # A handshake with a missing, unknown or wrong query key is refused (400) rather than only
    # recorded as a violation.
    "strict_query": True,
    # DiscoverPollEndpoint answers: "auto" (this server), a URL, or null (left out).
    "acs_endpoint": "auto",
    "tcs_endpoint": "auto",
    "service_connect_endpoint": None,
    # Heartbeats the server sends on its own (0: none).
    "acs_heartbeat_interval_ms": 0,
    "tcs_heartbeat_interval_ms": 0,
    # TCS answers every publish request with its Ack*; frames must be signed.
    "tcs_auto_ack": True,
    "tcs_require_signed_frames": True,
    # ACS answers a TaskStopVerificationMessage by confirming every candidate.
    "acs_auto_stop_verification_ack": False,
}


class ControlPlane:
    def __init__(self, args):
        self.region = args.region
        self.account = args.account
        self.keys = {
            args.access_key: Key(args.access_key, args.secret_key, args.session_token or "")
        }
        self.settings = json.loads(json.dumps(DEFAULT_SETTINGS))
        self.settings["max_skew_seconds"] = args.max_skew_seconds
        self.settings["availability_zone"] = f"{args.region}a"
        self.recorder = Recorder(args.max_events, args.max_bytes)
        self.instances = {}  # ARN -> instance
        self.client_tokens = {}  # (cluster, clientToken) -> ARN
        self.faults = []  # [{op, count, status, type, message, body, delay_ms, drop}]
        self.channels = {
            "acs": Channel(self, "acs", Model("acs-api-2.json")),
            "tcs": Channel(self, "tcs", Model("tcs-api-2.json")),
        }
        self.api = EcsApi(self)
        self.stop = asyncio.Event()
        self.api_port = self.control_port = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def acs_endpoint(self):
        return self.endpoint  # the agent appends /ws

    @property
    def tcs_endpoint(self):
        return f"{self.endpoint}/tcs"  # the agent appends /ws

    def arn(self, resource):
        return f"arn:aws:ecs:{self.region}:{self.account}:{resource}"

    def verifier(self):
        return Verifier(
            self.region,
            "ecs",
            self.keys.values(),
            max_skew_seconds=self.settings["max_skew_seconds"],
            plus_is_space=self.settings["plus_is_space"],
        )

    def take_fault(self, op):
        for fault in self.faults:
            if fault["op"] == op:
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self.faults.remove(fault)
                return dict(fault)
        return None

    # --- the agent's listener -----------------------------------------------------------------

    def agent_app(self):
        app = web.Application(client_max_size=8 << 20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    async def dispatch(self, request):
        path, _, raw_query = request.raw_path.partition("?")
        body = await request.read()
        route = {("POST", "/"): "api", ("GET", "/ws"): "acs", ("GET", "/tcs/ws"): "tcs"}.get(
            (request.method, path)
        )
        if route is None:
            await self.recorder.add(
                "http", method=request.method, path=request.raw_path, status=404
            )
            await self.recorder.violation(
                "http", f"{request.method} {request.raw_path} is not a route of the control plane"
            )
            return web.json_response(
                {"__type": "UnknownOperationException", "message": "no such route"}, status=404
            )

        verdict = self.verifier().verify(
            request.method, path, raw_query, list(_raw_headers(request)), body
        )
        if not verdict.ok:
            where = "api" if route == "api" else f"{route}-handshake"
            await self.recorder.signature_failure(
                where,
                verdict,
                method=request.method,
                path=request.raw_path,
                target=request.headers.get("X-Amz-Target"),
            )
        if route != "api":
            return await self.channels[route].handshake(request, verdict, raw_query)
        if not verdict.ok:
            target = request.headers.get("X-Amz-Target", "")
            answer = {"__type": verdict.error_type, "message": verdict.reason}
            await self.recorder.add(
                "api",
                op=target.rpartition(".")[2],
                status=403,
                response=answer,
                signature=verdict.to_json(),
                body=None,
            )
            return web.json_response(answer, status=403, content_type="application/x-amz-json-1.1")
        answer = await self.api.handle(request, body, verdict)
        if answer is None:
            request.transport.abort()
            return web.Response(status=500)
        status, payload = answer
        return web.json_response(payload, status=status, content_type="application/x-amz-json-1.1")

    # --- lifecycle ----------------------------------------------------------------------------

    async def shutdown_sessions(self):
        for channel in self.channels.values():
            for conn in channel.open_connections():
                try:
                    await asyncio.wait_for(channel.close(conn, 1001, "stand-in shutting down"), 2)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    await channel.close(conn, abrupt=True)


def _raw_headers(request):
    for name, value in request.raw_headers:
        yield name.decode("latin-1"), value.decode("latin-1")


async def _listen(app, port):
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, shutdown_timeout=1.0, reuse_address=False)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    return runner, bound


class _StopAtEof(asyncio.Protocol):
    def __init__(self, stop):
        self.stop = stop

    def eof_received(self):
        self.stop.set()

    def connection_lost(self, exc):
        self.stop.set()


async def main(args):
    plane = ControlPlane(args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, plane.stop.set)
    if args.exit_on_stdin_eof:
        # The test holds the other end: if it dies without stopping us, we stop too.
        await loop.connect_read_pipe(lambda: _StopAtEof(plane.stop), sys.stdin)
    api_runner, plane.api_port = await _listen(plane.agent_app(), args.api_port)
    control_runner, plane.control_port = await _listen(Control(plane).app(), args.control_port)

    ready = json.dumps(
        {
            "api_port": plane.api_port,
            "control_port": plane.control_port,
            "endpoint": plane.endpoint,
            "control": f"http://127.0.0.1:{plane.control_port}",
            "pid": os.getpid(),
        }
    )
    if args.ports_file:
        temporary = args.ports_file + ".tmp"
        with open(temporary, "w") as f:
            f.write(ready + "\n")
        os.replace(temporary, args.ports_file)
    print(ready, flush=True)

    await plane.stop.wait()
    await plane.shutdown_sessions()
    await api_runner.cleanup()
    await control_runner.cleanup()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default="us-west-2")
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--access-key", default="AKIDFAKECONTROLPLANE")
    parser.add_argument("--secret-key", default="fake/control+plane/secret")
    parser.add_argument("--session-token", default="")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--ports-file", help="also write the ready line here (atomically)")
    parser.add_argument("--max-events", type=int, default=10000, help="events kept in memory")
    parser.add_argument(
        "--max-bytes", type=int, default=64 << 20, help="bytes of events kept in memory"
    )
    parser.add_argument("--max-skew-seconds", type=int, default=900, help="allowed X-Amz-Date skew")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin (a pipe) is closed"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
