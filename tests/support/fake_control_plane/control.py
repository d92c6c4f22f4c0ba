"""The control API: JSON over HTTP on its own loopback port, for the test that drives the stand-in.

Every answer is a JSON object; a request the control API cannot use gets 400 {"error": ...}.
See README.md for the list of routes.
"""

import json

from aiohttp import web

from models import check_envelope
from sigv4 import Key


class ControlError(Exception):
    pass


def _timeout(body, default_ms=10000):
    value = body.get("timeout_ms", default_ms)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ControlError("timeout_ms must be a non-negative number")
    return value / 1000


class Control:
    def __init__(self, plane):
        self.plane = plane

    def app(self):
        app = web.Application(client_max_size=16 << 20)
        routes = [
            ("GET", "/health", self.health),
            ("GET", "/info", self.info),
            ("GET", "/stats", self.stats),
            ("POST", "/events", self.events),
            ("POST", "/wait", self.wait),
            ("GET", "/signature-failures", self.signature_failures),
            ("GET", "/violations", self.violations),
            ("GET", "/instances", self.instances),
            ("GET", "/settings", self.get_settings),
            ("POST", "/settings", self.set_settings),
            ("GET", "/api/faults", self.get_faults),
            ("POST", "/api/faults", self.add_fault),
            ("DELETE", "/api/faults", self.clear_faults),
            ("POST", "/reset", self.reset),
            ("POST", "/shutdown", self.shutdown),
            ("POST", "/{channel:acs|tcs}/send", self.send),
            ("POST", "/{channel:acs|tcs}/close", self.close),
            ("POST", "/{channel:acs|tcs}/refuse", self.refuse),
            ("GET", "/{channel:acs|tcs}/connections", self.connections),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._wrap(handler))
        return app

    def _wrap(self, handler):
        async def run(request):
            try:
                body = {}
                if request.method in ("POST", "DELETE") and request.can_read_body:
                    text = await request.text()
                    body = json.loads(text) if text.strip() else {}
                    if not isinstance(body, dict):
                        raise ControlError("the request body must be a JSON object")
                return await handler(request, body)
            except (ControlError, ValueError, KeyError, TypeError) as e:
                return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=400)

        return run

    # --- reading ------------------------------------------------------------------------------

    async def health(self, request, body):
        return web.json_response({"ok": True})

    async def info(self, request, body):
        plane = self.plane
        return web.json_response(
            {
                "api_port": plane.api_port,
                "control_port": plane.control_port,
                "endpoint": plane.endpoint,
                "acs_endpoint": plane.acs_endpoint,
                "tcs_endpoint": plane.tcs_endpoint,
                "region": plane.region,
                "account": plane.account,
                "access_keys": sorted(plane.keys),
            }
        )

    async def stats(self, request, body):
        return web.json_response(self.plane.recorder.stats())

    async def events(self, request, body):
        recorder = self.plane.recorder
        return web.json_response({"events": recorder.events(body), "last_seq": recorder.last_seq})

    async def wait(self, request, body):
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ControlError("count must be a positive integer")
        found, events = await self.plane.recorder.wait(body, count, _timeout(body))
        answer = {"events": events, "last_seq": self.plane.recorder.last_seq}
        if not found:
            answer["error"] = f"timed out with {len(events)} of {count} matching events"
        return web.json_response(answer, status=200 if found else 408)

    async def signature_failures(self, request, body):
        recorder = self.plane.recorder
        return web.json_response(
            {
                "count": recorder.signature_failure_count,
                "failures": list(recorder.signature_failures),
            }
        )

    async def violations(self, request, body):
        recorder = self.plane.recorder
        return web.json_response(
            {"count": recorder.violation_count, "violations": list(recorder.violations)}
        )

    async def instances(self, request, body):
        listed = [
            {k: v for k, v in i.items() if k != "attributes"}
            | {"attributes": list(i["attributes"].values())}
            for i in self.plane.instances.values()
        ]
        return web.json_response({"instances": listed})

    async def connections(self, request, body):
        channel = self.plane.channels[request.match_info["channel"]]
        return web.json_response(
            {"connections": [c.describe() for c in channel.connections.values()]}
        )

    # --- steering -----------------------------------------------------------------------------

    async def get_settings(self, request, body):
        return web.json_response({"settings": self.plane.settings})

    async def set_settings(self, request, body):
        plane = self.plane
        unknown = sorted(set(body) - set(plane.settings) - {"credentials"})
        if unknown:
            raise ControlError(
                f"unknown settings {unknown}; known: {sorted(plane.settings)} and credentials"
            )
        if "credentials" in body:
            keys = body.pop("credentials")
            if not isinstance(keys, list) or not keys:
                raise ControlError(
                    "credentials must be a non-empty list of"
                    " {access_key, secret_key, session_token}"
                )
            plane.keys = {
                k["access_key"]: Key(k["access_key"], k["secret_key"], k.get("session_token", ""))
                for k in keys
            }
        plane.settings.update(body)
        if any(k.endswith("_heartbeat_interval_ms") for k in body):
            for channel in plane.channels.values():
                channel.restart_heartbeats()
        return web.json_response({"settings": plane.settings})

    async def get_faults(self, request, body):
        return web.json_response({"faults": self.plane.faults})

    async def add_fault(self, request, body):
        allowed = {"op", "count", "status", "type", "message", "body", "delay_ms", "drop"}
        unknown = sorted(set(body) - allowed)
        if unknown or not isinstance(body.get("op"), str):
            raise ControlError(
                f"a fault needs op (string) and may have {sorted(allowed - {'op'})};"
                f" unknown {unknown}"
            )
        fault = {"count": 1, **body}
        if (
            isinstance(fault["count"], bool)
            or not isinstance(fault["count"], int)
            or fault["count"] == 0
        ):
            raise ControlError(
                "count must be a positive integer, or -1 for every call until cleared"
            )
        self.plane.faults.append(fault)
        return web.json_response({"faults": self.plane.faults})

    async def clear_faults(self, request, body):
        self.plane.faults.clear()
        return web.json_response({"faults": []})

    async def reset(self, request, body):
        plane = self.plane
        plane.recorder.reset()
        plane.faults.clear()
        for channel in plane.channels.values():
            channel.refusals.clear()
        if body.get("instances"):
            plane.instances.clear()
            plane.client_tokens.clear()
        if body.get("connections"):
            for channel in plane.channels.values():
                for conn in channel.open_connections():
                    await channel.close(conn, abrupt=True)
        return web.json_response({"last_seq": plane.recorder.last_seq})

    async def shutdown(self, request, body):
        self.plane.stop.set()
        return web.json_response({"stopping": True})

    async def send(self, request, body):
        channel = self.plane.channels[request.match_info["channel"]]
        timeout = _timeout(body, 0)
        wanted = body.get("conn")
        ready = await self.plane.recorder.wait_until(
            lambda: channel.pick(wanted) is not None, timeout
        )
        if not ready:
            return web.json_response({"error": f"no open {channel.name} connection"}, status=409)
        conn = channel.pick(wanted)
        if "text" in body:
            if not isinstance(body["text"], str):
                raise ControlError("text must be a string")
            event = await channel.send(conn, text=body["text"])
            return web.json_response({"event": event, "problems": []})
        envelope = body.get("message")
        if not isinstance(envelope, dict):
            raise ControlError('send needs "message": {"type": ..., "message": {...}} or "text"')
        if body.get("fill"):
            envelope = channel.fill(conn, envelope)
        _, _, problems = check_envelope(channel.model, None, json.dumps(envelope))
        event = await channel.send(conn, envelope)
        return web.json_response({"event": event, "problems": problems})

    async def close(self, request, body):
        channel = self.plane.channels[request.match_info["channel"]]
        wanted = body.get("conn")
        targets = [channel.pick(wanted)] if wanted is not None else channel.open_connections()
        targets = [c for c in targets if c is not None]
        for conn in targets:
            await channel.close(
                conn,
                int(body.get("code", 1000)),
                str(body.get("reason", "")),
                bool(body.get("abrupt", False)),
            )
        return web.json_response({"closed": [c.id for c in targets]})

    async def refuse(self, request, body):
        channel = self.plane.channels[request.match_info["channel"]]
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count == 0:
            raise ControlError(
                "count must be a positive integer, or -1 for every handshake until reset"
            )
        refusal = {
            "count": count,
            "status": int(body.get("status", 400)),
            "body": body.get(
                "body", {"InactiveInstanceException": "Container instance is inactive"}
            ),
        }
        channel.refusals.append(refusal)
        return web.json_response({"refusals": channel.refusals})
