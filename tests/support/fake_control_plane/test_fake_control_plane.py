#!/usr/bin/python3
"""Tests of the stand-in control plane on its own, with botocore-signed requests and an aiohttp
websocket client: python3 -m unittest discover -s tests/support/fake_control_plane -p 'test_*.py'
"""

import asyncio
import datetime
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock
from urllib.parse import quote

import aiohttp
import botocore.auth
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
REGION = "eu-north-1"
ACCESS_KEY = "AKIDUNITTEST"
SECRET_KEY = "unit/test+secret"
TARGET = "AmazonEC2ContainerServiceV20141113."
RESOURCES = [
    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
    {"name": "MEMORY", "type": "INTEGER", "integerValue": 3000},
    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375"]},
    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
]


class StandIn:
    """server.py as a child process."""

    def __init__(self, *extra):
        self.terminated = False
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                sys.executable,
                SERVER,
                "--region",
                REGION,
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            self.stderr.seek(0)
            raise RuntimeError(f"server.py did not start: {self.stderr.read().decode()}")
        self.ports = json.loads(line)
        self.endpoint = self.ports["endpoint"]
        self.control = self.ports["control"]

    def terminate(self):
        self.terminated = True
        self.process.send_signal(signal.SIGTERM)

    def stop(self):
        """SIGTERM (once); the exit status."""
        if self.process.poll() is None and not self.terminated:
            self.terminate()
        try:
            return self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()
            self.stderr.close()


def sign(
    method,
    url,
    headers=None,
    body=b"",
    secret=SECRET_KEY,
    token=None,
    when=None,
    access_key=ACCESS_KEY,
    region=REGION,
):
    """The headers of a request signed with botocore (at `when`, default now)."""
    parts = yarl.URL(url, encoded=True)
    request = AWSRequest(
        method=method, url=str(parts.with_scheme("http")), headers=dict(headers or {}), data=body
    )
    request.headers["Host"] = f"{parts.host}:{parts.port}"
    signer = SigV4Auth(Credentials(access_key, secret, token), "ecs", region)
    if when is None:
        signer.add_auth(request)
    else:

        class Frozen(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return when

        with mock.patch.object(botocore.auth.datetime, "datetime", Frozen):
            signer.add_auth(request)
    return dict(request.headers.items())


class Base(unittest.IsolatedAsyncioTestCase):
    stand_in = None

    @classmethod
    def setUpClass(cls):
        cls.stand_in = StandIn()

    @classmethod
    def tearDownClass(cls):
        assert cls.stand_in.stop() == 0

    async def asyncSetUp(self):
        self.http = aiohttp.ClientSession()
        await self.control("POST", "/reset", {"instances": True, "connections": True})
        await self.control(
            "POST",
            "/settings",
            {
                "credentials": [{"access_key": ACCESS_KEY, "secret_key": SECRET_KEY}],
                "plus_is_space": False,
                "acs_heartbeat_interval_ms": 0,
            },
        )

    async def asyncTearDown(self):
        await self.http.close()

    async def control(self, method, path, body=None, expect=200):
        async with self.http.request(method, self.stand_in.control + path, json=body) as response:
            answer = await response.json()
            self.assertEqual(response.status, expect, answer)
            return answer

    async def call(self, op, body, expect=200, **signing):
        data = json.dumps(body).encode()
        headers = sign(
            "POST",
            self.stand_in.endpoint + "/",
            {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + op},
            data,
            **signing,
        )
        async with self.http.post(
            self.stand_in.endpoint + "/", data=data, headers=headers
        ) as response:
            answer = await response.json(content_type=None)
            self.assertEqual(response.status, expect, answer)
            return answer

    async def register(self, cluster="unit", token=None, **extra):
        body = {
            "cluster": cluster,
            "totalResources": RESOURCES,
            "attributes": [{"name": "ecs.os-type", "value": "linux"}],
            **extra,
        }
        answer = await self.call("RegisterContainerInstance", body, token=token)
        return answer["containerInstance"]["containerInstanceArn"]

    def acs_url(self, arn, cluster="unit", **overrides):
        query = {
            "agentHash": "abc123",
            "agentVersion": "0.1.0",
            "clusterArn": cluster,
            "containerInstanceArn": arn,
            "dockerVersion": "DockerVersion: containerd",
            "protocolVersion": "2",
            "sendCredentials": "true",
            "seqNum": "1",
        }
        query.update(overrides)
        encoded = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}"
            for k, v in sorted(query.items())
            if v is not None
        )
        return self.stand_in.endpoint.replace("http://", "ws://") + "/ws?" + encoded

    def tcs_url(self, arn, cluster="unit"):
        query = {
            "agentHash": "abc123",
            "agentVersion": "0.1.0",
            "cluster": cluster,
            "containerInstance": arn,
        }
        encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(query.items()))
        return self.stand_in.endpoint.replace("http://", "ws://") + "/tcs/ws?" + encoded

    async def connect(self, url, sent_url=None, **signing):
        """A websocket signed for `url` and opened on `sent_url` (default: the same)."""
        headers = sign("GET", url, **signing)
        return await self.http.ws_connect(yarl.URL(sent_url or url, encoded=True), headers=headers)

    async def wait(self, expect=200, **spec):
        spec.setdefault("timeout_ms", 5000)
        return (await self.control("POST", "/wait", spec, expect=expect))["events"]

    async def failures(self):
        return (await self.control("GET", "/signature-failures"))["failures"]


class EcsApiTest(Base):
    async def test_registration_is_verified_recorded_and_echoed(self):
        answer = await self.call(
            "RegisterContainerInstance",
            {
                "cluster": "unit",
                "totalResources": RESOURCES,
                "attributes": [
                    {"name": "ecs.os-type", "value": "linux"},
                    {"name": "ecs.capability.efs"},
                ],
            },
        )
        instance = answer["containerInstance"]
        self.assertRegex(
            instance["containerInstanceArn"],
            rf"^arn:aws:ecs:{REGION}:123456789012:container-instance/unit/[0-9a-f]{{32}}$",
        )
        attributes = {a["name"]: a.get("value") for a in instance["attributes"]}
        self.assertEqual(attributes["ecs.os-type"], "linux")
        self.assertIn("ecs.capability.efs", attributes)
        self.assertEqual(attributes["ecs.availability-zone"], f"{REGION}a")
        [event] = await self.wait(kind="api", op="RegisterContainerInstance")
        self.assertEqual(event["status"], 200)
        self.assertEqual(
            event["signed_headers"], ["content-type", "host", "x-amz-date", "x-amz-target"]
        )
        self.assertEqual(event["body"]["cluster"], "unit")
        self.assertEqual(await self.failures(), [])

    async def test_reregistration_and_client_token_keep_the_arn(self):
        arn = await self.register()
        self.assertEqual(await self.register(containerInstanceArn=arn), arn)
        first = await self.register(clientToken="tok-1")
        self.assertEqual(await self.register(clientToken="tok-1"), first)
        self.assertNotEqual(first, arn)
        # Custom attributes are sent only on the first registration; the instance keeps them.
        await self.call(
            "RegisterContainerInstance",
            {
                "cluster": "unit",
                "totalResources": RESOURCES,
                "attributes": [{"name": "custom.a", "value": "1"}],
                "containerInstanceArn": arn,
            },
        )
        answer = await self.call(
            "RegisterContainerInstance",
            {"cluster": "unit", "totalResources": RESOURCES, "containerInstanceArn": arn},
        )
        self.assertIn({"name": "custom.a", "value": "1"}, answer["containerInstance"]["attributes"])
        await self.call(
            "RegisterContainerInstance",
            {"cluster": "other", "totalResources": RESOURCES, "containerInstanceArn": arn},
            expect=400,
        )

    async def test_bad_registrations_are_client_errors(self):
        cases = [
            ({"cluster": "unit"}, "ClientException", "totalResources is required"),
            (
                {"cluster": "unit", "totalResources": RESOURCES, "versionInf": {}},
                "SerializationException",
                "unknown member",
            ),
            (
                {"cluster": "unit", "totalResources": RESOURCES[:3]},
                "ClientException",
                "no PORTS_UDP",
            ),
            (
                {
                    "cluster": "unit",
                    "totalResources": [{**RESOURCES[0], "longValue": 1}] + RESOURCES[1:],
                },
                "ClientException",
                "longValue is set",
            ),
            (
                {
                    "cluster": "unit",
                    "totalResources": RESOURCES,
                    "attributes": [{"name": "a"}, {"name": "a"}],
                },
                "ClientException",
                "more than once",
            ),
            (
                {
                    "cluster": "unit",
                    "totalResources": RESOURCES,
                    "attributes": [{"name": "a", "value": " x"}],
                },
                "ClientException",
                "space",
            ),
            (
                {
                    "cluster": "unit",
                    "totalResources": RESOURCES,
                    "containerInstanceArn": "arn:aws:ecs:x",
                },
                "ClientException",
                "not a container instance ARN",
            ),
        ]
        for body, error_type, text in cases:
            with self.subTest(body=body):
                answer = await self.call("RegisterContainerInstance", body, expect=400)
                self.assertEqual(answer["__type"], error_type)
                self.assertIn(text, answer["message"])
        violations = await self.control("GET", "/violations")
        self.assertEqual(violations["count"], len(cases))

    async def test_attributes_can_be_dropped_or_changed_in_the_answer(self):
        await self.control(
            "POST",
            "/settings",
            {"rci_drop_attributes": ["ecs.os-type"], "rci_override_attributes": {"x": "y"}},
        )
        try:
            answer = await self.call(
                "RegisterContainerInstance",
                {
                    "cluster": "unit",
                    "totalResources": RESOURCES,
                    "attributes": [{"name": "ecs.os-type", "value": "linux"}],
                },
            )
        finally:
            await self.control(
                "POST", "/settings", {"rci_drop_attributes": [], "rci_override_attributes": {}}
            )
        names = {a["name"]: a.get("value") for a in answer["containerInstance"]["attributes"]}
        self.assertNotIn("ecs.os-type", names)
        self.assertEqual(names["x"], "y")

    async def test_discover_poll_endpoint_points_at_this_server(self):
        arn = await self.register()
        answer = await self.call(
            "DiscoverPollEndpoint", {"containerInstance": arn, "cluster": "unit", "zoneId": ""}
        )
        self.assertEqual(
            answer,
            {
                "endpoint": self.stand_in.endpoint,
                "telemetryEndpoint": self.stand_in.endpoint + "/tcs",
            },
        )
        answer = await self.call(
            "DiscoverPollEndpoint", {"containerInstance": arn + "0", "cluster": "unit"}, expect=400
        )
        self.assertEqual(answer["__type"], "InvalidParameterException")

    async def test_state_changes_are_acknowledged_and_recorded(self):
        task = "arn:aws:ecs:eu-north-1:123456789012:task/unit/0123"
        container = {
            "containerName": "app",
            "status": "RUNNING",
            "networkBindings": [
                {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}
            ],
        }
        ack = {"acknowledgment": "true"}
        self.assertEqual(
            await self.call(
                "SubmitTaskStateChange",
                {"cluster": "unit", "task": task, "status": "RUNNING", "containers": [container]},
            ),
            ack,
        )
        self.assertEqual(
            await self.call(
                "SubmitContainerStateChange",
                {
                    "cluster": "unit",
                    "task": task,
                    "containerName": "app",
                    "status": "STOPPED",
                    "exitCode": 0,
                },
            ),
            ack,
        )
        self.assertEqual(
            await self.call(
                "SubmitAttachmentStateChanges",
                {
                    "cluster": "unit",
                    "attachments": [{"attachmentArn": "arn:a", "status": "ATTACHED"}],
                },
            ),
            ack,
        )
        [event] = await self.wait(
            kind="api",
            op="SubmitTaskStateChange",
            match={"status": "RUNNING", "containers": [{"containerName": "app"}]},
        )
        self.assertEqual(event["body"]["task"], task)
        answer = await self.call(
            "SubmitTaskStateChange",
            {"cluster": "unit", "task": task, "status": "MANIFEST_PULLED"},
            expect=400,
        )
        self.assertIn("is not one of", answer["message"])
        await self.call(
            "SubmitTaskStateChange",
            {"cluster": "unit", "task": task, "status": "STOPPED", "reason": "x" * 1025},
            expect=400,
        )

    async def test_faults_fail_the_next_calls_then_stop(self):
        await self.control(
            "POST",
            "/api/faults",
            {"op": "SubmitTaskStateChange", "count": 2, "status": 500, "type": "ServerException"},
        )
        await self.control(
            "POST",
            "/api/faults",
            {
                "op": "DiscoverPollEndpoint",
                "status": 400,
                "type": "ThrottlingException",
                "message": "Rate exceeded",
            },
        )
        body = {"cluster": "unit", "task": "t", "status": "RUNNING"}
        for _ in range(2):
            self.assertEqual(
                (await self.call("SubmitTaskStateChange", body, expect=500))["__type"],
                "ServerException",
            )
        await self.call("SubmitTaskStateChange", body)
        answer = await self.call("DiscoverPollEndpoint", {"containerInstance": "x"}, expect=400)
        self.assertEqual(answer, {"__type": "ThrottlingException", "message": "Rate exceeded"})
        self.assertEqual((await self.control("GET", "/api/faults"))["faults"], [])
        events = await self.wait(kind="api", op="SubmitTaskStateChange", count=3)
        self.assertEqual([e["status"] for e in events], [500, 500, 200])

        await self.control(
            "POST",
            "/api/faults",
            {
                "op": "CreateCluster",
                "count": -1,
                "status": 200,
                "body": {"cluster": {"clusterName": "c"}},
            },
        )
        self.assertEqual(await self.call("CreateCluster", {}), {"cluster": {"clusterName": "c"}})
        self.assertEqual(await self.call("CreateCluster", {}), {"cluster": {"clusterName": "c"}})

        await self.control("POST", "/api/faults", {"op": "SubmitTaskStateChange", "drop": True})
        with self.assertRaises(aiohttp.ClientError):
            await self.call("SubmitTaskStateChange", body)

    async def test_wrong_secret_is_403_and_recorded(self):
        answer = await self.call(
            "DiscoverPollEndpoint", {"containerInstance": "x"}, expect=403, secret="not-the-secret"
        )
        self.assertEqual(answer["__type"], "InvalidSignatureException")
        [failure] = await self.failures()
        self.assertEqual(failure["where"], "api")
        self.assertEqual(failure["target"], TARGET + "DiscoverPollEndpoint")
        self.assertNotEqual(failure["received_authorization"], failure["expected_authorization"])
        self.assertIn("POST\n/\n\n", failure["canonical_request"])

    async def test_unknown_key_stale_date_and_tokens_are_rejected(self):
        answer = await self.call("DiscoverPollEndpoint", {}, expect=403, access_key="AKIDOTHER")
        self.assertEqual(answer["__type"], "UnrecognizedClientException")
        stale = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
        answer = await self.call("DiscoverPollEndpoint", {}, expect=403, when=stale)
        self.assertIn("Signature expired", answer["message"])
        answer = await self.call("DiscoverPollEndpoint", {}, expect=403, region="us-east-1")
        self.assertIn("region", answer["message"])
        # A session token is needed once the credentials have one, and must be the right one.
        await self.control(
            "POST",
            "/settings",
            {
                "credentials": [
                    {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "session_token": "tok"}
                ]
            },
        )
        await self.call("DiscoverPollEndpoint", {}, expect=403)
        await self.call("DiscoverPollEndpoint", {}, expect=403, token="other")
        arn = await self.register(cluster="default", token="tok")
        await self.call("DiscoverPollEndpoint", {"containerInstance": arn}, expect=403)
        await self.call("DiscoverPollEndpoint", {"containerInstance": arn}, token="tok")
        self.assertEqual(len(await self.failures()), 6)

    async def test_a_body_changed_after_signing_is_rejected(self):
        headers = sign(
            "POST",
            self.stand_in.endpoint + "/",
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": TARGET + "DiscoverPollEndpoint",
            },
            b"{}",
        )
        async with self.http.post(
            self.stand_in.endpoint + "/", data=b'{"cluster":"x"}', headers=headers
        ) as response:
            self.assertEqual(response.status, 403)
        async with self.http.post(self.stand_in.endpoint + "/", data=b"{}") as response:
            self.assertEqual(response.status, 403)
            self.assertEqual(
                (await response.json(content_type=None))["__type"],
                "MissingAuthenticationTokenException",
            )


class AcsTest(Base):
    async def test_push_receive_record_and_wait(self):
        arn = await self.register()
        ws = await self.connect(self.acs_url(arn))
        [connect] = await self.wait(kind="connect", channel="acs", accepted=True)
        self.assertEqual(connect["query"]["dockerVersion"], "DockerVersion: containerd")
        sent = await self.control(
            "POST",
            "/acs/send",
            {"message": {"type": "PayloadMessage", "message": {"tasks": []}}, "fill": True},
        )
        self.assertEqual(sent["problems"], [])
        message = sent["event"]["message"]
        self.assertEqual(message["clusterArn"], f"arn:aws:ecs:{REGION}:123456789012:cluster/unit")
        self.assertEqual(message["containerInstanceArn"], arn)
        received = await ws.receive_json(timeout=5)
        self.assertEqual(received, {"type": "PayloadMessage", "message": message})

        await ws.send_json(
            {
                "type": "AckRequest",
                "message": {
                    "cluster": message["clusterArn"],
                    "containerInstance": arn,
                    "messageId": message["messageId"],
                },
            }
        )
        [frame] = await self.wait(
            kind="frame",
            channel="acs",
            type="AckRequest",
            match={"messageId": message["messageId"]},
        )
        self.assertEqual(frame["problems"], [])
        # A wait for what never comes answers 408 with what it found.
        answer = await self.control(
            "POST", "/wait", {"kind": "frame", "type": "NackRequest", "timeout_ms": 50}, expect=408
        )
        self.assertEqual(answer["events"], [])
        # Frames that break the model are recorded with their problems.
        await ws.send_str('{"type":"HeartbeatAckRequest","message":{"messageId":7}}')
        await ws.send_str("not json")
        await ws.send_str('{"type":"PayloadMessage","message":{}}')
        frames = await self.wait(kind="frame", channel="acs", count=4)
        self.assertIn("message.messageId: expected string, got number", frames[1]["problems"])
        self.assertTrue(frames[2]["problems"][0].startswith("not JSON"))
        self.assertEqual(frames[2]["raw"], "not json")
        self.assertIn("is not sent in this direction", frames[3]["problems"][0])
        self.assertEqual((await self.control("GET", "/violations"))["count"], 3)
        await ws.close()
        [gone] = await self.wait(kind="disconnect", channel="acs")
        self.assertEqual(gone["by"], "agent")

    async def test_clean_and_abrupt_closes(self):
        arn = await self.register()
        ws = await self.connect(self.acs_url(arn))
        await self.wait(kind="connect", accepted=True)
        closed = await self.control("POST", "/acs/close", {"code": 1011, "reason": "later"})
        self.assertEqual(len(closed["closed"]), 1)
        msg = await ws.receive(timeout=5)
        self.assertEqual((msg.type, msg.data, msg.extra), (aiohttp.WSMsgType.CLOSE, 1011, "later"))
        await ws.close()
        ws = await self.connect(self.acs_url(arn))
        second = (await self.wait(kind="connect", accepted=True, count=2))[1]
        await self.control("POST", "/acs/close", {"abrupt": True})
        msg = await ws.receive(timeout=5)
        self.assertIn(msg.type, (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR))
        events = await self.wait(kind="disconnect", channel="acs", count=2)
        self.assertEqual(
            [(e["by"], e["code"]) for e in events], [("server", 1011), ("abrupt", None)]
        )
        self.assertEqual(events[1]["conn"], second["conn"])
        await self.control(
            "POST",
            "/acs/send",
            {"message": {"type": "HeartbeatMessage", "message": {}}},
            expect=409,
        )

    async def test_refused_handshakes(self):
        arn = await self.register()
        await self.control(
            "POST",
            "/acs/refuse",
            {"count": 1, "status": 400, "body": {"InactiveInstanceException": "gone"}},
        )
        with self.assertRaises(aiohttp.WSServerHandshakeError) as refused:
            await self.connect(self.acs_url(arn))
        self.assertEqual(refused.exception.status, 400)
        ws = await self.connect(self.acs_url(arn))
        await ws.close()
        events = await self.wait(kind="connect", channel="acs", count=2)
        self.assertEqual([e["status"] for e in events], [400, 101])
        self.assertIn("InactiveInstanceException", events[0]["reason"])

    async def test_handshake_checks(self):
        arn = await self.register()
        cases = [
            (
                self.acs_url(arn, protocolVersion=None),
                400,
                "missing query keys ['protocolVersion']",
            ),
            (self.acs_url(arn, seqNum="2"), 400, "seqNum"),
            (self.acs_url(arn, extra="1"), 400, "unknown query keys ['extra']"),
            (self.acs_url(arn + "0"), 400, "not a registered container instance"),
        ]
        for url, status, reason in cases:
            with self.subTest(url=url):
                with self.assertRaises(aiohttp.WSServerHandshakeError) as refused:
                    await self.connect(url)
                self.assertEqual(refused.exception.status, status)
                [event] = (await self.control("POST", "/events", {"kind": "connect", "limit": 1}))[
                    "events"
                ]
                self.assertIn(reason, event["reason"])
        self.assertEqual(await self.failures(), [])

    async def test_the_signed_query_must_be_the_sent_query(self):
        arn = await self.register()
        url = self.acs_url(arn)
        # Signed with %20 for the space, sent with '+': not the same query in SigV4's eyes.
        with self.assertRaises(aiohttp.WSServerHandshakeError) as refused:
            await self.connect(url, sent_url=url.replace("%20", "+"))
        self.assertEqual(refused.exception.status, 403)
        with self.assertRaises(aiohttp.WSServerHandshakeError):
            await self.connect(
                url, sent_url=url.replace("sendCredentials=true", "sendCredentials=false")
            )
        [plus, changed] = await self.failures()
        self.assertEqual(plus["where"], "acs-handshake")
        self.assertIn("dockerVersion=DockerVersion%3A%2Bcontainerd", plus["canonical_request"])
        # AWS's front end reads '+' as a space; the stand-in does when told to.
        await self.control("POST", "/settings", {"plus_is_space": True})
        ws = await self.connect(url, sent_url=url.replace("%20", "+"))
        await ws.close()
        # A wrong secret on the upgrade is a 403 too.
        with self.assertRaises(aiohttp.WSServerHandshakeError) as refused:
            await self.connect(url, secret="wrong")
        self.assertEqual(refused.exception.status, 403)
        self.assertEqual(len(await self.failures()), 3)

    async def test_heartbeats_and_stop_verification_answers(self):
        arn = await self.register()
        ws = await self.connect(self.acs_url(arn))
        await self.control(
            "POST",
            "/settings",
            {"acs_heartbeat_interval_ms": 20, "acs_auto_stop_verification_ack": True},
        )
        try:
            await self.wait(kind="sent", channel="acs", type="HeartbeatMessage", count=2)
            beat = await ws.receive_json(timeout=5)
            self.assertEqual(beat["type"], "HeartbeatMessage")
            self.assertTrue(beat["message"]["healthy"])
            await self.control("POST", "/settings", {"acs_heartbeat_interval_ms": 0})
            candidates = [{"taskArn": "t1", "taskClusterArn": "c", "desiredStatus": "STOPPED"}]
            await ws.send_json(
                {
                    "type": "TaskStopVerificationMessage",
                    "message": {"messageId": "m", "stopCandidates": candidates},
                }
            )
            [ack] = await self.wait(kind="sent", channel="acs", type="TaskStopVerificationAck")
            self.assertEqual(ack["message"]["stopTasks"], candidates)
        finally:
            await self.control(
                "POST",
                "/settings",
                {"acs_heartbeat_interval_ms": 0, "acs_auto_stop_verification_ack": False},
            )
            await ws.close()


class TcsTest(Base):
    async def test_signed_frames_are_verified_and_acked(self):
        arn = await self.register()
        url = self.tcs_url(arn)
        ws = await self.connect(url)
        envelope = {
            "type": "PublishMetricsRequest",
            "message": {
                "metadata": {
                    "cluster": "unit",
                    "containerInstance": arn,
                    "messageId": "m1",
                    "idle": True,
                    "fin": True,
                },
                "taskMetrics": [],
                "timestamp": time.time(),
            },
        }
        body = json.dumps(envelope)

        def signed_frame(text, content_length=False, **signing):
            extra = {"Content-Length": str(len(text.encode()))} if content_length else {}
            headers = sign("GET", url, extra, body=text.encode(), **signing)
            headers.pop("Content-Length", None)  # signed, but not in the block (as Go writes it)
            return "".join(f"{k}: {v}\r\n" for k, v in sorted(headers.items())) + "\r\n" + text

        await ws.send_str(signed_frame(body))
        self.assertEqual(
            await ws.receive_json(timeout=5), {"type": "AckPublishMetric", "message": {}}
        )
        [frame] = await self.wait(kind="frame", channel="tcs", type="PublishMetricsRequest")
        self.assertEqual(
            (frame["signed"], frame["signature_ok"], frame["problems"]), (True, True, [])
        )
        self.assertEqual(frame["message"]["metadata"]["messageId"], "m1")

        await ws.send_str(signed_frame(body, content_length=True))
        self.assertEqual(
            await ws.receive_json(timeout=5), {"type": "AckPublishMetric", "message": {}}
        )
        frames = await self.wait(kind="frame", channel="tcs", count=2)
        self.assertIn("content-length", frames[1]["signed_headers"])
        self.assertTrue(frames[1]["signature_ok"])
        after = frames[1]["seq"]

        await ws.send_str(body)  # unsigned
        await ws.send_str(signed_frame(body, secret="wrong"))
        await ws.send_str(signed_frame(body).replace('"m1"', '"m2"'))  # body changed after signing
        envelope["message"]["metadata"]["fin"] = "yes"
        await ws.send_str(signed_frame(json.dumps(envelope)))
        frames = await self.wait(kind="frame", channel="tcs", count=4, after=after)
        self.assertEqual([f.get("signature_ok") for f in frames], [None, False, False, True])
        self.assertIn("TCS frame is not signed", frames[0]["problems"])
        self.assertIn("message.metadata.fin: expected boolean, got string", frames[3]["problems"])
        self.assertEqual([f["where"] for f in await self.failures()], ["tcs-frame", "tcs-frame"])
        # Acked: the two good ones, the unsigned and the malformed one; not the badly signed ones.
        # Frames are answered in order, so once the last one's ack is out, all of them are.
        await self.wait(kind="sent", channel="tcs", after=frames[3]["seq"])
        acks = await self.control("POST", "/events", {"kind": "sent", "type": "AckPublishMetric"})
        self.assertEqual(len(acks["events"]), 4)
        await ws.close()


class LifecycleTest(unittest.IsolatedAsyncioTestCase):
    async def test_memory_is_bounded(self):
        stand_in = await asyncio.to_thread(StandIn, "--max-events", "5")
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(20):
                    async with http.post(stand_in.endpoint + "/") as response:
                        self.assertEqual(response.status, 403)
                async with http.get(stand_in.control + "/stats") as response:
                    stats = await response.json()
            self.assertEqual(stats["events"], 5)
            self.assertEqual(stats["dropped"], 15)
            self.assertEqual(stats["last_seq"], 20)
            self.assertEqual(stats["counters"]["api"], 20)
        finally:
            self.assertEqual(await asyncio.to_thread(stand_in.stop), 0)

    async def test_sigterm_closes_sessions_and_exits_zero(self):
        stand_in = await asyncio.to_thread(StandIn)
        async with aiohttp.ClientSession() as http:
            data = json.dumps({"cluster": "c", "totalResources": RESOURCES}).encode()
            headers = sign(
                "POST",
                stand_in.endpoint + "/",
                {
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": TARGET + "RegisterContainerInstance",
                },
                data,
            )
            async with http.post(stand_in.endpoint + "/", data=data, headers=headers) as response:
                arn = (await response.json(content_type=None))["containerInstance"][
                    "containerInstanceArn"
                ]
            query = f"agentHash=a&agentVersion=1&cluster=c&containerInstance={quote(arn, safe='')}"
            url = f"{stand_in.endpoint.replace('http', 'ws')}/tcs/ws?{query}"
            ws = await http.ws_connect(yarl.URL(url, encoded=True), headers=sign("GET", url))
            # A long-poll in flight must not hold the exit up.
            waiting = asyncio.ensure_future(
                http.post(stand_in.control + "/wait", json={"kind": "frame", "timeout_ms": 60000})
            )
            while True:
                async with http.get(stand_in.control + "/stats") as response:
                    if (await response.json())["waiters"] == 1:
                        break
                await asyncio.sleep(0.01)
            started = time.monotonic()
            stand_in.terminate()
            msg = await ws.receive(timeout=10)
            self.assertEqual((msg.type, msg.data), (aiohttp.WSMsgType.CLOSE, 1001))
            await ws.close()
            self.assertEqual(await asyncio.to_thread(stand_in.stop), 0)
            self.assertLess(time.monotonic() - started, 10)
            try:
                (await waiting).close()
            except aiohttp.ClientError:
                pass


if __name__ == "__main__":
    unittest.main()
