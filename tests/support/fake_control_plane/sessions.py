"""The ACS and TCS websockets: signed handshakes, every frame recorded and checked against the wire
model, messages pushed by the test, clean and abrupt closes, refused handshakes.

ACS frames from the agent are plain envelopes. TCS frames are the header block of a SigV4-signed
GET of the session's own URL, a blank line, and the envelope as the signed body; each one is
verified like a request.
"""

import asyncio
import itertools
import json
import time
import uuid

from aiohttp import WSMsgType, web

from models import AGENT_TO_ACS, AGENT_TO_TCS, check_envelope
from sigv4 import decode_query

# Query keys of the handshake URL: (required, optional).
QUERY_KEYS = {
    "acs": (
        (
            "agentHash",
            "agentVersion",
            "clusterArn",
            "containerInstanceArn",
            "protocolVersion",
            "sendCredentials",
            "seqNum",
        ),
        ("dockerVersion",),
    ),
    "tcs": (("agentHash", "agentVersion", "cluster", "containerInstance"), ("dockerVersion",)),
}
INSTANCE_KEY = {"acs": "containerInstanceArn", "tcs": "containerInstance"}
CLUSTER_KEY = {"acs": "clusterArn", "tcs": "cluster"}

TCS_ACKS = {
    "PublishMetricsRequest": "AckPublishMetric",
    "PublishHealthRequest": "AckPublishHealth",
    "PublishInstanceStatusRequest": "AckPublishInstanceStatus",
}

# The largest frame accepted: TCS chunks are at most 1 MiB of JSON plus their signed headers.
MAX_FRAME = 4 << 20
# How long a clean close waits for the peer's close frame.
CLOSE_TIMEOUT = 5.0


class Connection:
    def __init__(self, conn_id, channel, request, ws, query):
        self.id = conn_id
        self.channel = channel
        self.request = request
        self.ws = ws
        self.query = query
        self.raw_path = request.raw_path
        self.opened_at = time.time()
        self.closed_at = None
        self.close_code = None
        self.closed_by = None
        self.heartbeat = None
        self.closing = None  # the task closing it from the server side

    @property
    def open(self):
        return self.closed_at is None

    def describe(self):
        return {
            "conn": self.id,
            "channel": self.channel,
            "path": self.raw_path,
            "query": self.query,
            "open": self.open,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
            "closed_by": self.closed_by,
        }


class Channel:
    """One websocket service (acs or tcs) of the stand-in."""

    _ids = itertools.count(1)

    def __init__(self, plane, name, model):
        self.plane = plane
        self.name = name
        self.model = model
        self.allowed_from_agent = AGENT_TO_ACS if name == "acs" else AGENT_TO_TCS
        self.connections = {}  # id -> Connection, the last 100 kept
        self.refusals = []  # [{count, status, body}]
        self.sequence = itertools.count(1)  # PayloadMessage seqNum and TaskManifestMessage timeline

    @property
    def recorder(self):
        return self.plane.recorder

    def open_connections(self):
        return [c for c in self.connections.values() if c.open]

    # --- handshake ----------------------------------------------------------------------------

    async def handshake(self, request, verdict, raw_query):
        record = {
            "channel": self.name,
            "path": request.raw_path,
            "signed_headers": verdict.signed_headers,
        }
        if not verdict.ok:
            await self.recorder.add(
                "connect", accepted=False, status=403, reason=verdict.reason, query=None, **record
            )
            return web.json_response({verdict.error_type: verdict.reason}, status=403)

        try:
            pairs = decode_query(raw_query, self.plane.settings["plus_is_space"])
        except (ValueError, UnicodeDecodeError) as e:
            pairs, problem = [], f"query not decodable: {e}"
        else:
            problem = self.check_query(pairs)
        query = dict(pairs)
        record["query"] = query
        if problem:
            await self.recorder.violation(self.name, problem, path=request.raw_path)
            if self.plane.settings["strict_query"]:
                await self.recorder.add(
                    "connect", accepted=False, status=400, reason=problem, **record
                )
                return web.json_response({"BadRequestException": problem}, status=400)

        instance = query.get(INSTANCE_KEY[self.name])
        if (
            self.plane.settings["require_registered_instance"]
            and instance not in self.plane.instances
        ):
            reason = (
                f"{INSTANCE_KEY[self.name]} {instance!r} is not a registered container instance"
            )
            await self.recorder.add("connect", accepted=False, status=400, reason=reason, **record)
            return web.json_response({"InvalidInstanceException": reason}, status=400)

        refusal = self.take_refusal()
        if refusal is not None:
            reason = f"refused on request: {refusal['body']}"
            await self.recorder.add(
                "connect", accepted=False, status=refusal["status"], reason=reason, **record
            )
            return web.json_response(refusal["body"], status=refusal["status"])

        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, timeout=CLOSE_TIMEOUT, autoping=True)
        if not ws.can_prepare(request).ok:
            reason = "not a websocket upgrade"
            await self.recorder.add("connect", accepted=False, status=400, reason=reason, **record)
            return web.json_response({"BadRequestException": reason}, status=400)
        await ws.prepare(request)
        conn = Connection(next(self._ids), self.name, request, ws, query)
        self.connections[conn.id] = conn
        while len(self.connections) > 100:
            oldest = next(iter(self.connections))
            if self.connections[oldest].open:
                break
            del self.connections[oldest]
        await self.recorder.add("connect", accepted=True, status=101, conn=conn.id, **record)
        self.start_heartbeat(conn)
        try:
            await self.serve(conn)
        finally:
            if conn.heartbeat:
                conn.heartbeat.cancel()
            if conn.closing is not None:
                await asyncio.shield(conn.closing)
            if conn.open:
                conn.closed_at = time.time()
                conn.close_code = ws.close_code
                conn.closed_by = conn.closed_by or "agent"
            await self.recorder.add(
                "disconnect",
                channel=self.name,
                conn=conn.id,
                code=conn.close_code,
                by=conn.closed_by,
            )
        return ws

    def check_query(self, pairs):
        required, optional = QUERY_KEYS[self.name]
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        missing = [k for k in required if k not in keys]
        unknown = sorted(set(keys) - set(required) - set(optional))
        problems = []
        if duplicated:
            problems.append(f"repeated query keys {duplicated}")
        if missing:
            problems.append(f"missing query keys {missing}")
        if unknown:
            problems.append(f"unknown query keys {unknown}")
        query = dict(pairs)
        if self.name == "acs":
            if query.get("protocolVersion", "2") != "2":
                problems.append(f"protocolVersion is {query['protocolVersion']!r}, not '2'")
            if query.get("seqNum", "1") != "1":
                problems.append(f"seqNum is {query['seqNum']!r}, not '1'")
            if query.get("sendCredentials", "true") not in ("true", "false"):
                problems.append(
                    f"sendCredentials is {query['sendCredentials']!r}, not true or false"
                )
        for key in required:
            if key in query and query[key] == "":
                problems.append(f"query key {key} is empty")
        return "; ".join(problems)

    def take_refusal(self):
        if not self.refusals:
            return None
        refusal = self.refusals[0]
        if refusal["count"] > 0:
            refusal["count"] -= 1
            if refusal["count"] == 0:
                self.refusals.pop(0)
        return refusal

    # --- receiving ----------------------------------------------------------------------------

    async def serve(self, conn):
        try:
            async for msg in conn.ws:
                if msg.type == WSMsgType.TEXT:
                    await self.on_frame(conn, msg.data, binary=False)
                elif msg.type == WSMsgType.BINARY:
                    await self.on_frame(conn, msg.data.decode("utf-8", "replace"), binary=True)
                elif msg.type == WSMsgType.ERROR:
                    conn.closed_by = conn.closed_by or "error"
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            conn.closed_by = conn.closed_by or "error"
            raise

    async def on_frame(self, conn, text, binary):
        record = {"channel": self.name, "conn": conn.id, "size": len(text)}
        problems = ["binary frame (the agent writes text frames)"] if binary else []
        body = text
        if self.name == "tcs":
            signed, body, verdict, problem = self.verify_frame(conn, text)
            record["signed"] = signed
            if problem:
                problems.append(problem)
            if verdict is not None:
                record["signature_ok"] = verdict.ok
                record["signed_headers"] = verdict.signed_headers
                if not verdict.ok:
                    await self.recorder.signature_failure(
                        "tcs-frame", verdict, conn=conn.id, path=conn.raw_path
                    )
        kind, message, envelope_problems = check_envelope(self.model, self.allowed_from_agent, body)
        problems.extend(envelope_problems)
        if kind is None and message is None:
            record["raw"] = body[:4096]
        for problem in problems:
            await self.recorder.violation(self.name, problem, conn=conn.id, type=kind)
        await self.recorder.add("frame", type=kind, message=message, problems=problems, **record)
        if record.get("signature_ok", True) and kind is not None:
            await self.auto_reply(conn, kind, message)

    def verify_frame(self, conn, text):
        """(signed, body, verdict, problem) of a TCS frame."""
        if text.startswith("{"):
            problem = (
                "TCS frame is not signed"
                if self.plane.settings["tcs_require_signed_frames"]
                else None
            )
            return False, text, None, problem
        head, sep, body = text.partition("\r\n\r\n")
        if not sep:
            return (
                True,
                text,
                None,
                "TCS frame has a header block without the blank line before the body",
            )
        headers = []
        for line in head.split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return True, body, None, f"TCS frame header line {line!r} is not 'Name: value'"
            headers.append((name, value.strip()))
        if all(name.lower() != "content-length" for name, _ in headers):
            # The signed GET had the frame as its body, so a signer may have signed its length
            # (aws-sdk-go v1 does) although the header block leaves it out.
            headers.append(("Content-Length", str(len(body.encode("utf-8")))))
        path, _, raw_query = conn.raw_path.partition("?")
        verdict = self.plane.verifier().verify(
            "GET", path, raw_query, headers, body.encode("utf-8")
        )
        return True, body, verdict, None

    async def auto_reply(self, conn, kind, message):
        settings = self.plane.settings
        if self.name == "tcs" and settings["tcs_auto_ack"] and kind in TCS_ACKS:
            await self.send(conn, {"type": TCS_ACKS[kind], "message": {}}, auto=True)
        if (
            self.name == "acs"
            and settings["acs_auto_stop_verification_ack"]
            and kind == "TaskStopVerificationMessage"
        ):
            ack = {
                "messageId": (message or {}).get("messageId"),
                "stopTasks": (message or {}).get("stopCandidates") or [],
                "generatedAt": int(time.time() * 1000),
            }
            await self.send(conn, {"type": "TaskStopVerificationAck", "message": ack}, auto=True)

    # --- sending ------------------------------------------------------------------------------

    def pick(self, conn_id=None):
        if conn_id is not None:
            conn = self.connections.get(int(conn_id))
            return conn if conn is not None and conn.open else None
        candidates = self.open_connections()
        return candidates[-1] if candidates else None

    def fill(self, conn, envelope):
        """Fills the members a test rarely cares about and the agent checks: messageId,
        clusterArn and containerInstanceArn of the session, generatedAt, seqNum/timeline."""
        kind = envelope.get("type")
        message = envelope.setdefault("message", {})
        if not self.model.has(kind) or not isinstance(message, dict):
            return envelope
        members = self.model.shapes[kind].get("members", {})
        cluster = conn.query.get(CLUSTER_KEY[self.name], "")
        if cluster and not cluster.startswith("arn:"):
            cluster = self.plane.arn(f"cluster/{cluster}")
        defaults = {
            "messageId": lambda: str(uuid.uuid4()),
            "clusterArn": lambda: cluster,
            "containerInstanceArn": lambda: conn.query.get(INSTANCE_KEY[self.name], ""),
            "generatedAt": lambda: int(time.time() * 1000),
            "healthy": lambda: True,
        }
        if kind == "PayloadMessage":
            defaults["seqNum"] = lambda: next(self.sequence)
        if kind == "TaskManifestMessage":
            defaults["timeline"] = lambda: next(self.sequence)
        for key, make in defaults.items():
            if key in members and message.get(key) is None:
                message[key] = make()
        if kind == "PayloadMessage":
            for task in message.get("tasks") or []:
                if isinstance(task, dict) and task.get("taskClusterArn") is None:
                    task["taskClusterArn"] = message["clusterArn"]
        return envelope

    async def send(self, conn, envelope=None, text=None, auto=False):
        """Sends one frame; returns the `sent` event."""
        if text is None:
            text = json.dumps(envelope)
            kind, message = envelope.get("type"), envelope.get("message")
        else:
            kind, message, _ = check_envelope(self.model, None, text)
        await conn.ws.send_str(text)
        return await self.recorder.add(
            "sent", channel=self.name, conn=conn.id, type=kind, message=message, auto=auto
        )

    # --- closing ------------------------------------------------------------------------------

    async def close(self, conn, code=1000, reason="", abrupt=False):
        if not conn.open:
            return
        conn.closed_at = time.time()
        if abrupt:
            conn.closed_by = "abrupt"
            conn.close_code = None
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
            return
        conn.closed_by = "server"
        conn.close_code = code
        conn.closing = asyncio.ensure_future(
            conn.ws.close(code=code, message=reason.encode("utf-8"))
        )
        await asyncio.shield(conn.closing)

    # --- heartbeats ---------------------------------------------------------------------------

    def start_heartbeat(self, conn):
        if conn.heartbeat:
            conn.heartbeat.cancel()
            conn.heartbeat = None
        interval = self.plane.settings[f"{self.name}_heartbeat_interval_ms"]
        if interval and conn.open:
            conn.heartbeat = asyncio.ensure_future(self._beat(conn, interval / 1000))

    async def _beat(self, conn, interval):
        while conn.open:
            await asyncio.sleep(interval)
            if not conn.open:
                return
            envelope = self.fill(conn, {"type": "HeartbeatMessage", "message": {}})
            try:
                await self.send(conn, envelope, auto=True)
            except (ConnectionResetError, RuntimeError):
                return

    def restart_heartbeats(self):
        for conn in self.open_connections():
            self.start_heartbeat(conn)
