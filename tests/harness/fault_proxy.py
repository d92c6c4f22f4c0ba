#!/usr/bin/python3
"""A reverse proxy in front of a test registry that breaks blob downloads on purpose.

Usage: fault_proxy.py --upstream 127.0.0.1:PORT --mode MODE --port-file FILE

Binds 127.0.0.1:0, writes its port to FILE (atomically) once it serves, and exits on SIGTERM.
Only successful blob GETs (/v2/<name>/blobs/<digest>) are faulted; manifests, /v2/, uploads and
everything else pass through unchanged. Modes:
  pass           plain proxy
  truncate       send the headers with the full Content-Length, about half the body, then close
  corrupt        flip one byte in the middle of the body (same length)
  truncate-once  truncate only the first GET of each blob, pass later ones (tests retries)
  corrupt-once   corrupt only the first GET of each blob
  stall          for blobs over 1 MiB: send the headers and about half the body, then nothing more
                 until the client hangs up (tests deadlines and cancellation mid-transfer);
                 smaller blobs pass
GET /_fault_proxy/stats (answered by the proxy itself) returns counters as JSON.
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOB_PATH = re.compile(r"^/v2/.+/blobs/[A-Za-z0-9_+.-]+:[A-Fa-f0-9]+$")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
CHUNK = 64 * 1024
STALL_MIN_BYTES = 1 << 20
MODES = ("pass", "truncate", "corrupt", "truncate-once", "corrupt-once", "stall")


class State:
    def __init__(self, upstream, mode):
        host, _, port = upstream.rpartition(":")
        self.upstream_host = host or "127.0.0.1"
        self.upstream_port = int(port)
        self.mode = mode
        self.lock = threading.Lock()
        self.seen_blobs = set()
        self.stats = {"requests": 0, "blob_gets": 0, "truncated": 0, "corrupted": 0, "stalled": 0}

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def fault_for(self, path):
        """The fault to inject into this blob GET: None, 'truncate' or 'corrupt'."""
        if self.mode == "pass":
            return None
        if self.mode in ("truncate", "corrupt", "stall"):
            return self.mode
        with self.lock:
            first = path not in self.seen_blobs
            self.seen_blobs.add(path)
        return self.mode.split("-")[0] if first else None


class ProxyHandler(BaseHTTPRequestHandler):
    state: State = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fault_proxy: %s\n" % (fmt % args))

    def do_GET(self):
        if self.path == "/_fault_proxy/stats":
            with self.state.lock:
                body = json.dumps(self.state.stats).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.proxy()

    def read_request_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length) if length else None

    def proxy(self):
        self.state.count("requests")
        body = self.read_request_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(
            self.state.upstream_host, self.state.upstream_port, timeout=60
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            is_blob_get = self.command == "GET" and BLOB_PATH.match(self.path.split("?")[0])
            fault = None
            if is_blob_get and response.status in (200, 206):
                self.state.count("blob_gets")
                fault = self.state.fault_for(self.path)
            self.relay(response, fault)
        except (ConnectionError, socket.timeout, http.client.HTTPException) as e:
            self.log_message("upstream error: %s", e)
            self.close_connection = True
        finally:
            upstream.close()

    def relay(self, response, fault):
        length = response.getheader("Content-Length")
        if length is None and self.command != "HEAD":
            # Upstream streamed without a length: buffer it (only small non-blob bodies do).
            data = response.read()
            length = str(len(data))
        else:
            data = None
        self.log_request(response.status)
        self.send_response_only(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", length)
        if fault == "truncate":
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if data is not None:
            self.wfile.write(data)
            return
        total = int(length)
        if fault == "stall" and total > STALL_MIN_BYTES:
            self.stream(response, total // 2, None)
            self.wfile.flush()
            self.state.count("stalled")
            self.wait_for_hang_up()
            self.close_connection = True
            return
        if fault == "truncate":
            self.stream(response, total // 2, None)
            self.state.count("truncated")
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        flip_at = total // 2 if fault == "corrupt" and total > 0 else None
        self.stream(response, total, flip_at)
        if flip_at is not None:
            self.state.count("corrupted")

    def wait_for_hang_up(self):
        """Blocks until the client closes the connection (or five minutes pass)."""
        self.connection.settimeout(300)
        try:
            while self.connection.recv(CHUNK):
                pass
        except OSError:
            pass

    def stream(self, response, limit, flip_at):
        sent = 0
        while sent < limit:
            chunk = response.read(min(CHUNK, limit - sent))
            if not chunk:
                break
            if flip_at is not None and sent <= flip_at < sent + len(chunk):
                buf = bytearray(chunk)
                buf[flip_at - sent] ^= 0xFF
                chunk = bytes(buf)
            self.wfile.write(chunk)
            sent += len(chunk)


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    ProxyHandler.state = State(args.upstream, args.mode)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
    server.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    write_atomically(args.port_file, str(server.server_address[1]))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
