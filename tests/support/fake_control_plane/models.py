"""Checks websocket messages against the ACS and TCS wire models (models/*.json, the API models
published with amazon-ecs-agent) and the envelope {"type": <shape name>, "message": {...}}.

A problem is a string naming the JSON path, e.g. "message.metadata.fin: expected boolean, got
string". Null is accepted for every member, as the agent's Go decoder accepts it.
"""

import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# What each side may send. Everything else in the model is the other direction's.
AGENT_TO_ACS = {
    "AckRequest",
    "IAMRoleCredentialsAckRequest",
    "HeartbeatAckRequest",
    "TaskStopVerificationMessage",
    "NackRequest",
}
AGENT_TO_TCS = {
    "PublishMetricsRequest",
    "PublishHealthRequest",
    "PublishInstanceStatusRequest",
    "StartTelemetrySessionRequest",
}


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=_reject_constant)


class Model:
    def __init__(self, filename):
        with open(os.path.join(_HERE, "models", filename)) as f:
            self.shapes = json.load(f)["shapes"]

    def has(self, name):
        return name in self.shapes and self.shapes[name].get("type") == "structure"

    def check(self, shape_name, value, path="message"):
        problems = []
        self._check(self.shapes[shape_name], value, path, problems)
        return problems

    def _check(self, shape, value, path, problems):
        if value is None:
            return
        kind = shape["type"]
        if kind == "structure":
            if not isinstance(value, dict):
                problems.append(f"{path}: expected object, got {type_name(value)}")
                return
            members = shape.get("members", {})
            for key, item in value.items():
                if key not in members:
                    problems.append(f"{path}.{key}: not a member of the shape")
                    continue
                self._check(self.shapes[members[key]["shape"]], item, f"{path}.{key}", problems)
            for key in shape.get("required", []):
                if value.get(key) is None:
                    problems.append(f"{path}.{key}: required")
        elif kind == "list":
            if not isinstance(value, list):
                problems.append(f"{path}: expected array, got {type_name(value)}")
                return
            _bounds(shape, len(value), path, problems, "items")
            member = self.shapes[shape["member"]["shape"]]
            for i, item in enumerate(value):
                self._check(member, item, f"{path}[{i}]", problems)
        elif kind == "map":
            if not isinstance(value, dict):
                problems.append(f"{path}: expected object, got {type_name(value)}")
                return
            member = self.shapes[shape["value"]["shape"]]
            for key, item in value.items():
                self._check(member, item, f"{path}.{key}", problems)
        elif kind == "string":
            if not isinstance(value, str):
                problems.append(f"{path}: expected string, got {type_name(value)}")
            elif "enum" in shape and value not in shape["enum"]:
                problems.append(f"{path}: {value!r} is not one of {shape['enum']}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                problems.append(f"{path}: expected boolean, got {type_name(value)}")
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{path}: expected integer, got {type_name(value)}")
            else:
                _bounds(shape, value, path, problems, "")
        elif kind in ("double", "float", "timestamp"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{path}: expected number, got {type_name(value)}")
            else:
                _bounds(shape, value, path, problems, "")


def _bounds(shape, n, path, problems, unit):
    what = f"{n} {unit}".strip()
    if "min" in shape and n < shape["min"]:
        problems.append(f"{path}: {what} is below the minimum {shape['min']}")
    if "max" in shape and n > shape["max"]:
        problems.append(f"{path}: {what} is above the maximum {shape['max']}")


def type_name(value):
    """The JSON kind of a decoded value, for messages."""
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), "null" if value is None else type(value).__name__)


def check_envelope(model, allowed, text):
    """(type, message, problems) of one frame's JSON text. `allowed`: the types this sender may
    send (None: any structure in the model)."""
    try:
        envelope = parse_json(text)
    except ValueError as e:
        return None, None, [f"not JSON: {e}"]
    if not isinstance(envelope, dict):
        return None, None, [f"envelope is {type_name(envelope)}, not an object"]
    problems = []
    extra = sorted(set(envelope) - {"type", "message"})
    if extra:
        problems.append(f"envelope has keys {extra} besides type and message")
    kind = envelope.get("type")
    message = envelope.get("message")
    if not isinstance(kind, str):
        problems.append("envelope type missing or not a string")
        return None, message, problems
    if not isinstance(message, dict):
        problems.append(f"envelope message is {type_name(message)}, not an object")
    if not model.has(kind):
        problems.append(f"type {kind!r} is not a shape of the model")
    elif allowed is not None and kind not in allowed:
        problems.append(f"type {kind!r} is not sent in this direction")
    elif isinstance(message, dict):
        problems.extend(model.check(kind, message))
    return kind, message, problems
