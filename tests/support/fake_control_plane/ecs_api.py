"""The ECS API calls a node agent makes (AWS JSON 1.1 on POST /), with the input checks a test
wants to fail loudly on and AWS-style errors: HTTP 400 {"__type": "ClientException", ...}.

Bodies are checked strictly: a member the operation does not have is an error (AWS would ignore
it; an agent that sends one has a typo), and so is anything the agent is known never to send in
another form (e.g. a task status other than PENDING, RUNNING or STOPPED).
"""

import asyncio
import re
import time
import uuid

from models import parse_json, type_name

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
ACK = {"acknowledgment": "true"}

_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_\-./\\]{1,128}$")
_ATTRIBUTE_VALUE = re.compile(r"^[A-Za-z0-9_\-.@/\\: ]{1,128}$")
_TASK_STATUSES = ("PENDING", "RUNNING", "STOPPED")
_ATTACHMENT_STATUSES = ("ATTACHED", "DETACHED")


class ClientError(Exception):
    def __init__(self, message, error_type="ClientException", status=400):
        super().__init__(message)
        self.error_type = error_type
        self.status = status


# --- shape checks ---------------------------------------------------------------------------------


def _members(obj, path, allowed, required=()):
    if not isinstance(obj, dict):
        raise ClientError(f"{path}: expected an object, got {type_name(obj)}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ClientError(f"{path}: unknown member(s) {unknown}", "SerializationException")
    for key in required:
        if obj.get(key) is None:
            raise ClientError(f"{path}.{key} is required")


def _string(obj, key, path, required=False, max_len=None, empty=True, choices=None):
    value = obj.get(key)
    if value is None:
        if required:
            raise ClientError(f"{path}.{key} is required")
        return None
    if not isinstance(value, str):
        raise ClientError(
            f"{path}.{key}: expected a string, got {type_name(value)}", "SerializationException"
        )
    if not empty and value == "":
        raise ClientError(f"{path}.{key} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ClientError(
            f"{path}.{key} is {len(value)} characters long; at most {max_len} are allowed"
        )
    if choices is not None and value not in choices:
        raise ClientError(f"{path}.{key}: {value!r} is not one of {list(choices)}")
    return value


def _integer(obj, key, path, required=False, low=None, high=None):
    value = obj.get(key)
    if value is None:
        if required:
            raise ClientError(f"{path}.{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClientError(
            f"{path}.{key}: expected an integer, got {type_name(value)}", "SerializationException"
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise ClientError(f"{path}.{key}: {value} is outside [{low}, {high}]")
    return value


def _number(obj, key, path):
    value = obj.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ClientError(
            f"{path}.{key}: expected a number (epoch seconds), got {type_name(value)}",
            "SerializationException",
        )
    return value


def _list(obj, key, path, required=False, max_len=None):
    value = obj.get(key)
    if value is None:
        if required:
            raise ClientError(f"{path}.{key} is required")
        return []
    if not isinstance(value, list):
        raise ClientError(
            f"{path}.{key}: expected an array, got {type_name(value)}", "SerializationException"
        )
    if max_len is not None and len(value) > max_len:
        raise ClientError(f"{path}.{key} has {len(value)} items; at most {max_len} are allowed")
    return value


def check_attributes(attributes, path="attributes"):
    seen = set()
    for i, attribute in enumerate(attributes):
        where = f"{path}[{i}]"
        _members(attribute, where, ("name", "value", "targetType", "targetId"), ("name",))
        name = _string(attribute, "name", where, required=True)
        if not _ATTRIBUTE_NAME.match(name):
            raise ClientError(
                f"{where}.name {name!r}: 1-128 letters, digits, hyphens, underscores, slashes,"
                " back slashes or periods"
            )
        value = _string(attribute, "value", where)
        if value is not None and (not _ATTRIBUTE_VALUE.match(value) or value != value.strip(" ")):
            raise ClientError(
                f"{where}.value {value!r}: 1-128 letters, digits, hyphens, underscores, periods,"
                " at signs, "
                "slashes, back slashes, colons or spaces, not starting or ending with a space"
            )
        _string(attribute, "targetType", where, choices=("container-instance",))
        _string(attribute, "targetId", where)
        if name in seen:
            raise ClientError(f"{where}.name {name!r} appears more than once")
        seen.add(name)


def _check_port_strings(values, where):
    for j, port in enumerate(values):
        if not isinstance(port, str) or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ClientError(
                f"{where}.stringSetValue[{j}]: {port!r} is not a port number as a decimal string"
            )


def check_resources(resources, path="totalResources"):
    value_key = {
        "INTEGER": "integerValue",
        "LONG": "longValue",
        "DOUBLE": "doubleValue",
        "STRINGSET": "stringSetValue",
    }
    by_name = {}
    for i, resource in enumerate(resources):
        where = f"{path}[{i}]"
        _members(
            resource,
            where,
            ("name", "type", "doubleValue", "longValue", "integerValue", "stringSetValue"),
            ("name", "type"),
        )
        name = _string(resource, "name", where, required=True, empty=False)
        kind = _string(resource, "type", where, required=True, choices=tuple(value_key))
        for other in set(value_key.values()) - {value_key[kind]}:
            if resource.get(other) is not None:
                raise ClientError(f"{where}: type {kind} but {other} is set")
        if resource.get(value_key[kind]) is None:
            raise ClientError(f"{where}: type {kind} needs {value_key[kind]}")
        if kind in ("INTEGER", "LONG"):
            _integer(resource, value_key[kind], where, low=0)
        elif kind == "DOUBLE":
            _number(resource, "doubleValue", where)
        else:
            items = _list(resource, "stringSetValue", where)
            if any(not isinstance(s, str) for s in items):
                raise ClientError(f"{where}.stringSetValue: expected strings")
        if name in by_name:
            raise ClientError(f"{where}.name {name!r} appears more than once")
        by_name[name] = (i, resource)
    # What the agent always reports (CPU units, MiB of memory, reserved TCP and UDP ports).
    for name, kind in (
        ("CPU", "INTEGER"),
        ("MEMORY", "INTEGER"),
        ("PORTS", "STRINGSET"),
        ("PORTS_UDP", "STRINGSET"),
    ):
        if name not in by_name:
            raise ClientError(f"{path}: no {name} resource")
        i, resource = by_name[name]
        if resource["type"] != kind:
            raise ClientError(f"{path}[{i}] ({name}): type must be {kind}, not {resource['type']}")
    for name in ("CPU", "MEMORY"):
        i, resource = by_name[name]
        if resource["integerValue"] <= 0:
            raise ClientError(f"{path}[{i}] ({name}): integerValue must be positive")
    for name in ("PORTS", "PORTS_UDP"):
        i, resource = by_name[name]
        _check_port_strings(resource["stringSetValue"], f"{path}[{i}]")


def check_network_bindings(bindings, path):
    for i, binding in enumerate(bindings):
        where = f"{path}[{i}]"
        _members(
            binding,
            where,
            (
                "bindIP",
                "containerPort",
                "hostPort",
                "protocol",
                "containerPortRange",
                "hostPortRange",
            ),
        )
        _string(binding, "bindIP", where)
        _string(binding, "protocol", where, choices=("tcp", "udp"))
        single = binding.get("containerPort") is not None or binding.get("hostPort") is not None
        ranged = (
            binding.get("containerPortRange") is not None
            or binding.get("hostPortRange") is not None
        )
        if single and ranged:
            raise ClientError(
                f"{where}: either containerPort/hostPort or containerPortRange/hostPortRange,"
                " not both"
            )
        _integer(binding, "containerPort", where, low=0, high=65535)
        _integer(binding, "hostPort", where, low=0, high=65535)
        for key in ("containerPortRange", "hostPortRange"):
            text = _string(binding, key, where)
            if text is not None and not re.fullmatch(r"\d{1,5}-\d{1,5}", text):
                raise ClientError(f"{where}.{key} {text!r} is not <first>-<last>")


def check_container_changes(containers, path="containers"):
    for i, container in enumerate(containers):
        where = f"{path}[{i}]"
        _members(
            container,
            where,
            (
                "containerName",
                "imageDigest",
                "runtimeId",
                "exitCode",
                "networkBindings",
                "reason",
                "status",
            ),
            ("containerName", "status"),
        )
        _string(container, "containerName", where, required=True, empty=False)
        _string(container, "imageDigest", where, max_len=255)
        _string(container, "runtimeId", where, max_len=255)
        _integer(container, "exitCode", where)
        _string(container, "reason", where, max_len=1024)
        _string(container, "status", where, required=True, choices=_TASK_STATUSES)
        bindings = _list(container, "networkBindings", where, max_len=100)
        check_network_bindings(bindings, f"{where}.networkBindings")


def check_attachment_changes(attachments, path="attachments"):
    for i, attachment in enumerate(attachments):
        where = f"{path}[{i}]"
        _members(attachment, where, ("attachmentArn", "status"), ("attachmentArn", "status"))
        _string(attachment, "attachmentArn", where, required=True, empty=False)
        _string(attachment, "status", where, required=True, choices=_ATTACHMENT_STATUSES)


# --- the operations -------------------------------------------------------------------------------


class EcsApi:
    def __init__(self, plane):
        self.plane = plane
        self.operations = {
            "RegisterContainerInstance": self.register_container_instance,
            "DiscoverPollEndpoint": self.discover_poll_endpoint,
            "SubmitTaskStateChange": self.submit_task_state_change,
            "SubmitContainerStateChange": self.submit_container_state_change,
            "SubmitAttachmentStateChanges": self.submit_attachment_state_changes,
            "UpdateContainerInstancesState": self.update_container_instances_state,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    def cluster_name(self, body):
        cluster = _string(body, "cluster", "", empty=False) or "default"
        prefix = self.plane.arn("cluster/")
        if cluster.startswith("arn:"):
            if not cluster.startswith(prefix):
                raise ClientError(
                    f"cluster {cluster!r} is not a cluster ARN of"
                    f" {self.plane.region}/{self.plane.account}"
                )
            cluster = cluster[len(prefix) :]
        known = self.plane.settings["known_clusters"]
        if known is not None and cluster not in known:
            raise ClientError("Cluster not found.", "ClusterNotFoundException")
        return cluster

    def register_container_instance(self, body):
        _members(
            body,
            "",
            (
                "cluster",
                "instanceIdentityDocument",
                "instanceIdentityDocumentSignature",
                "totalResources",
                "versionInfo",
                "containerInstanceArn",
                "attributes",
                "platformDevices",
                "tags",
                "clientToken",
            ),
        )
        cluster = self.cluster_name(body)
        _string(body, "instanceIdentityDocument", "")
        _string(body, "instanceIdentityDocumentSignature", "")
        resources = _list(body, "totalResources", "", required=True)
        check_resources(resources)
        attributes = _list(body, "attributes", "")
        check_attributes(attributes)
        for i, device in enumerate(_list(body, "platformDevices", "")):
            _members(device, f"platformDevices[{i}]", ("id", "type"), ("id", "type"))
            _string(device, "id", f"platformDevices[{i}]", required=True, empty=False)
            _string(device, "type", f"platformDevices[{i}]", required=True, choices=("GPU",))
        tags = _list(body, "tags", "", max_len=50)
        for i, tag in enumerate(tags):
            _members(tag, f"tags[{i}]", ("key", "value"), ("key",))
            _string(tag, "key", f"tags[{i}]", required=True, empty=False, max_len=128)
            _string(tag, "value", f"tags[{i}]", max_len=256)
        token = _string(body, "clientToken", "", max_len=36)
        if body.get("versionInfo") is not None:
            _members(
                body["versionInfo"], "versionInfo", ("agentVersion", "agentHash", "dockerVersion")
            )
        arn = _string(body, "containerInstanceArn", "", empty=False)

        instances = self.plane.instances
        if arn is not None:
            instance_id = self._instance_id_of(arn, cluster)
        elif token is not None and (cluster, token) in self.plane.client_tokens:
            arn = self.plane.client_tokens[(cluster, token)]
            instance_id = arn.rsplit("/", 1)[1]
        else:
            instance_id = uuid.uuid4().hex
            arn = self.plane.arn(f"container-instance/{cluster}/{instance_id}")
        if token is not None:
            self.plane.client_tokens[(cluster, token)] = arn

        instance = instances.get(arn)
        if instance is None:
            instance = {
                "containerInstanceArn": arn,
                "cluster": cluster,
                "attributes": {},
                "version": 0,
                "registrations": 0,
            }
            instances[arn] = instance
        instance["registrations"] += 1
        instance["version"] += 1
        instance["status"] = "ACTIVE"
        instance["registeredResources"] = resources
        instance["tags"] = tags or instance.get("tags", [])
        for attribute in attributes:
            instance["attributes"][attribute["name"]] = {
                k: v for k, v in attribute.items() if k in ("name", "value")
            }

        returned = dict(instance["attributes"])
        zone = self.plane.settings["availability_zone"]
        returned.setdefault(
            "ecs.availability-zone", {"name": "ecs.availability-zone", "value": zone}
        )
        for name in self.plane.settings["rci_drop_attributes"]:
            returned.pop(name, None)
        for name, value in self.plane.settings["rci_override_attributes"].items():
            returned[name] = {"name": name} if value is None else {"name": name, "value": value}
        return {
            "containerInstance": {
                "containerInstanceArn": arn,
                "version": instance["version"],
                "versionInfo": body.get("versionInfo") or {},
                "remainingResources": resources,
                "registeredResources": resources,
                "status": "ACTIVE",
                "agentConnected": False,
                "runningTasksCount": 0,
                "pendingTasksCount": 0,
                "attributes": list(returned.values()),
                "registeredAt": time.time(),
                "tags": instance["tags"],
            }
        }

    def _instance_id_of(self, arn, cluster):
        prefix = self.plane.arn("container-instance/")
        if not arn.startswith(prefix):
            raise ClientError(
                f"containerInstanceArn {arn!r} is not a container instance ARN of"
                f" {self.plane.region}/{self.plane.account}"
            )
        rest = arn[len(prefix) :].split("/")
        if len(rest) != 2 or not rest[1]:
            raise ClientError(
                f"containerInstanceArn {arn!r} is not .../container-instance/<cluster>/<id>"
            )
        if rest[0] != cluster:
            raise ClientError(
                f"containerInstanceArn {arn!r} belongs to cluster {rest[0]!r}, not {cluster!r}"
            )
        return rest[1]

    def _known_instance(self, arn, where):
        if self.plane.settings["require_registered_instance"] and arn not in self.plane.instances:
            raise ClientError(
                f"{where} {arn!r} is not a registered container instance",
                "InvalidParameterException",
            )

    def discover_poll_endpoint(self, body):
        _members(body, "", ("containerInstance", "cluster", "zoneId"), ("containerInstance",))
        self.cluster_name(body)
        arn = _string(body, "containerInstance", "", required=True, empty=False)
        _string(body, "zoneId", "")
        self._known_instance(arn, "containerInstance")
        answer = {}
        for key, setting, default in (
            ("endpoint", "acs_endpoint", self.plane.acs_endpoint),
            ("telemetryEndpoint", "tcs_endpoint", self.plane.tcs_endpoint),
            ("serviceConnectEndpoint", "service_connect_endpoint", None),
        ):
            value = self.plane.settings[setting]
            value = default if value == "auto" else value
            if value is not None:
                answer[key] = value
        return answer

    def submit_task_state_change(self, body):
        _members(
            body,
            "",
            (
                "cluster",
                "task",
                "status",
                "reason",
                "containers",
                "attachments",
                "managedAgents",
                "pullStartedAt",
                "pullStoppedAt",
                "executionStoppedAt",
            ),
            ("task",),
        )
        self.cluster_name(body)
        _string(body, "task", "", required=True, empty=False)
        status = _string(body, "status", "", choices=_TASK_STATUSES)
        _string(body, "reason", "", max_len=1024)
        for key in ("pullStartedAt", "pullStoppedAt", "executionStoppedAt"):
            _number(body, key, "")
        check_container_changes(_list(body, "containers", ""))
        attachments = _list(body, "attachments", "")
        check_attachment_changes(attachments)
        for i, agent in enumerate(_list(body, "managedAgents", "")):
            where = f"managedAgents[{i}]"
            _members(
                agent,
                where,
                ("containerName", "managedAgentName", "status", "reason"),
                ("containerName", "managedAgentName", "status"),
            )
            _string(agent, "containerName", where, required=True, empty=False)
            _string(
                agent, "managedAgentName", where, required=True, choices=("ExecuteCommandAgent",)
            )
            _string(agent, "status", where, required=True, empty=False)
            _string(agent, "reason", where, max_len=1024)
        if status is None and not attachments:
            raise ClientError("a task state change needs a status (or attachments)")
        return ACK

    def submit_container_state_change(self, body):
        _members(
            body,
            "",
            (
                "cluster",
                "task",
                "containerName",
                "runtimeId",
                "status",
                "exitCode",
                "reason",
                "networkBindings",
            ),
        )
        self.cluster_name(body)
        _string(body, "task", "", required=True, empty=False)
        _string(body, "containerName", "", required=True, empty=False)
        _string(body, "runtimeId", "", max_len=255)
        _string(body, "status", "", required=True, choices=_TASK_STATUSES)
        _integer(body, "exitCode", "")
        _string(body, "reason", "", max_len=1024)
        check_network_bindings(_list(body, "networkBindings", "", max_len=100), "networkBindings")
        return ACK

    def submit_attachment_state_changes(self, body):
        _members(body, "", ("cluster", "attachments"), ("attachments",))
        self.cluster_name(body)
        attachments = _list(body, "attachments", "", required=True)
        if not attachments:
            raise ClientError("attachments must not be empty")
        check_attachment_changes(attachments)
        return ACK

    def update_container_instances_state(self, body):
        _members(
            body, "", ("cluster", "containerInstances", "status"), ("containerInstances", "status")
        )
        self.cluster_name(body)
        status = _string(
            body,
            "status",
            "",
            required=True,
            choices=("ACTIVE", "DRAINING", "REGISTERING", "DEREGISTERING", "REGISTRATION_FAILED"),
        )
        updated, failures = [], []
        for arn in _list(body, "containerInstances", "", required=True):
            instance = self.plane.instances.get(arn)
            if instance is None:
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            instance["status"] = status
            updated.append({"containerInstanceArn": arn, "status": status})
        return {"containerInstances": updated, "failures": failures}

    def list_tags_for_resource(self, body):
        _members(body, "", ("resourceArn",), ("resourceArn",))
        arn = _string(body, "resourceArn", "", required=True, empty=False)
        instance = self.plane.instances.get(arn)
        return {"tags": instance.get("tags", []) if instance else []}

    # --- the HTTP side ------------------------------------------------------------------------

    async def handle(self, request, body_bytes, verdict):
        """Answers a POST / whose signature was verified: returns (status, body object), or None
        when the connection was dropped on purpose."""
        target = request.headers.get("X-Amz-Target", "")
        op = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else target
        event = {
            "op": op,
            "signed_headers": verdict.signed_headers,
            "user_agent": request.headers.get("User-Agent", ""),
        }
        try:
            body = parse_json(body_bytes.decode("utf-8")) if body_bytes else {}
        except (ValueError, UnicodeDecodeError) as e:
            body = None
            event["raw_body"] = body_bytes[:4096].decode("utf-8", "replace")
            parse_error = f"body is not JSON: {e}"
        else:
            parse_error = None
        event["body"] = body

        fault = self.plane.take_fault(op)
        if fault is not None:
            event["fault"] = fault
            if fault.get("delay_ms"):
                await asyncio.sleep(fault["delay_ms"] / 1000)
            if fault.get("drop"):
                await self.plane.recorder.add(
                    "api", status=None, response=None, dropped=True, **event
                )
                return None
            status = fault.get("status", 500)
            if "body" in fault:
                answer = fault["body"]
            else:
                answer = {
                    "__type": fault.get("type", "ServerException"),
                    "message": fault.get("message", "injected fault"),
                }
            await self.plane.recorder.add("api", status=status, response=answer, **event)
            return status, answer

        try:
            if not target.startswith(TARGET_PREFIX):
                raise ClientError(
                    f"X-Amz-Target {target!r} does not start with {TARGET_PREFIX}",
                    "UnknownOperationException",
                )
            if op not in self.operations:
                raise ClientError(f"unknown operation {op!r}", "UnknownOperationException")
            content_type = request.headers.get("Content-Type", "")
            if content_type != JSON_CONTENT_TYPE:
                raise ClientError(
                    f"Content-Type {content_type!r} is not {JSON_CONTENT_TYPE}",
                    "SerializationException",
                )
            if parse_error:
                raise ClientError(parse_error, "SerializationException")
            if not isinstance(body, dict):
                raise ClientError(
                    f"body is {type_name(body)}, not an object", "SerializationException"
                )
            status, answer = 200, self.operations[op](body)
        except ClientError as e:
            status, answer = e.status, {"__type": e.error_type, "message": str(e)}
            await self.plane.recorder.violation("api", str(e), op=op, error_type=e.error_type)
        await self.plane.recorder.add("api", status=status, response=answer, **event)
        return status, answer
