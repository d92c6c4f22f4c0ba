#!/usr/bin/python3
"""A stand-in for the EC2 Instance Metadata Service (IMDSv2 only), for tests on loopback.

Binds 127.0.0.1 on the port given (0: any), prints the port on stdout, and serves until killed.
Like IMDS it hands out session tokens on PUT /latest/api/token (the TTL header is required) and
answers metadata GETs only with a valid X-aws-ec2-metadata-token, else 401.

Tests steer it through paths under /_control/ (no token needed):
  GET  /_control/stats          {"token_puts": n, "gets": n, "unauthorized": n, "requests": n}
  POST /_control/settings       JSON merged into the settings below
  POST /_control/revoke-tokens  forget every token issued (as an IMDS restart would)
Settings: delay (seconds before every metadata answer), status (answer every metadata request
with this HTTP status), role (null: no role attached), credentials (the role's JSON document).
"""

import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
TOKENS = {}  # token -> expiry (monotonic seconds)
STATS = {"token_puts": 0, "gets": 0, "unauthorized": 0, "requests": 0}
SETTINGS = {
    "delay": 0,
    "status": None,
    "role": "test-role",
    "region": "eu-west-3",
    "availability_zone": "eu-west-3b",
    "instance_id": "i-0123456789abcdef0",
    "credentials": {
        "Code": "Success",
        "LastUpdated": "2026-11-27T09:00:00Z",
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAFAKEIMDSKEY",
        "SecretAccessKey": "fake/imds+secret",
        "Token": "fake-imds-session-token",
        "Expiration": "2099-01-01T00:00:00Z",
    },
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: tests read failures from their own assertions
        pass

    def reply(self, status, body="", content_type="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def control(self):
        if self.command == "GET" and self.path == "/_control/stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS), "application/json")
        if self.command == "POST" and self.path == "/_control/settings":
            update = json.loads(self.read_body() or b"{}")
            with LOCK:
                SETTINGS.update(update)
            return self.reply(200, "ok")
        if self.command == "POST" and self.path == "/_control/revoke-tokens":
            self.read_body()
            with LOCK:
                TOKENS.clear()
            return self.reply(200, "ok")
        return self.reply(404, "no such control")

    def metadata_gate(self):
        """Applies the delay/status settings; True when the request was answered here."""
        with LOCK:
            STATS["requests"] += 1
            delay, status = SETTINGS["delay"], SETTINGS["status"]
        if delay:
            time.sleep(delay)
        if status:
            self.reply(status, "injected failure")
            return True
        return False

    def do_PUT(self):
        self.read_body()
        if self.path.startswith("/_control/"):
            return self.control()
        if self.metadata_gate():
            return
        if self.path != "/latest/api/token":
            return self.reply(405 if self.path.startswith("/latest/") else 404)
        if "X-Forwarded-For" in self.headers:  # IMDS refuses proxied token requests
            return self.reply(403, "Forbidden")
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self.reply(400, "Missing or Invalid Parameters")
        if not 1 <= ttl <= 21600:
            return self.reply(400, "Missing or Invalid Parameters")
        token = secrets.token_urlsafe(32)
        with LOCK:
            TOKENS[token] = time.monotonic() + ttl
            STATS["token_puts"] += 1
        self.send_response(200)
        self.send_header("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))
        self.send_header("Content-Length", str(len(token)))
        self.end_headers()
        self.wfile.write(token.encode())

    def do_POST(self):
        if self.path.startswith("/_control/"):
            return self.control()
        self.read_body()
        return self.reply(405)

    def do_GET(self):
        if self.path.startswith("/_control/"):
            return self.control()
        if self.metadata_gate():
            return
        token = self.headers.get("X-aws-ec2-metadata-token")
        with LOCK:
            valid = token is not None and TOKENS.get(token, 0) > time.monotonic()
            STATS["gets" if valid else "unauthorized"] += 1
            settings = json.loads(json.dumps(SETTINGS))
        if not valid:
            return self.reply(401, "Unauthorized")
        base = "/latest/meta-data/"
        role = settings["role"]
        values = {
            base + "placement/region": settings["region"],
            base + "placement/availability-zone": settings["availability_zone"],
            base + "instance-id": settings["instance_id"],
        }
        if role:
            values[base + "iam/security-credentials/"] = role
            values[base + "iam/security-credentials/" + role] = json.dumps(
                settings["credentials"], indent=2
            )
        if self.path not in values:
            return self.reply(404, "Not Found")
        return self.reply(200, values[self.path])


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
