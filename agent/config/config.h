// Config: the agent's configuration, read once from /etc/ecs/ecs.config and the environment
// (ECS_* names, as the real agent and ecs-init read them), validated, then immutable.
//
// Precedence: environment > /etc/ecs/ecs.config > /var/lib/ecs/ecs.config > built-in default.
// Every value is parsed here, into the type its consumers use. Problems with individual values
// become warnings naming the variable, and the default is kept, as the real agent does; only
// values the agent cannot work with are errors (a bad containerd namespace, ECS_EXTERNAL without
// a region, malformed ECS_INSTANCE_ATTRIBUTES or ECS_CONTAINER_INSTANCE_TAGS).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::config {

enum class ImagePullBehavior { kDefault, kAlways, kOnce, kPreferCached };

// ECS_LOGLEVEL's values, as the real agent accepts them.
enum class LogLevel { kDebug, kInfo, kWarn, kError, kCrit, kNone };

// Host ports first..last, both included; 1 <= first < last <= 65535.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  bool operator==(const PortRange&) const = default;
};

// An IPv4 network: the address (host byte order) has no bits set past the prefix.
struct Ipv4Cidr {
  uint32_t network = 0;
  int prefix_length = 0;
  std::string toString() const;  // "172.31.224.0/20"
  bool operator==(const Ipv4Cidr&) const = default;
};

// Requests per second a client may make: `steady` on average, `burst` at once.
struct RpsLimit {
  int steady = 40;
  int burst = 60;
  bool operator==(const RpsLimit&) const = default;
};

struct Config {
  // containerd
  std::string containerd_address = "/run/containerd/containerd.sock";  // ECS_CONTAINERD_ADDRESS
  std::string containerd_namespace = "ecs";                            // ECS_CONTAINERD_NAMESPACE

  // images
  ImagePullBehavior image_pull_behavior = ImagePullBehavior::kDefault;  // ECS_IMAGE_PULL_BEHAVIOR
  // Handed to the images module as given: the credentials' format and its own warnings are its.
  std::string engine_auth_type;                            // ECS_ENGINE_AUTH_TYPE
  std::string engine_auth_data;                            // ECS_ENGINE_AUTH_DATA
  std::vector<std::string> insecure_registries;            // ECS_INSECURE_REGISTRIES
  std::chrono::seconds image_pull_timeout{2 * 3600};       // ECS_IMAGE_PULL_TIMEOUT
  std::chrono::seconds image_pull_inactivity_timeout{60};  // ECS_IMAGE_PULL_INACTIVITY_TIMEOUT
  std::chrono::seconds manifest_pull_timeout{60};          // ECS_MANIFEST_PULL_TIMEOUT
  bool image_cleanup_disabled = false;                     // ECS_DISABLE_IMAGE_CLEANUP
  std::chrono::milliseconds image_cleanup_interval{
      std::chrono::minutes(30)};  // ECS_IMAGE_CLEANUP_INTERVAL (at least 10m)
  std::chrono::milliseconds image_minimum_cleanup_age{
      std::chrono::hours(1)};           // ECS_IMAGE_MINIMUM_CLEANUP_AGE (above 0)
  int num_images_delete_per_cycle = 5;  // ECS_NUM_IMAGES_DELETE_PER_CYCLE (at least 1)

  // telemetry (TCS)
  bool disable_metrics = false;  // ECS_DISABLE_METRICS: no container metrics to the cluster
  // ECS_STOP_TASKS_ON_EXIT (ours): the daemon stops and removes every task when it is told to
  // stop, instead of leaving them running for the next start to take over.
  bool stop_tasks_on_exit = false;
  std::chrono::milliseconds metrics_publish_interval{
      std::chrono::seconds(20)};  // ECS_METRICS_PUBLISH_INTERVAL (ours; 1s..20s)

  // tasks
  std::chrono::milliseconds container_stop_timeout{
      std::chrono::seconds(30)};  // ECS_CONTAINER_STOP_TIMEOUT
  std::chrono::milliseconds task_cleanup_wait{
      std::chrono::hours(3)};      // ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION (at least 1s)
  bool task_cpu_mem_limit = true;  // ECS_ENABLE_TASK_CPU_MEM_LIMIT
  std::string cgroup_path = "/sys/fs/cgroup";           // ECS_CGROUP_PATH
  std::chrono::microseconds cgroup_cpu_period{100000};  // ECS_CGROUP_CPU_PERIOD (8ms..100ms)
  // ECS_TASK_PIDS_LIMIT: processes (threads included) per task. Ours by default, so that a fork
  // bomb stays in its task; 0: none (the real agent's default).
  int64_t task_pids_limit = 4096;
  // Each container stream's output file is rotated at this size (64 KiB at least), and this many
  // files (1..100, the current one included) are kept; a task definition's json-file options
  // `max-size` and `max-file` override them per container.
  uint64_t container_log_max_size = 10 * 1024 * 1024;  // ECS_CONTAINER_LOG_MAX_SIZE ("10m")
  uint32_t container_log_max_files = 5;                // ECS_CONTAINER_LOG_MAX_FILES
  // ECS_ENVIRONMENT_FILES_DIR (ours): local environmentFiles are read only beneath it (the
  // daemon's tasks come from the cluster); empty: refused. `run` reads them anywhere unless set.
  std::string environment_files_dir;

  // network (netns/)
  std::string bridge_name = "ecs-br0";               // ECS_BRIDGE_NAME (ours)
  Ipv4Cidr bridge_subnet{0xac1fe000, 20};            // ECS_BRIDGE_SUBNET (ours): 172.31.224.0/20
  std::optional<PortRange> dynamic_host_port_range;  // ECS_DYNAMIC_HOST_PORT_RANGE; unset: kernel's
  std::vector<uint16_t> reserved_ports = {22, 2375, 2376, 51678, 51679};  // ECS_RESERVED_PORTS
  std::vector<uint16_t> reserved_ports_udp;                               // ECS_RESERVED_PORTS_UDP
  bool awsvpc_block_imds = false;                                         // ECS_AWSVPC_BLOCK_IMDS
  bool task_iam_role = true;               // ECS_ENABLE_TASK_IAM_ROLE (ecs-init default)
  bool task_iam_role_network_host = true;  // ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST

  // volumes (volumes/)
  std::vector<std::string> efs_mount_command = {"mount"};  // ECS_EFS_MOUNT_COMMAND, split on spaces

  // endpoints
  uint16_t task_endpoint_port = 51679;  // ECS_TASK_ENDPOINT_PORT (ours): credentials + metadata
  uint16_t introspection_port = 51678;  // ECS_INTROSPECTION_PORT (ours)
  uint16_t prometheus_metrics_port = 51680;
  bool enable_prometheus_metrics = false;  // ECS_ENABLE_PROMETHEUS_METRICS
  RpsLimit task_metadata_rps_limit;        // ECS_TASK_METADATA_RPS_LIMIT "steady,burst"
  bool disable_task_metadata_az = false;   // ECS_DISABLE_TASK_METADATA_AZ
  bool enable_container_metadata = false;  // ECS_ENABLE_CONTAINER_METADATA
  bool run_host_credentials = true;  // ECS_RUN_HOST_CREDENTIALS (ours): `run` serves the host's
  std::string availability_zone;     // ECS_AVAILABILITY_ZONE (ours); "": from IMDS on EC2
  // Ours: connections the task endpoint holds open, in total (ECS_TASK_ENDPOINT_MAX_CONNECTIONS)
  // and per client address (ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT); beyond them a
  // connection is reset at once. ECS_RESERVED_FDS (64 at least): descriptors no endpoint server
  // may take from the rest of the agent (the total is lowered to the descriptor limit less these).
  uint32_t task_endpoint_max_connections = 1024;
  uint32_t task_endpoint_max_connections_per_client = 64;
  uint32_t reserved_fds = 512;

  // registration with the cluster
  std::string backend_host;            // ECS_BACKEND_HOST: the ECS endpoint URL; "": the region's
  bool external = false;               // ECS_EXTERNAL: ECS Anywhere (no instance metadata)
  bool ec2_metadata_disabled = false;  // AWS_EC2_METADATA_DISABLED
  uint16_t reserved_memory_mib = 0;    // ECS_RESERVED_MEMORY: MiB not registered as MEMORY
  std::map<std::string, std::string> instance_attributes;      // ECS_INSTANCE_ATTRIBUTES
  std::map<std::string, std::string> container_instance_tags;  // ECS_CONTAINER_INSTANCE_TAGS

  // host
  std::string data_dir = "/var/lib/ecs/data";  // ECS_DATADIR
  std::string cluster = "default";             // ECS_CLUSTER
  std::string region;                          // AWS_DEFAULT_REGION / AWS_REGION
  // HTTP_PROXY, HTTPS_PROXY, NO_PROXY (either case) as the files and the environment set them.
  // main() puts them in the process environment, where every client of the agent reads them
  // (agent/aws/proxy.h): the ECS guide sets them in /etc/ecs/ecs.config.
  std::map<std::string, std::string> proxy_environment;
  std::optional<LogLevel> log_level;  // ECS_LOGLEVEL; unset: each command's own default

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
std::string_view toString(LogLevel level);

}  // namespace ecs::config
