// Config: the agent's configuration, read once from /etc/ecs/ecs.config and the environment
// (ECS_* names, as the real agent and ecs-init read them), validated, then immutable.
//
// Precedence: environment > /etc/ecs/ecs.config > /var/lib/ecs/ecs.config > built-in default.
// Problems with individual values become warnings and the default is kept, as the real agent
// does; only values that make the agent unusable are errors.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::config {

enum class ImagePullBehavior { kDefault, kAlways, kOnce, kPreferCached };

struct Config {
  // containerd
  std::string containerd_address = "/run/containerd/containerd.sock";  // ECS_CONTAINERD_ADDRESS
  std::string containerd_namespace = "ecs";                            // ECS_CONTAINERD_NAMESPACE

  // images
  ImagePullBehavior image_pull_behavior = ImagePullBehavior::kDefault;  // ECS_IMAGE_PULL_BEHAVIOR
  std::string engine_auth_type;                                         // ECS_ENGINE_AUTH_TYPE
  std::string engine_auth_data;                                         // ECS_ENGINE_AUTH_DATA
  std::vector<std::string> insecure_registries;                         // ECS_INSECURE_REGISTRIES
  std::chrono::seconds image_pull_timeout{2 * 3600};                    // ECS_IMAGE_PULL_TIMEOUT
  std::chrono::seconds image_pull_inactivity_timeout{60};  // ECS_IMAGE_PULL_INACTIVITY_TIMEOUT
  std::chrono::seconds manifest_pull_timeout{60};          // ECS_MANIFEST_PULL_TIMEOUT

  // tasks
  std::chrono::milliseconds container_stop_timeout{
      std::chrono::seconds(30)};                        // ECS_CONTAINER_STOP_TIMEOUT
  bool task_cpu_mem_limit = true;                       // ECS_ENABLE_TASK_CPU_MEM_LIMIT
  std::string cgroup_path = "/sys/fs/cgroup";           // ECS_CGROUP_PATH
  std::chrono::microseconds cgroup_cpu_period{100000};  // ECS_CGROUP_CPU_PERIOD (8ms..100ms)
  int64_t task_pids_limit = 0;                          // ECS_TASK_PIDS_LIMIT (0: none)

  // network (netns/)
  std::string bridge_name = "ecs-br0";            // ECS_BRIDGE_NAME (ours)
  std::string bridge_subnet = "172.31.224.0/20";  // ECS_BRIDGE_SUBNET (ours)
  std::string dynamic_host_port_range;  // ECS_DYNAMIC_HOST_PORT_RANGE; "": from the kernel
  std::vector<int> reserved_ports = {22, 2375, 2376, 51678, 51679};  // ECS_RESERVED_PORTS
  std::vector<int> reserved_ports_udp;                               // ECS_RESERVED_PORTS_UDP
  bool awsvpc_block_imds = false;                                    // ECS_AWSVPC_BLOCK_IMDS
  bool task_iam_role = true;               // ECS_ENABLE_TASK_IAM_ROLE (ecs-init default)
  bool task_iam_role_network_host = true;  // ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST

  // volumes (volumes/)
  std::string efs_mount_command = "mount";  // ECS_EFS_MOUNT_COMMAND

  // endpoints
  int task_endpoint_port = 51679;  // ECS_TASK_ENDPOINT_PORT (ours): credentials + metadata
  int introspection_port = 51678;  // ECS_INTROSPECTION_PORT (ours)
  int prometheus_metrics_port = 51680;
  bool enable_prometheus_metrics = false;  // ECS_ENABLE_PROMETHEUS_METRICS
  int task_metadata_rps_steady = 40;       // ECS_TASK_METADATA_RPS_LIMIT "steady,burst"
  int task_metadata_rps_burst = 60;
  bool disable_task_metadata_az = false;   // ECS_DISABLE_TASK_METADATA_AZ
  bool enable_container_metadata = false;  // ECS_ENABLE_CONTAINER_METADATA
  bool run_host_credentials = true;  // ECS_RUN_HOST_CREDENTIALS (ours): `run` serves the host's
  std::string availability_zone;     // ECS_AVAILABILITY_ZONE (ours); "": from IMDS on EC2

  // host
  std::string data_dir = "/var/lib/ecs/data";  // ECS_DATADIR
  std::string cluster = "default";             // ECS_CLUSTER
  std::string region;                          // AWS_DEFAULT_REGION / AWS_REGION
  std::string log_level = "info";              // ECS_LOGLEVEL
  bool log_level_set = false;  // ECS_LOGLEVEL was given (commands pick their own default)

  std::vector<std::string> warnings;  // values that were ignored, for the log
};

// Where values come from; tests pass their own.
struct ConfigSources {
  std::map<std::string, std::string> environment;
  std::vector<std::string> files = {"/var/lib/ecs/ecs.config", "/etc/ecs/ecs.config"};
  static ConfigSources fromProcess();  // the process environment and the default files
};

Result<Config> load(const ConfigSources& sources);

// Parses "KEY=VALUE" lines as ecs-init does: trimmed, split on the first '=', lines without '='
// skipped, no quoting, comments or expansion.
std::map<std::string, std::string> parseEnvFile(std::string_view text);

// Go duration syntax ("30s", "1m30s", "2h", "500ms").
Result<std::chrono::milliseconds> parseDuration(std::string_view text);
// strconv.ParseBool forms.
Result<bool> parseBool(std::string_view text);

std::string_view toString(ImagePullBehavior behavior);

}  // namespace ecs::config
