#!/usr/bin/python3
"""A Docker-registry Bearer token server for the integration-test harness.

Implements the client side of the distribution token protocol that the agent must speak:
GET (or OAuth2 POST) /token?service=S&scope=repository:NAME:pull,push with HTTP Basic credentials
returns {"token", "access_token", "expires_in", "issued_at"}. The token is an RS256 JWT whose
header carries the signing certificate in `x5c`; the registry trusts it because the same
self-signed certificate is its `rootcertbundle`. Requests without credentials get 401.

GET /stats returns counters (tokens issued, refusals) so tests can check token caching.

Usage: token_server.py --user U --password-file F --issuer I --service S
                       --cert-out CERT.pem --port-file FILE
Binds 127.0.0.1:0 and writes the port to FILE (atomically) once it is ready to serve.
"""

import argparse
import base64
import binascii
import datetime
import hmac
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME_SECONDS = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_signing_identity(common_name: str):
    """A fresh RSA key and a self-signed certificate for it (the registry's trust root)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def parse_scope(scope: str):
    """'repository:a/b:pull,push' -> {'type','name','actions'}; names may not hold ':' here."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}


class TokenIssuer:
    def __init__(self, args):
        self.user = args.user
        with open(args.password_file) as f:
            self.password = f.read().strip()
        self.issuer = args.issuer
        self.service = args.service
        self.key, self.cert = make_signing_identity(args.issuer)
        self.x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.lock = threading.Lock()
        self.stats = {"tokens_issued": 0, "refused": 0, "requests": 0}

    def count(self, key):
        with self.lock:
            self.stats[key] += 1

    def check_credentials(self, user, password) -> bool:
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password

    def issue(self, subject: str, scopes):
        now = int(time.time())
        access = [s for s in (parse_scope(x) for x in scopes) if s]
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing_input + "." + b64url(signature)
        self.count("tokens_issued")
        return {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "issued_at": datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
        }


class Handler(BaseHTTPRequestHandler):
    issuer: TokenIssuer = None  # set on the class before serving
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("token_server: %s %s\n" % (self.address_string(), fmt % args))

    def send_json(self, status, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, why):
        self.issuer.count("refused")
        self.log_message("refused: %s", why)
        self.send_json(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": why}]},
            [("WWW-Authenticate", 'Basic realm="ecs-test-token-server"')],
        )

    def basic_credentials(self):
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/stats":
            with self.issuer.lock:
                self.send_json(200, dict(self.issuer.stats))
            return
        if url.path != "/token":
            self.send_json(404, {"error": "not found"})
            return
        self.issuer.count("requests")
        query = urllib.parse.parse_qs(url.query)
        creds = self.basic_credentials()
        if creds is None:
            self.refuse("credentials required")
            return
        if not self.issuer.check_credentials(*creds):
            self.refuse("bad credentials")
            return
        self.send_json(200, self.issuer.issue(creds[0], query.get("scope", [])))

    def do_POST(self):
        """OAuth2 password grant, as some clients use when they have credentials."""
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self.send_json(404, {"error": "not found"})
            return
        self.issuer.count("requests")
        length = int(self.headers.get("Content-Length", "0") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if form.get("grant_type", [""])[0] != "password":
            self.send_json(400, {"error": "unsupported_grant_type"})
            return
        user = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        if not self.issuer.check_credentials(user, password):
            self.refuse("bad credentials")
            return
        scopes = " ".join(form.get("scope", [])).split()
        self.send_json(200, self.issuer.issue(user, scopes))


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--cert-out", required=True, help="where to write the signing cert (PEM)")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    Handler.issuer = TokenIssuer(args)
    write_atomically(
        args.cert_out, Handler.issuer.cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
