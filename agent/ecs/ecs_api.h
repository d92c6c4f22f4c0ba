// The ECS API calls the agent makes, as typed requests and responses, and their JSON bodies.
//
// Bodies follow the ECS service model (and what the real agent sends: the internal fields
// `clientToken`, `zoneId` and port-range bindings included), members in alphabetical order as the
// AWS SDK writes them; empty lists and unset optional members are left out. Responses are read
// with path-precise errors. Building a body never fails: the limits ECS puts on lengths (reason
// 1024 bytes, runtime id and image digest 255) are applied by cutting, at a UTF-8 boundary.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/json_reader.h"
#include "agent/common/result.h"

namespace ecs::ecsapi {

// ---- RegisterContainerInstance ------------------------------------------------------------------

// What the instance offers tasks: sent as the totalResources CPU, MEMORY (INTEGER), PORTS and
// PORTS_UDP (STRINGSET).
struct InstanceResources {
  int64_t cpu_units = 0;                     // logical CPUs × 1024
  int64_t memory_mib = 0;                    // MemTotal less ECS_RESERVED_MEMORY
  std::vector<uint16_t> reserved_tcp_ports;  // ECS_RESERVED_PORTS
  std::vector<uint16_t> reserved_udp_ports;  // ECS_RESERVED_PORTS_UDP
};

// A capability or property; most capabilities are a name alone.
struct Attribute {
  std::string name;
  std::optional<std::string> value;
  bool operator==(const Attribute&) const = default;
};

struct Tag {
  std::string key, value;
};

struct RegistrationRequest {
  std::string cluster;
  // Set when re-registering the instance a previous run registered (restored from state).
  std::optional<std::string> container_instance_arn;
  InstanceResources resources;
  std::vector<Attribute> attributes;
  std::vector<Tag> tags;
  std::vector<std::string> gpu_ids;  // platformDevices of type GPU
  // IMDS dynamic/instance-identity/document and .../signature; sent even when empty.
  std::string instance_identity_document;
  std::string instance_identity_signature;
  // A fresh random UUID per registration attempt: ECS treats the retries of one attempt as one
  // registration. Left out when empty.
  std::string client_token;
};

struct RegisteredInstance {
  std::string container_instance_arn;
  std::vector<Attribute> attributes;             // as ECS recorded them
  std::optional<std::string> availability_zone;  // attribute ecs.availability-zone
};

// The names of the `sent` attributes that `registered` lacks or holds with another value. The
// agent must not run with capabilities ECS did not record.
std::vector<std::string> unmatchedAttributes(const std::vector<Attribute>& sent,
                                             const std::vector<Attribute>& registered);

// ---- DiscoverPollEndpoint -----------------------------------------------------------------------

struct PollEndpoints {
  std::string endpoint;                  // ACS; always present in a successful answer
  std::string telemetry_endpoint;        // TCS
  std::string service_connect_endpoint;  // may be empty
  std::string system_logs_endpoint;      // may be empty
};

// ---- Submit*StateChange -------------------------------------------------------------------------

// The statuses ECS accepts in state changes: the agent reports everything before RUNNING (a
// resolved image manifest included) as PENDING.
enum class ReportedStatus { kPending, kRunning, kStopped };
enum class AttachmentStatus { kAttached, kDetached };
enum class TransportProtocol { kTcp, kUdp };

struct PortRange {
  uint16_t first = 0, last = 0;
};

// One published port (first == last, sent as containerPort/hostPort) or range (sent as
// containerPortRange/hostPortRange "first-last").
struct NetworkBinding {
  std::string bind_ip;  // "0.0.0.0", "::"
  PortRange container_ports;
  PortRange host_ports;
  TransportProtocol protocol = TransportProtocol::kTcp;
};

struct ContainerStateChange {
  std::string container_name;
  ReportedStatus status = ReportedStatus::kPending;
  std::optional<std::string> runtime_id;    // the containerd container id
  std::optional<std::string> image_digest;  // "sha256:..."
  std::optional<int> exit_code;
  std::optional<std::string> reason;
  std::vector<NetworkBinding> network_bindings;
};

struct ManagedAgentStateChange {
  std::string container_name;
  std::string managed_agent_name = "ExecuteCommandAgent";
  ReportedStatus status = ReportedStatus::kPending;
  std::optional<std::string> reason;
};

struct TaskStateChange {
  std::string cluster;  // the task's cluster ARN; empty: the client's cluster
  std::string task_arn;
  ReportedStatus status = ReportedStatus::kPending;
  std::string reason;
  std::optional<std::chrono::system_clock::time_point> pull_started_at;
  std::optional<std::chrono::system_clock::time_point> pull_stopped_at;
  std::optional<std::chrono::system_clock::time_point> execution_stopped_at;
  std::vector<ContainerStateChange> containers;
  std::vector<ManagedAgentStateChange> managed_agents;
};

struct AttachmentStateChange {
  std::string attachment_arn;
  AttachmentStatus status = AttachmentStatus::kAttached;
};

// SubmitTaskStateChange's other form: a task ENI attached (no status, reason or containers).
struct TaskAttachmentStateChange {
  std::string cluster;  // empty: the client's cluster
  std::string task_arn;
  std::vector<AttachmentStateChange> attachments;
};

// SubmitContainerStateChange: one container's change outside a task change.
struct StandaloneContainerStateChange {
  std::string cluster;  // empty: the client's cluster
  std::string task_arn;
  ContainerStateChange container;  // image_digest is not part of this call
};

// ---- bodies and responses -----------------------------------------------------------------------

// "PENDING", "RUNNING", "STOPPED"; "ATTACHED", "DETACHED".
std::string_view toString(ReportedStatus status);
std::string_view toString(AttachmentStatus status);

// An epoch-seconds JSON number (an integer when the time is a whole second, else milliseconds in
// the fraction), the AWS JSON protocol's timestamp form.
json::Value epochSeconds(std::chrono::system_clock::time_point time);

json::Object registerContainerInstanceBody(const RegistrationRequest& request);
json::Object discoverPollEndpointBody(const std::string& cluster,
                                      const std::string& container_instance_arn);
// `cluster` stands in for an empty change.cluster.
json::Object submitTaskStateChangeBody(const TaskStateChange& change, const std::string& cluster);
json::Object submitTaskStateChangeBody(const TaskAttachmentStateChange& change,
                                       const std::string& cluster);
json::Object submitContainerStateChangeBody(const StandaloneContainerStateChange& change,
                                            const std::string& cluster);
json::Object submitAttachmentStateChangesBody(const std::vector<AttachmentStateChange>& changes,
                                              const std::string& cluster);

// kDataLoss naming every problem when the response lacks what the agent needs
// (containerInstance.containerInstanceArn; endpoint).
Result<RegisteredInstance> parseRegisterContainerInstanceResponse(const json::Value& response);
Result<PollEndpoints> parseDiscoverPollEndpointResponse(const json::Value& response);

}  // namespace ecs::ecsapi
