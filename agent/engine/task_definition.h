// TaskDefinition: an ECS task definition, in the exact JSON that
// `aws ecs register-task-definition --cli-input-json` accepts, parsed at the edge into typed
// structs and validated once. Nothing inside the agent handles the raw JSON after this.
//
// Optional fields the API marks "Boxed" are std::optional: absent and zero differ (memory).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::engine {

struct KeyValuePair {
  std::string name;
  std::string value;
};

// A secret to resolve from Secrets Manager or SSM Parameter Store (`valueFrom` is the ARN or
// parameter name); the engine must resolve it, or refuse the task, before the container starts.
struct Secret {
  std::string name;
  std::string value_from;
};

struct PortMapping {
  std::optional<int> container_port;
  std::optional<int> host_port;      // absent or 0 in bridge mode: dynamic
  std::string protocol = "tcp";      // "tcp" | "udp"
  std::string container_port_range;  // "8000-8010" (no containerPort/hostPort then)
  std::string name;
  std::string app_protocol;
};

struct MountPoint {
  std::string source_volume;
  std::string container_path;
  bool read_only = false;
};

struct VolumeFrom {
  std::string source_container;
  bool read_only = false;
};

struct Device {
  std::string host_path;
  std::string container_path;            // empty: same as host_path
  std::vector<std::string> permissions;  // "read" | "write" | "mknod"; empty: all three
};

struct Tmpfs {
  std::string container_path;
  int size_mib = 0;
  std::vector<std::string> mount_options;
};

struct LinuxParameters {
  std::vector<std::string> capabilities_add;   // as given ("NET_ADMIN" or "CAP_NET_ADMIN")
  std::vector<std::string> capabilities_drop;  // "ALL" allowed
  std::vector<Device> devices;
  bool init_process_enabled = false;
  std::optional<int> shared_memory_size_mib;
  std::vector<Tmpfs> tmpfs;
  std::optional<int> max_swap_mib;
  std::optional<int> swappiness;
};

struct ContainerDependency {
  enum class Condition { kStart, kComplete, kSuccess, kHealthy };
  std::string container_name;
  Condition condition = Condition::kStart;
};

struct HealthCheck {
  std::vector<std::string> command;  // ["CMD", args...] or ["CMD-SHELL", "script"]
  int interval_seconds = 30;         // 5..300
  int timeout_seconds = 5;           // 2..60
  int retries = 3;                   // 1..10
  int start_period_seconds = 0;      // 0..300
};

struct Ulimit {
  std::string name;  // "nofile", "nproc", ...
  int64_t soft_limit = 0;
  int64_t hard_limit = 0;
};

struct HostEntry {
  std::string hostname;
  std::string ip_address;
};

struct EnvironmentFile {
  std::string value;  // a local path here ("s3" ARNs come with the cluster work)
  std::string type = "s3";
};

struct LogConfiguration {
  std::string log_driver;
  std::map<std::string, std::string> options;
  std::vector<Secret> secret_options;
};

struct RestartPolicy {
  bool enabled = false;
  std::vector<int> ignored_exit_codes;
  int restart_attempt_period_seconds = 300;  // 60..1800
};

struct ContainerDefinition {
  std::string name;
  std::string image;
  int cpu = 0;                                // CPU units (1024 = one vCPU)
  std::optional<int> memory_mib;              // hard limit
  std::optional<int> memory_reservation_mib;  // soft limit
  std::vector<std::string> links;
  std::vector<PortMapping> port_mappings;
  bool essential = true;
  std::vector<std::string> entry_point;
  std::vector<std::string> command;
  std::vector<KeyValuePair> environment;
  std::vector<EnvironmentFile> environment_files;
  std::vector<MountPoint> mount_points;
  std::vector<VolumeFrom> volumes_from;
  std::optional<LinuxParameters> linux_parameters;
  std::vector<ContainerDependency> depends_on;
  std::optional<int> start_timeout_seconds;
  std::optional<int> stop_timeout_seconds;
  std::string hostname;
  std::string user;
  std::string working_directory;
  bool disable_networking = false;
  bool privileged = false;
  bool readonly_root_filesystem = false;
  std::vector<std::string> dns_servers;
  std::vector<std::string> dns_search_domains;
  std::vector<HostEntry> extra_hosts;
  std::vector<std::string> docker_security_options;
  bool interactive = false;
  bool pseudo_terminal = false;
  std::map<std::string, std::string> docker_labels;
  std::vector<Ulimit> ulimits;
  std::optional<LogConfiguration> log_configuration;
  std::optional<HealthCheck> health_check;
  std::vector<KeyValuePair> system_controls;  // name = namespace (sysctl key)
  std::optional<RestartPolicy> restart_policy;
  std::vector<Secret> secrets;
  std::string repository_credentials_parameter;  // repositoryCredentials.credentialsParameter
};

struct HostVolume {
  std::string source_path;  // empty: an agent-managed task-scoped directory
};

struct DockerVolumeConfiguration {
  std::string scope = "task";  // "task" | "shared"
  std::optional<bool> autoprovision;
  std::string driver = "local";
  std::map<std::string, std::string> driver_opts;
  std::map<std::string, std::string> labels;
};

struct EfsVolumeConfiguration {
  std::string file_system_id;
  std::string root_directory = "/";
  bool transit_encryption = false;  // "ENABLED" | "DISABLED"
  std::optional<int> transit_encryption_port;
  std::string access_point_id;
  bool iam = false;  // authorizationConfig.iam "ENABLED"
};

// At most one configuration is set; a volume given with none of them is `host{}` (an
// agent-managed task-scoped directory), as in ECS.
struct Volume {
  std::string name;
  std::optional<HostVolume> host;
  std::optional<DockerVolumeConfiguration> docker_volume_configuration;
  std::optional<EfsVolumeConfiguration> efs_volume_configuration;
};

struct RuntimePlatform {
  std::string cpu_architecture;         // "X86_64" | "ARM64" | "" (any)
  std::string operating_system_family;  // "LINUX" | "" (Windows families are refused)
};

struct TaskDefinition {
  std::string family;
  int revision = 1;  // not in the register input; 1 for `run`, set by the cluster otherwise
  std::string task_role_arn;
  std::string execution_role_arn;
  std::string network_mode = "bridge";  // "bridge" | "host" | "awsvpc" | "none"
  std::vector<ContainerDefinition> container_definitions;
  std::vector<Volume> volumes;
  std::optional<int> cpu_units;   // task "cpu": "256" or "0.25 vCPU" -> units
  std::optional<int> memory_mib;  // task "memory": "512" or "0.5 GB" -> MiB
  std::string pid_mode;           // "" | "host" | "task"
  std::string ipc_mode;           // "" | "host" | "task" | "none"
  std::vector<std::string> requires_compatibilities;
  std::map<std::string, std::string> tags;
  std::optional<RuntimePlatform> runtime_platform;
  std::string task_definition_arn;  // from describe-task-definition output; empty otherwise
  // JSON paths of features ECS knows but this agent cannot run (firelens, GPUs, FSx for Windows,
  // App Mesh proxy, ...). Kept apart from unknown fields, which are ignored: validation refuses
  // these instead of running the task without them.
  std::vector<std::string> unsupported_fields;

  const ContainerDefinition* container(std::string_view name) const;
};

// A port range such as portMappings[].containerPortRange "8000-8010": 1 <= first < last <= 65535.
struct PortRange {
  int first = 0;
  int last = 0;
  int size() const { return last - first + 1; }
};
Result<PortRange> parsePortRange(std::string_view text);

// Task-level "cpu" / "memory" strings as ECS accepts them: "256" or "0.25 vCPU" (-> 256 units);
// "512", "512 MiB", "0.5 GB" (-> 512 MiB). kInvalidArgument for anything else.
Result<int> parseTaskCpu(std::string_view text);
Result<int> parseTaskMemory(std::string_view text);

// Docker's spelling of a capability, as runc wants it: "net_admin", "CAP_NET_ADMIN" and
// "Cap_Net_Admin" all give "CAP_NET_ADMIN"; "all" gives "ALL". nullopt when libcap does not
// know the name.
std::optional<std::string> canonicalCapabilityName(std::string_view name);

// Parses the JSON. Malformed JSON names the line and column; a field of the wrong type names
// the field's path ("containerDefinitions[1].portMappings[0].containerPort: expected an
// integer"). Unknown fields are ignored, as the ECS API does for forward compatibility.
Result<TaskDefinition> parseTaskDefinition(std::string_view json);

// Every problem that would stop the task, one message each, naming the field:
// missing image, more than 10 containers, duplicate names, unknown capability, bad ulimit,
// dependsOn on an unknown container or a cycle, memory below 6 MiB, invalid port numbers, ...
// Empty when the definition can run.
std::vector<std::string> validateTaskDefinition(const TaskDefinition& definition);

// Both: kInvalidArgument with all problems joined by "; " on failure.
Result<TaskDefinition> loadTaskDefinition(std::string_view json);

}  // namespace ecs::engine
