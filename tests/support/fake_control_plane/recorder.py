"""The stand-in's memory of what happened, bounded, with waits on events instead of sleeps.

Every observation is an event: a JSON object with a global sequence number `seq` (1, 2, ...),
`time` (epoch seconds), and a `kind`:
  api         an ECS API call: op, body, status, response, signature
  connect     a websocket handshake: channel (acs|tcs), conn, query, accepted, status, reason
  frame       a websocket frame the agent sent: channel, conn, type, message, problems
  sent        a frame the stand-in sent: channel, conn, type, message
  disconnect  a websocket ended: channel, conn, code, by (agent|server|abrupt|error)
  http        any other request (unknown path or method): method, path, status

Old events are dropped once there are more than `max_events` of them or their sizes add up to
more than `max_bytes`; counters per kind/op/type keep counting. Signature failures and protocol
violations are kept in their own (also bounded) lists, so that one flood of frames cannot push
the failure a test asserts on out of memory.
"""

import asyncio
import collections
import json
import time


def matches(actual, expected):
    """True if `expected` is a subset of `actual`: every key of an expected object is in the
    actual object with a matching value (recursively); lists must be equal in length with
    pairwise matching elements; scalars must be equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        return all(k in actual and matches(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return False
        return all(matches(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return actual == expected


# Filter keys compared against the event's top-level fields, and the one compared with
# `matches` against the event's message (frames, sent) or body (api).
_FILTER_FIELDS = ("kind", "channel", "op", "type", "conn", "accepted", "status")


def event_filter(spec):
    """A predicate over events from a filter object: any of the _FILTER_FIELDS, `after` (only
    events with seq > after), `match` (subset of the message or body), `where` (subset of the
    whole event)."""
    fields = {k: spec[k] for k in _FILTER_FIELDS if k in spec}
    after = int(spec.get("after", 0))
    match = spec.get("match")
    where = spec.get("where")

    def accept(event):
        if event["seq"] <= after:
            return False
        for k, v in fields.items():
            if event.get(k) != v:
                return False
        if match is not None:
            payload = event.get("message") if "message" in event else event.get("body")
            if not matches(payload, match):
                return False
        if where is not None and not matches(event, where):
            return False
        return True

    return accept


class Recorder:
    def __init__(self, max_events=10000, max_bytes=64 << 20, max_failures=1000):
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events = collections.deque()
        self._bytes = 0
        self._seq = 0
        self.dropped = 0
        self.counters = collections.Counter()
        self.signature_failures = collections.deque(maxlen=max_failures)
        self.signature_failure_count = 0
        self.violations = collections.deque(maxlen=max_failures)
        self.violation_count = 0
        self._changed = asyncio.Condition()
        self.waiters = 0  # long-polls in progress

    @property
    def last_seq(self):
        return self._seq

    async def add(self, kind, **fields):
        """Records an event and wakes the waiters; returns the event."""
        self._seq += 1
        event = {"seq": self._seq, "time": time.time(), "kind": kind, **fields}
        size = len(json.dumps(event, default=str))
        self._events.append((event, size))
        self._bytes += size
        while len(self._events) > self.max_events or (
            self._bytes > self.max_bytes and len(self._events) > 1
        ):
            _, old = self._events.popleft()
            self._bytes -= old
            self.dropped += 1
        self.counters[kind] += 1
        for key in ("op", "type"):
            if key in fields and fields[key]:
                self.counters[f"{kind}:{fields.get('channel', '')}:{fields[key]}"] += 1
        await self._notify()
        return event

    async def signature_failure(self, where, verdict, **context):
        self.signature_failure_count += 1
        self.signature_failures.append(
            {"time": time.time(), "where": where, **context, **verdict.to_json()}
        )
        await self._notify()

    async def violation(self, where, problem, **context):
        self.violation_count += 1
        self.violations.append({"time": time.time(), "where": where, "problem": problem, **context})
        await self._notify()

    async def _notify(self):
        async with self._changed:
            self._changed.notify_all()

    def events(self, spec):
        accept = event_filter(spec)
        found = [e for e, _ in self._events if accept(e)]
        limit = spec.get("limit")
        return found[-int(limit) :] if limit else found

    async def wait(self, spec, count=1, timeout=10.0):
        """The first `count` events matching `spec`, once there are that many; (False, what was
        found) after `timeout` seconds."""
        accept = event_filter(spec)
        deadline = time.monotonic() + timeout
        self.waiters += 1
        try:
            async with self._changed:
                while True:
                    found = [e for e, _ in self._events if accept(e)]
                    if len(found) >= count:
                        return True, found[:count]
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False, found
                    try:
                        await asyncio.wait_for(self._changed.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.waiters -= 1

    async def wait_until(self, predicate, timeout):
        """Waits until predicate() is true (checked on every recorded change); False on timeout."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            return True

    async def poke(self):
        """Wakes waiters whose predicates look at state outside the event log."""
        await self._notify()

    def reset(self):
        self._events.clear()
        self._bytes = 0
        self.dropped = 0
        self.counters.clear()
        self.signature_failures.clear()
        self.signature_failure_count = 0
        self.violations.clear()
        self.violation_count = 0

    def stats(self):
        return {
            "last_seq": self._seq,
            "events": len(self._events),
            "bytes": self._bytes,
            "dropped": self.dropped,
            "waiters": self.waiters,
            "signature_failures": self.signature_failure_count,
            "violations": self.violation_count,
            "counters": dict(self.counters),
        }
