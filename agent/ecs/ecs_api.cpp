#include "agent/ecs/ecs_api.h"

#include <algorithm>

namespace ecs::ecsapi {
namespace {

constexpr size_t kMaxReason = 1024;
constexpr size_t kMaxRuntimeId = 255;
constexpr size_t kMaxImageDigest = 255;
constexpr std::string_view kAvailabilityZoneAttribute = "ecs.availability-zone";

// At most `limit` bytes of `text`, never splitting a UTF-8 character.
std::string truncated(std::string_view text, size_t limit) {
  if (text.size() <= limit) return std::string(text);
  size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

json::Array ports(const std::vector<uint16_t>& values) {
  json::Array out;
  for (uint16_t port : values) out.emplace_back(std::to_string(port));
  return out;
}

json::Object integerResource(std::string_view name, int64_t value) {
  return json::Object{{"integerValue", value}, {"name", name}, {"type", "INTEGER"}};
}

json::Object stringSetResource(std::string_view name, json::Array values) {
  return json::Object{{"name", name}, {"stringSetValue", std::move(values)}, {"type", "STRINGSET"}};
}

std::string portRange(PortRange range) {
  return fmt::format("{}-{}", range.first, range.last);
}

json::Object networkBinding(const NetworkBinding& binding) {
  json::Object out;
  out["bindIP"] = binding.bind_ip;
  const bool single = binding.container_ports.first == binding.container_ports.last &&
                      binding.host_ports.first == binding.host_ports.last;
  if (single) {
    out["containerPort"] = binding.container_ports.first;
    out["hostPort"] = binding.host_ports.first;
  } else {
    out["containerPortRange"] = portRange(binding.container_ports);
    out["hostPortRange"] = portRange(binding.host_ports);
  }
  out["protocol"] = binding.protocol == TransportProtocol::kUdp ? "udp" : "tcp";
  return out;
}

json::Array networkBindings(const std::vector<NetworkBinding>& bindings) {
  json::Array out;
  for (const NetworkBinding& binding : bindings) out.emplace_back(networkBinding(binding));
  return out;
}

// The members of a container change, in the SDK's order; `with_digest` for the task-change form.
json::Object containerChange(const ContainerStateChange& change, bool with_digest) {
  json::Object out;
  out["containerName"] = change.container_name;
  if (change.exit_code) out["exitCode"] = *change.exit_code;
  if (with_digest && change.image_digest) {
    out["imageDigest"] = truncated(*change.image_digest, kMaxImageDigest);
  }
  if (!change.network_bindings.empty())
    out["networkBindings"] = networkBindings(change.network_bindings);
  if (change.reason) out["reason"] = truncated(*change.reason, kMaxReason);
  if (change.runtime_id) out["runtimeId"] = truncated(*change.runtime_id, kMaxRuntimeId);
  out["status"] = toString(change.status);
  return out;
}

json::Array attachmentChanges(const std::vector<AttachmentStateChange>& changes) {
  json::Array out;
  for (const AttachmentStateChange& change : changes) {
    out.emplace_back(json::Object{{"attachmentArn", change.attachment_arn},
                                  {"status", toString(change.status)}});
  }
  return out;
}

const std::string& orDefault(const std::string& cluster, const std::string& fallback) {
  return cluster.empty() ? fallback : cluster;
}

bool readAttribute(json::Reader& reader, const json::Value& value, const std::string& path,
                   Attribute& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.require("name", out.name);
    f.read("value", out.value);
  });
}

Result<void> finish(const json::Reader& reader, std::string_view what) {
  if (reader.ok()) return {};
  return fail(ErrorCode::kDataLoss, "{} response: {}", what, json::joinProblems(reader.errors()));
}

}  // namespace

std::string_view toString(ReportedStatus status) {
  switch (status) {
    case ReportedStatus::kPending:
      return "PENDING";
    case ReportedStatus::kRunning:
      return "RUNNING";
    case ReportedStatus::kStopped:
      return "STOPPED";
  }
  return "PENDING";
}

std::string_view toString(AttachmentStatus status) {
  return status == AttachmentStatus::kDetached ? "DETACHED" : "ATTACHED";
}

json::Value epochSeconds(std::chrono::system_clock::time_point time) {
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
  if (ms % 1000 == 0) return json::Value(ms / 1000);
  return json::Value(static_cast<double>(ms) / 1000.0);
}

std::vector<std::string> unmatchedAttributes(const std::vector<Attribute>& sent,
                                             const std::vector<Attribute>& registered) {
  std::vector<std::string> out;
  for (const Attribute& attribute : sent) {
    if (std::ranges::find(registered, attribute) == registered.end()) out.push_back(attribute.name);
  }
  return out;
}

json::Object registerContainerInstanceBody(const RegistrationRequest& request) {
  json::Object body;
  if (!request.attributes.empty()) {
    json::Array attributes;
    for (const Attribute& attribute : request.attributes) {
      json::Object item{{"name", attribute.name}};
      if (attribute.value) item["value"] = *attribute.value;
      attributes.emplace_back(std::move(item));
    }
    body["attributes"] = std::move(attributes);
  }
  if (!request.client_token.empty()) body["clientToken"] = request.client_token;
  body["cluster"] = request.cluster;
  if (request.container_instance_arn) {
    body["containerInstanceArn"] = *request.container_instance_arn;
  }
  body["instanceIdentityDocument"] = request.instance_identity_document;
  body["instanceIdentityDocumentSignature"] = request.instance_identity_signature;
  if (!request.gpu_ids.empty()) {
    json::Array devices;
    for (const std::string& id : request.gpu_ids) {
      devices.emplace_back(json::Object{{"id", id}, {"type", "GPU"}});
    }
    body["platformDevices"] = std::move(devices);
  }
  if (!request.tags.empty()) {
    json::Array tags;
    for (const Tag& tag : request.tags) {
      tags.emplace_back(json::Object{{"key", tag.key}, {"value", tag.value}});
    }
    body["tags"] = std::move(tags);
  }
  const InstanceResources& resources = request.resources;
  body["totalResources"] = json::Array{
      integerResource("CPU", resources.cpu_units),
      integerResource("MEMORY", resources.memory_mib),
      stringSetResource("PORTS", ports(resources.reserved_tcp_ports)),
      stringSetResource("PORTS_UDP", ports(resources.reserved_udp_ports)),
  };
  return body;
}

json::Object discoverPollEndpointBody(const std::string& cluster,
                                      const std::string& container_instance_arn) {
  // zoneId is always there, empty: the agent sends it so.
  return json::Object{
      {"cluster", cluster}, {"containerInstance", container_instance_arn}, {"zoneId", ""}};
}

json::Object submitTaskStateChangeBody(const TaskStateChange& change, const std::string& cluster) {
  json::Object body;
  body["cluster"] = orDefault(change.cluster, cluster);
  if (!change.containers.empty()) {
    json::Array containers;
    for (const ContainerStateChange& container : change.containers) {
      containers.emplace_back(containerChange(container, true));
    }
    body["containers"] = std::move(containers);
  }
  if (change.execution_stopped_at) {
    body["executionStoppedAt"] = epochSeconds(*change.execution_stopped_at);
  }
  if (!change.managed_agents.empty()) {
    json::Array agents;
    for (const ManagedAgentStateChange& agent : change.managed_agents) {
      json::Object item{{"containerName", agent.container_name},
                        {"managedAgentName", agent.managed_agent_name}};
      if (agent.reason) item["reason"] = truncated(*agent.reason, kMaxReason);
      item["status"] = toString(agent.status);
      agents.emplace_back(std::move(item));
    }
    body["managedAgents"] = std::move(agents);
  }
  if (change.pull_started_at) body["pullStartedAt"] = epochSeconds(*change.pull_started_at);
  if (change.pull_stopped_at) body["pullStoppedAt"] = epochSeconds(*change.pull_stopped_at);
  body["reason"] = truncated(change.reason, kMaxReason);
  body["status"] = toString(change.status);
  body["task"] = change.task_arn;
  return body;
}

json::Object submitTaskStateChangeBody(const TaskAttachmentStateChange& change,
                                       const std::string& cluster) {
  return json::Object{{"attachments", attachmentChanges(change.attachments)},
                      {"cluster", orDefault(change.cluster, cluster)},
                      {"task", change.task_arn}};
}

json::Object submitContainerStateChangeBody(const StandaloneContainerStateChange& change,
                                            const std::string& cluster) {
  json::Object body;
  body["cluster"] = orDefault(change.cluster, cluster);
  for (auto& [key, value] : containerChange(change.container, false)) body[key] = value;
  body["task"] = change.task_arn;
  return body;
}

json::Object submitAttachmentStateChangesBody(const std::vector<AttachmentStateChange>& changes,
                                              const std::string& cluster) {
  return json::Object{{"attachments", attachmentChanges(changes)}, {"cluster", cluster}};
}

Result<RegisteredInstance> parseRegisterContainerInstanceResponse(const json::Value& response) {
  RegisteredInstance out;
  json::Reader reader;
  json::readObject(reader, response, "", [&](const json::Fields& top) {
    if (!top.find("containerInstance")) {
      reader.error(top.path("containerInstance"), "required");
      return;
    }
    top.object("containerInstance", [&](const json::Fields& f) {
      f.require("containerInstanceArn", out.container_instance_arn);
      f.read("attributes", out.attributes, readAttribute);
    });
  });
  if (Result<void> done = finish(reader, "RegisterContainerInstance"); !done) {
    return fail(done.error());
  }
  for (const Attribute& attribute : out.attributes) {
    if (attribute.name == kAvailabilityZoneAttribute) out.availability_zone = attribute.value;
  }
  return out;
}

Result<PollEndpoints> parseDiscoverPollEndpointResponse(const json::Value& response) {
  PollEndpoints out;
  json::Reader reader;
  json::readObject(reader, response, "", [&](const json::Fields& f) {
    f.require("endpoint", out.endpoint);
    f.read("telemetryEndpoint", out.telemetry_endpoint);
    f.read("serviceConnectEndpoint", out.service_connect_endpoint);
    f.read("systemLogsEndpoint", out.system_logs_endpoint);
  });
  if (reader.ok() && out.endpoint.empty()) reader.error("endpoint", "empty");
  if (Result<void> done = finish(reader, "DiscoverPollEndpoint"); !done) return fail(done.error());
  return out;
}

}  // namespace ecs::ecsapi
