// Validation of a parsed task definition: every problem that would stop the task, one message
// each, naming the field.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "agent/common/text.h"
#include "agent/engine/task_definition.h"
#include "agent/images/image_reference.h"

namespace ecs::engine {
namespace {

using text::clip;

// ECS names (containers, volumes, families): up to 255 letters, digits, '_' and '-'.
bool isEcsName(std::string_view name) {
  return !name.empty() && name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
    return text::isAlpha(c) || text::isDigit(c) || c == '_' || c == '-';
  });
}

bool isIpAddress(const std::string& text) {
  unsigned char buffer[16];
  if (text.find('\0') != std::string::npos) return false;  // inet_pton would stop there
  return inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

constexpr size_t kMaxContainers = 10;
constexpr int kMinMemoryMib = 6;  // Docker 20.10+ refuses less (older Docker: 4 MiB)
constexpr int kMinTaskCpuUnits = 128;
constexpr int kMaxTaskCpuUnits = 196608;  // 192 vCPU
constexpr int kMaxTimeoutSeconds = 120;
// ECS allows 100 port ranges per container and documents no limit on its other mappings; 100
// mappings in all keeps the agent's work (and a task's iptables rules) bounded. A container
// instance reserves at most 100 fixed host ports, so a task needing more could never be placed.
constexpr size_t kMaxPortMappingsPerContainer = 100;
constexpr size_t kMaxFixedHostPortsPerTask = 100;
constexpr size_t kMaxHostnameLength = 253;
constexpr size_t kMaxHostnameLabelLength = 63;
constexpr size_t kMaxIgnoredExitCodes = 50;

constexpr std::array kUlimitNames = {"core",    "cpu",      "data",   "fsize",      "locks",
                                     "memlock", "msgqueue", "nice",   "nofile",     "nproc",
                                     "rss",     "rtprio",   "rttime", "sigpending", "stack"};
constexpr std::array kLogDrivers = {"json-file", "syslog",  "journald", "gelf",
                                    "fluentd",   "awslogs", "splunk",   "awsfirelens"};
// ECS's enum of tmpfs mount options (those taking a value are written "mode=1777").
constexpr std::array kTmpfsOptions = {
    "defaults",   "ro",          "rw",         "suid",        "nosuid",        "dev",     "nodev",
    "exec",       "noexec",      "sync",       "async",       "dirsync",       "remount", "mand",
    "nomand",     "atime",       "noatime",    "diratime",    "nodiratime",    "bind",    "rbind",
    "unbindable", "runbindable", "private",    "rprivate",    "shared",        "rshared", "slave",
    "rslave",     "relatime",    "norelatime", "strictatime", "nostrictatime", "mode",    "uid",
    "gid",        "nr_inodes",   "nr_blocks",  "mpol"};

template <size_t N>
bool oneOf(std::string_view value, const std::array<const char*, N>& allowed) {
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const char* candidate) { return value == candidate; });
}

bool isAbsolutePath(std::string_view path) {
  return !path.empty() && path.front() == '/';
}

bool hasLineBreak(std::string_view text) {
  return text.find_first_of("\r\n") != std::string_view::npos;
}

bool hasControlCharacter(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// A path's components without empty and "." ones: "//proc/./sys/" -> {proc, sys}.
std::vector<std::string_view> pathComponents(std::string_view path) {
  std::vector<std::string_view> components;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view component = path.substr(0, slash);
    if (!component.empty() && component != ".") components.push_back(component);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return components;
}

std::string normalizedPath(std::string_view path) {
  std::string out;
  for (std::string_view component : pathComponents(path)) {
    out += '/';
    out += component;
  }
  return out.empty() ? "/" : out;
}

bool hasParentComponent(std::string_view path) {
  auto components = pathComponents(path);
  return std::find(components.begin(), components.end(), "..") != components.end();
}

// Why a path inside the container cannot be a mount target, if it cannot: it must be absolute
// and free of ".." (what it names must not depend on the image's symlinks), and must not be the
// root or in /proc or /sys, which are the kernel's interfaces that the runtime sets up (and
// masks) itself.
std::optional<std::string> mountTargetProblem(std::string_view path) {
  if (!isAbsolutePath(path)) return "must be an absolute path";
  if (hasParentComponent(path)) return "must not contain \"..\" components";
  auto components = pathComponents(path);
  if (components.empty()) return "must not be the container's root";
  if (components.front() == "proc" || components.front() == "sys") {
    return fmt::format("must not be in /{} (the runtime sets it up)", components.front());
  }
  return std::nullopt;
}

// A path on the host: absolute, and without ".." so it names what it seems to.
std::optional<std::string> hostPathProblem(std::string_view path) {
  if (!isAbsolutePath(path)) return "must be an absolute path";
  if (hasParentComponent(path)) return "must not contain \"..\" components";
  return std::nullopt;
}

// Why a host name (hostname, an extraHosts name, a DNS search domain) is refused, if it is:
// labels of 1-63 letters, digits, '-' or '_' joined by '.', 253 characters in all (one trailing
// '.' allowed), so it can neither break the files it is written to (/etc/hosts, /etc/hostname,
// resolv.conf) nor add names or lines to them.
std::optional<std::string> hostnameProblem(std::string_view name) {
  if (name.size() > kMaxHostnameLength) {
    return fmt::format("is {} characters long (at most {})", name.size(), kMaxHostnameLength);
  }
  if (hasLineBreak(name)) return "must not contain a line break";
  std::string_view labels = name;
  if (labels.size() > 1 && labels.back() == '.') labels.remove_suffix(1);
  while (true) {
    size_t dot = labels.find('.');
    std::string_view label = labels.substr(0, dot);
    if (label.empty()) return "has an empty label (\"..\", or a leading '.')";
    if (label.size() > kMaxHostnameLabelLength) {
      return fmt::format("has a label of {} characters (at most {})", label.size(),
                         kMaxHostnameLabelLength);
    }
    if (!std::all_of(label.begin(), label.end(), [](char c) {
          return text::isAlpha(c) || text::isDigit(c) || c == '-' || c == '_';
        })) {
      return "may only hold letters, digits, '-', '_' and '.'";
    }
    if (dot == std::string_view::npos) return std::nullopt;
    labels.remove_prefix(dot + 1);
  }
}

class Problems {
 public:
  void add(std::string message) { messages_.push_back(std::move(message)); }
  template <typename... Args>
  void add(fmt::format_string<Args...> format, Args&&... args) {
    messages_.push_back(fmt::format(format, std::forward<Args>(args)...));
  }
  std::vector<std::string> take() { return std::move(messages_); }

 private:
  std::vector<std::string> messages_;
};

// `containerDefinitions[2] (name "web")`, the prefix of every container problem.
std::string containerLabel(const ContainerDefinition& container, size_t index) {
  if (container.name.empty()) return fmt::format("containerDefinitions[{}]", index);
  return fmt::format("containerDefinitions[{}] (name \"{}\")", index, clip(container.name));
}

std::string conditionName(ContainerDependency::Condition condition) {
  switch (condition) {
    case ContainerDependency::Condition::kStart:
      return "START";
    case ContainerDependency::Condition::kComplete:
      return "COMPLETE";
    case ContainerDependency::Condition::kSuccess:
      return "SUCCESS";
    case ContainerDependency::Condition::kHealthy:
      return "HEALTHY";
  }
  return "?";
}

// Everything one validation pass needs to know about the task as a whole.
struct TaskView {
  const TaskDefinition& definition;
  std::map<std::string, size_t> containers;  // name -> index (first occurrence)
  std::set<std::string> volumes;

  bool sharesNetworkNamespace() const {
    return definition.network_mode == "host" || definition.network_mode == "awsvpc";
  }
};

void validateTask(const TaskDefinition& d, Problems& problems) {
  if (d.family.empty()) {
    problems.add("family: required");
  } else if (!isEcsName(d.family)) {
    problems.add("family: \"{}\" must be 1-255 letters, digits, '_' or '-'", clip(d.family));
  }
  if (d.revision < 1) problems.add("revision: {} must be at least 1", d.revision);
  static constexpr std::array kNetworkModes = {"bridge", "host", "awsvpc", "none"};
  if (!oneOf(d.network_mode, kNetworkModes)) {
    problems.add("networkMode: \"{}\" is not one of bridge, host, awsvpc, none",
                 clip(d.network_mode));
  }
  static constexpr std::array kPidModes = {"", "host", "task"};
  if (!oneOf(d.pid_mode, kPidModes)) {
    problems.add("pidMode: \"{}\" is not one of host, task", clip(d.pid_mode));
  }
  static constexpr std::array kIpcModes = {"", "host", "task", "none"};
  if (!oneOf(d.ipc_mode, kIpcModes)) {
    problems.add("ipcMode: \"{}\" is not one of host, task, none", clip(d.ipc_mode));
  }
  static constexpr std::array kCompatibilities = {"EC2", "FARGATE", "EXTERNAL"};
  for (size_t i = 0; i < d.requires_compatibilities.size(); ++i) {
    if (!oneOf(d.requires_compatibilities[i], kCompatibilities)) {
      problems.add("requiresCompatibilities[{}]: \"{}\" is not one of EC2, FARGATE, EXTERNAL", i,
                   clip(d.requires_compatibilities[i]));
    }
  }
  if (d.runtime_platform) {
    const RuntimePlatform& platform = *d.runtime_platform;
    if (!platform.operating_system_family.empty() && platform.operating_system_family != "LINUX") {
      problems.add("runtimePlatform.operatingSystemFamily: \"{}\" cannot run on this Linux agent",
                   clip(platform.operating_system_family));
    }
    static constexpr std::array kArchitectures = {"", "X86_64", "ARM64"};
    if (!oneOf(platform.cpu_architecture, kArchitectures)) {
      problems.add("runtimePlatform.cpuArchitecture: \"{}\" is not one of X86_64, ARM64",
                   clip(platform.cpu_architecture));
    }
  }
  if (d.cpu_units && (*d.cpu_units < kMinTaskCpuUnits || *d.cpu_units > kMaxTaskCpuUnits)) {
    problems.add("cpu: {} units is outside {}..{} (0.125 to 192 vCPU)", *d.cpu_units,
                 kMinTaskCpuUnits, kMaxTaskCpuUnits);
  }
  if (d.memory_mib && *d.memory_mib < kMinMemoryMib) {
    problems.add("memory: {} MiB is below the {} MiB minimum", *d.memory_mib, kMinMemoryMib);
  }
  for (const auto& field : d.unsupported_fields) {
    problems.add("{}: not supported by this agent", field);
  }
}

void validateNames(const TaskDefinition& d, TaskView& view, Problems& problems) {
  const auto& containers = d.container_definitions;
  if (containers.empty()) problems.add("containerDefinitions: at least one container is required");
  if (containers.size() > kMaxContainers) {
    problems.add("containerDefinitions: {} containers is more than the ECS limit of {}",
                 containers.size(), kMaxContainers);
  }
  for (size_t i = 0; i < containers.size(); ++i) {
    const auto& name = containers[i].name;
    std::string label = containerLabel(containers[i], i);
    if (name.empty()) {
      problems.add("{}.name: required", label);
      continue;
    }
    if (!isEcsName(name)) {
      problems.add("{}.name: must be 1-255 letters, digits, '_' or '-'", label);
    }
    auto [it, inserted] = view.containers.emplace(name, i);
    if (!inserted) {
      problems.add("{}.name: duplicate of containerDefinitions[{}]", label, it->second);
    }
  }
  if (!containers.empty() && std::none_of(containers.begin(), containers.end(),
                                          [](const auto& c) { return c.essential; })) {
    problems.add("containerDefinitions: at least one container must be essential");
  }
}

// EFS: IAM authorization and access points only work over TLS (efs-utils' "tls" option).
void validateEfsVolume(const std::string& prefix, const EfsVolumeConfiguration& efs,
                       Problems& problems) {
  if (efs.file_system_id.empty()) problems.add("{}.fileSystemId: required", prefix);
  if (!efs.root_directory.empty()) {
    if (auto problem = hostPathProblem(efs.root_directory)) {
      problems.add("{}.rootDirectory: \"{}\" {}", prefix, clip(efs.root_directory), *problem);
    }
  }
  if (efs.transit_encryption_port &&
      (*efs.transit_encryption_port < 1 || *efs.transit_encryption_port > 65535)) {
    problems.add("{}.transitEncryptionPort: {} is outside 1..65535", prefix,
                 *efs.transit_encryption_port);
  }
  if (efs.transit_encryption_port && !efs.transit_encryption) {
    problems.add("{}.transitEncryptionPort: needs transitEncryption ENABLED", prefix);
  }
  if (efs.iam && !efs.transit_encryption) {
    problems.add("{}.authorizationConfig.iam: ENABLED needs transitEncryption ENABLED", prefix);
  }
  if (!efs.access_point_id.empty()) {
    if (!efs.transit_encryption) {
      problems.add("{}.authorizationConfig.accessPointId: needs transitEncryption ENABLED", prefix);
    }
    if (!efs.root_directory.empty() && efs.root_directory != "/") {
      problems.add(
          "{}.rootDirectory: must be omitted or \"/\" with an access point (the access point "
          "sets the path)",
          prefix);
    }
  }
}

void validateVolumes(const TaskDefinition& d, TaskView& view, Problems& problems) {
  for (size_t i = 0; i < d.volumes.size(); ++i) {
    const Volume& volume = d.volumes[i];
    std::string label = volume.name.empty()
                            ? fmt::format("volumes[{}]", i)
                            : fmt::format("volumes[{}] (name \"{}\")", i, clip(volume.name));
    if (volume.name.empty()) {
      problems.add("{}.name: required", label);
    } else if (!isEcsName(volume.name)) {
      problems.add("{}.name: must be 1-255 letters, digits, '_' or '-'", label);
    } else if (!view.volumes.insert(volume.name).second) {
      problems.add("{}.name: duplicate volume name", label);
    }
    int configurations = int{volume.host.has_value()} +
                         int{volume.docker_volume_configuration.has_value()} +
                         int{volume.efs_volume_configuration.has_value()};
    if (configurations > 1) {
      problems.add(
          "{}: only one of host, dockerVolumeConfiguration and efsVolumeConfiguration may be set",
          label);
    }
    if (volume.host && !volume.host->source_path.empty()) {
      if (auto problem = hostPathProblem(volume.host->source_path)) {
        problems.add("{}.host.sourcePath: \"{}\" {}", label, clip(volume.host->source_path),
                     *problem);
      }
    }
    if (const auto& docker = volume.docker_volume_configuration) {
      if (docker->scope != "task" && docker->scope != "shared") {
        problems.add("{}.dockerVolumeConfiguration.scope: \"{}\" is not one of task, shared", label,
                     clip(docker->scope));
      } else if (docker->scope == "task" && docker->autoprovision.value_or(false)) {
        problems.add(
            "{}.dockerVolumeConfiguration.autoprovision: only allowed with scope \"shared\"",
            label);
      }
      if (docker->driver != "local") {
        problems.add(
            "{}.dockerVolumeConfiguration.driver: \"{}\" is not supported (there is no Docker "
            "volume plugin here; only \"local\")",
            label, clip(docker->driver));
      }
    }
    if (volume.efs_volume_configuration) {
      validateEfsVolume(label + ".efsVolumeConfiguration", *volume.efs_volume_configuration,
                        problems);
    }
  }
}

void validateMemoryAndCpu(const TaskDefinition& d, Problems& problems) {
  int64_t reserved = 0;
  int64_t cpu = 0;
  for (size_t i = 0; i < d.container_definitions.size(); ++i) {
    const auto& c = d.container_definitions[i];
    std::string label = containerLabel(c, i);
    if (c.cpu < 0) problems.add("{}.cpu: {} must not be negative", label, c.cpu);
    cpu += std::max(c.cpu, 0);
    if (c.memory_mib && *c.memory_mib < kMinMemoryMib) {
      problems.add("{}.memory: {} MiB is below the {} MiB minimum", label, *c.memory_mib,
                   kMinMemoryMib);
    }
    if (c.memory_reservation_mib && *c.memory_reservation_mib < kMinMemoryMib) {
      problems.add("{}.memoryReservation: {} MiB is below the {} MiB minimum", label,
                   *c.memory_reservation_mib, kMinMemoryMib);
    }
    if (c.memory_mib && c.memory_reservation_mib && *c.memory_reservation_mib > *c.memory_mib) {
      problems.add("{}.memoryReservation: {} MiB is more than memory ({} MiB)", label,
                   *c.memory_reservation_mib, *c.memory_mib);
    }
    if (d.memory_mib && c.memory_mib && *c.memory_mib > *d.memory_mib) {
      problems.add("{}.memory: {} MiB is more than the task's memory ({} MiB)", label,
                   *c.memory_mib, *d.memory_mib);
    }
    if (!d.memory_mib && !c.memory_mib && !c.memory_reservation_mib) {
      problems.add(
          "{}.memory: memory or memoryReservation is required when the task sets no memory", label);
    }
    reserved += std::max(c.memory_reservation_mib.value_or(0), 0);
  }
  if (d.memory_mib && reserved > *d.memory_mib) {
    problems.add(
        "memory: the containers' memoryReservation total {} MiB is more than the task's {} "
        "MiB",
        reserved, *d.memory_mib);
  }
  if (d.cpu_units && cpu > *d.cpu_units) {
    problems.add("cpu: the containers' cpu total {} units is more than the task's {}", cpu,
                 *d.cpu_units);
  }
}

// A port interval claimed in one network namespace, for overlap checks.
struct PortClaim {
  int first;
  int last;
  std::string protocol;
  std::string field;  // "containerDefinitions[0] (name "web").portMappings[1]"
};

// Reports each claim that overlaps an earlier one (sorted by protocol and first port), naming
// the earlier claim reaching furthest: O(n log n) however wide the ranges are.
void reportOverlaps(std::vector<PortClaim> claims, std::string_view what, Problems& problems) {
  std::stable_sort(claims.begin(), claims.end(), [](const PortClaim& a, const PortClaim& b) {
    return std::tie(a.protocol, a.first) < std::tie(b.protocol, b.first);
  });
  const PortClaim* widest = nullptr;
  for (const PortClaim& claim : claims) {
    if (widest && widest->protocol == claim.protocol && claim.first <= widest->last) {
      problems.add("{}: {} port {}/{} is also used by {}", claim.field, what, claim.first,
                   claim.protocol, widest->field);
    }
    if (!widest || widest->protocol != claim.protocol || claim.last > widest->last) {
      widest = &claim;
    }
  }
}

// Where the ports of one container's mappings go, for the overlap checks.
struct PortClaims {
  std::vector<PortClaim> container;  // container ports in the container's network namespace
  std::vector<PortClaim> host;       // fixed host ports (bridge mode)
};

// A containerPortRange mapping: ports are picked by the agent (bridge) or equal (awsvpc).
void validatePortRange(const std::string& network_mode, const PortMapping& m,
                       const std::string& field, PortClaims& claims, Problems& problems) {
  if (m.container_port) {
    problems.add("{}.containerPortRange: cannot be combined with containerPort", field);
  }
  if (m.host_port) problems.add("{}.hostPort: cannot be combined with containerPortRange", field);
  if (network_mode != "bridge" && network_mode != "awsvpc") {
    problems.add("{}.containerPortRange: needs networkMode bridge or awsvpc", field);
  }
  auto range = parsePortRange(m.container_port_range);
  if (!range) {
    problems.add("{}.containerPortRange: {}", field, range.error().message);
  } else if (!m.container_port) {
    claims.container.push_back({range->first, range->last, m.protocol, field});
  }
}

// A containerPort mapping. In host and awsvpc modes the container port is the host port.
void validatePortMapping(const std::string& network_mode, const PortMapping& m,
                         const std::string& field, PortClaims& claims, Problems& problems) {
  bool protocol_ok = m.protocol == "tcp" || m.protocol == "udp";
  if (!protocol_ok)
    problems.add("{}.protocol: \"{}\" is not one of tcp, udp", field, clip(m.protocol));
  if (!m.app_protocol.empty() && m.app_protocol != "http" && m.app_protocol != "http2" &&
      m.app_protocol != "grpc") {
    problems.add("{}.appProtocol: \"{}\" is not one of http, http2, grpc", field,
                 clip(m.app_protocol));
  }
  PortClaims ignored;
  PortClaims& out = protocol_ok ? claims : ignored;
  if (!m.container_port_range.empty()) {
    validatePortRange(network_mode, m, field, out, problems);
    return;
  }
  if (!m.container_port) {
    problems.add("{}.containerPort: required (or containerPortRange)", field);
    return;
  }
  const bool shared_namespace = network_mode == "host" || network_mode == "awsvpc";
  int port = *m.container_port;
  if (port >= 1 && port <= 65535) {
    out.container.push_back({port, port, m.protocol, field});
  } else {
    problems.add("{}.containerPort: {} is outside 1..65535", field, port);
  }
  int host_port = m.host_port.value_or(0);
  if (host_port < 0 || host_port > 65535) {
    problems.add("{}.hostPort: {} is outside 0..65535 (0: dynamic)", field, host_port);
  } else if (shared_namespace && host_port != 0 && host_port != port) {
    problems.add(
        "{}.hostPort: {} must equal containerPort ({}) or be omitted with networkMode "
        "\"{}\"",
        field, host_port, port, network_mode);
  } else if (!shared_namespace && host_port != 0) {
    out.host.push_back({host_port, host_port, m.protocol, field});
  }
}

// Containers in bridge mode have a namespace each; host and awsvpc tasks share one. Fixed host
// ports are one namespace for the whole task either way.
void validatePorts(const TaskView& view, Problems& problems) {
  const TaskDefinition& d = view.definition;
  PortClaims task_claims;
  for (size_t i = 0; i < d.container_definitions.size(); ++i) {
    const auto& c = d.container_definitions[i];
    std::string label = containerLabel(c, i);
    if (d.network_mode == "none" && !c.port_mappings.empty()) {
      problems.add("{}.portMappings: not allowed with networkMode \"none\"", label);
      continue;
    }
    if (c.port_mappings.size() > kMaxPortMappingsPerContainer) {
      problems.add("{}.portMappings: {} mappings is more than the limit of {} per container", label,
                   c.port_mappings.size(), kMaxPortMappingsPerContainer);
      continue;
    }
    PortClaims claims;
    for (size_t j = 0; j < c.port_mappings.size(); ++j) {
      validatePortMapping(d.network_mode, c.port_mappings[j],
                          fmt::format("{}.portMappings[{}]", label, j), claims, problems);
    }
    task_claims.host.insert(task_claims.host.end(), claims.host.begin(), claims.host.end());
    if (view.sharesNetworkNamespace()) {
      task_claims.container.insert(task_claims.container.end(), claims.container.begin(),
                                   claims.container.end());
    } else {
      reportOverlaps(std::move(claims.container), "container", problems);
    }
  }
  size_t fixed_host_ports =
      task_claims.host.size() + (d.network_mode == "host" ? task_claims.container.size() : 0);
  if (fixed_host_ports > kMaxFixedHostPortsPerTask) {
    problems.add(
        "portMappings: the task reserves {} fixed host ports, more than the {} a container "
        "instance can reserve",
        fixed_host_ports, kMaxFixedHostPortsPerTask);
  }
  reportOverlaps(std::move(task_claims.container), "container", problems);
  reportOverlaps(std::move(task_claims.host), "host", problems);
}

// "no-new-privileges", "apparmor:PROFILE", "label:type:svirt_t", "seccomp=unconfined" ... as the
// Docker daemon reads them (':' is its legacy separator, '=' the current one).
std::optional<std::string> securityOptionProblem(const std::string& option) {
  if (option == "no-new-privileges") return std::nullopt;
  size_t separator = option.find_first_of("=:");
  if (separator == std::string::npos) {
    return fmt::format(
        "\"{}\" is not a security option (expected no-new-privileges, "
        "label:..., apparmor:... or seccomp:...)",
        clip(option));
  }
  std::string key = option.substr(0, separator);
  std::string value = option.substr(separator + 1);
  if (key == "no-new-privileges") {
    if (value == "true" || value == "false") return std::nullopt;
    return fmt::format("\"{}\": no-new-privileges takes true or false", clip(option));
  }
  if (key == "apparmor") {
    if (!value.empty()) return std::nullopt;
    return fmt::format("\"{}\": apparmor needs a profile name", clip(option));
  }
  if (key == "label") {
    if (value == "disable" || value == "nested") return std::nullopt;
    for (std::string_view prefix : {"user:", "role:", "type:", "level:", "filetype:"}) {
      if (value.starts_with(prefix) && value.size() > prefix.size()) return std::nullopt;
    }
    return fmt::format("\"{}\": label takes user:, role:, type:, level:, filetype: or disable",
                       clip(option));
  }
  if (key == "seccomp") {
    if (value == "unconfined") return std::nullopt;
    boost::system::error_code ec;
    boost::json::value profile = boost::json::parse(value, ec);
    if (!ec && profile.is_object()) return std::nullopt;
    return fmt::format(
        "\"{}\": seccomp takes \"unconfined\" or an inline JSON profile (as the Docker API does; "
        "not a file path)",
        clip(option));
  }
  if (key == "credentialspec") {
    return fmt::format("\"{}\": credentialspec is for Windows containers", clip(option));
  }
  return fmt::format(
      "\"{}\": unknown security option \"{}\" (expected no-new-privileges, "
      "label, apparmor or seccomp)",
      clip(option), clip(key));
}

enum class SysctlNamespace { kNone, kIpc, kNetwork };

// The sysctls Docker lets a container set, and the namespace each one belongs to.
SysctlNamespace sysctlNamespace(std::string_view name) {
  if (name.starts_with("net.")) return SysctlNamespace::kNetwork;
  if (name.starts_with("fs.mqueue.") || name.starts_with("kernel.msg") ||
      name.starts_with("kernel.shm") || name == "kernel.sem") {
    return SysctlNamespace::kIpc;
  }
  return SysctlNamespace::kNone;
}

void validateLinuxParameters(const std::string& label, const LinuxParameters& p,
                             Problems& problems) {
  std::string prefix = label + ".linuxParameters";
  auto checkCapabilities = [&](const std::vector<std::string>& names, std::string_view field) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (!canonicalCapabilityName(names[i])) {
        problems.add("{}.capabilities.{}[{}]: unknown capability \"{}\"", prefix, field, i,
                     clip(names[i]));
      }
    }
  };
  checkCapabilities(p.capabilities_add, "add");
  checkCapabilities(p.capabilities_drop, "drop");
  for (size_t i = 0; i < p.devices.size(); ++i) {
    const Device& device = p.devices[i];
    std::string field = fmt::format("{}.devices[{}]", prefix, i);
    if (auto problem = hostPathProblem(device.host_path)) {
      problems.add("{}.hostPath: \"{}\" {}", field, clip(device.host_path), *problem);
    }
    if (!device.container_path.empty()) {
      if (auto problem = mountTargetProblem(device.container_path)) {
        problems.add("{}.containerPath: \"{}\" {}", field, clip(device.container_path), *problem);
      }
    }
    for (size_t j = 0; j < device.permissions.size(); ++j) {
      const auto& permission = device.permissions[j];
      if (permission != "read" && permission != "write" && permission != "mknod") {
        problems.add("{}.permissions[{}]: \"{}\" is not one of read, write, mknod", field, j,
                     clip(permission));
      }
    }
  }
  for (size_t i = 0; i < p.tmpfs.size(); ++i) {
    const Tmpfs& tmpfs = p.tmpfs[i];
    std::string field = fmt::format("{}.tmpfs[{}]", prefix, i);
    if (auto problem = mountTargetProblem(tmpfs.container_path)) {
      problems.add("{}.containerPath: \"{}\" {}", field, clip(tmpfs.container_path), *problem);
    }
    if (tmpfs.size_mib <= 0)
      problems.add("{}.size: {} MiB must be positive", field, tmpfs.size_mib);
    for (size_t j = 0; j < tmpfs.mount_options.size(); ++j) {
      const std::string& option = tmpfs.mount_options[j];
      if (!oneOf(std::string_view(option).substr(0, option.find('=')), kTmpfsOptions)) {
        problems.add("{}.mountOptions[{}]: unknown mount option \"{}\"", field, j, clip(option));
      }
    }
  }
  if (p.shared_memory_size_mib && *p.shared_memory_size_mib <= 0) {
    problems.add("{}.sharedMemorySize: {} MiB must be positive", prefix, *p.shared_memory_size_mib);
  }
  if (p.max_swap_mib && *p.max_swap_mib < 0) {
    problems.add("{}.maxSwap: {} MiB must not be negative", prefix, *p.max_swap_mib);
  }
  if (p.swappiness && (*p.swappiness < 0 || *p.swappiness > 100)) {
    problems.add("{}.swappiness: {} is outside 0..100", prefix, *p.swappiness);
  }
}

void validateHealthCheck(const std::string& label, const HealthCheck& h, Problems& problems) {
  std::string prefix = label + ".healthCheck";
  if (h.command.empty()) {
    problems.add("{}.command: required", prefix);
  } else if (h.command[0] != "CMD" && h.command[0] != "CMD-SHELL" && h.command[0] != "NONE") {
    problems.add("{}.command[0]: \"{}\" must be CMD, CMD-SHELL or NONE", prefix,
                 clip(h.command[0]));
  } else if (h.command[0] != "NONE" && h.command.size() < 2) {
    problems.add("{}.command: {} needs a command after it", prefix, clip(h.command[0]));
  }
  auto range = [&](std::string_view field, int value, int low, int high) {
    if (value < low || value > high) {
      problems.add("{}.{}: {} is outside {}..{}", prefix, field, value, low, high);
    }
  };
  range("interval", h.interval_seconds, 5, 300);
  range("timeout", h.timeout_seconds, 2, 60);
  range("retries", h.retries, 1, 10);
  range("startPeriod", h.start_period_seconds, 0, 300);
}

// links, volumesFrom and dependsOn: each names a container of this task, other than itself.
void validateReferences(const TaskView& view, const ContainerDefinition& c,
                        const std::string& label, Problems& problems) {
  const TaskDefinition& d = view.definition;
  for (size_t i = 0; i < c.links.size(); ++i) {
    std::string target = c.links[i].substr(0, c.links[i].find(':'));
    if (d.network_mode != "bridge") {
      problems.add("{}.links[{}]: links need networkMode \"bridge\"", label, i);
    }
    if (!view.containers.contains(target)) {
      problems.add("{}.links[{}]: unknown container \"{}\"", label, i, clip(target));
    } else if (target == c.name) {
      problems.add("{}.links[{}]: a container cannot link to itself", label, i);
    }
  }
  for (size_t i = 0; i < c.volumes_from.size(); ++i) {
    const std::string& source = c.volumes_from[i].source_container;
    if (source.empty()) {
      problems.add("{}.volumesFrom[{}].sourceContainer: required", label, i);
    } else if (!view.containers.contains(source)) {
      problems.add("{}.volumesFrom[{}].sourceContainer: unknown container \"{}\"", label, i,
                   clip(source));
    } else if (source == c.name) {
      problems.add("{}.volumesFrom[{}].sourceContainer: a container cannot mount its own volumes",
                   label, i);
    }
  }

  for (size_t i = 0; i < c.depends_on.size(); ++i) {
    const ContainerDependency& dependency = c.depends_on[i];
    std::string field = fmt::format("{}.dependsOn[{}]", label, i);
    auto target = view.containers.find(dependency.container_name);
    if (dependency.container_name.empty()) {
      problems.add("{}.containerName: required", field);
    } else if (target == view.containers.end()) {
      problems.add("{}.containerName: unknown container \"{}\"", field,
                   clip(dependency.container_name));
    } else if (dependency.container_name == c.name) {
      problems.add("{}.containerName: a container cannot depend on itself", field);
    } else {
      const ContainerDefinition& other = d.container_definitions[target->second];
      using Condition = ContainerDependency::Condition;
      if (dependency.condition == Condition::kHealthy &&
          (!other.health_check ||
           (!other.health_check->command.empty() && other.health_check->command[0] == "NONE"))) {
        problems.add("{}.condition: HEALTHY needs a healthCheck on \"{}\"", field,
                     clip(other.name));
      }
      if ((dependency.condition == Condition::kComplete ||
           dependency.condition == Condition::kSuccess) &&
          other.essential) {
        problems.add(
            "{}.condition: {} cannot be used on essential container \"{}\" (the task "
            "stops when it exits)",
            field, conditionName(dependency.condition), clip(other.name));
      }
    }
  }
}

// mountPoints and tmpfs: known volumes, targets the runtime can mount, each mounted once.
void validateMounts(const TaskView& view, const ContainerDefinition& c, const std::string& label,
                    Problems& problems) {
  std::set<std::string> container_paths;
  for (size_t i = 0; i < c.mount_points.size(); ++i) {
    const MountPoint& mount = c.mount_points[i];
    std::string field = fmt::format("{}.mountPoints[{}]", label, i);
    if (mount.source_volume.empty()) {
      problems.add("{}.sourceVolume: required", field);
    } else if (!view.volumes.contains(mount.source_volume)) {
      problems.add("{}.sourceVolume: unknown volume \"{}\"", field, clip(mount.source_volume));
    }
    if (auto problem = mountTargetProblem(mount.container_path)) {
      problems.add("{}.containerPath: \"{}\" {}", field, clip(mount.container_path), *problem);
    } else if (!container_paths.insert(normalizedPath(mount.container_path)).second) {
      problems.add("{}.containerPath: \"{}\" is mounted twice", field, clip(mount.container_path));
    }
  }
  if (c.linux_parameters) {
    validateLinuxParameters(label, *c.linux_parameters, problems);
    for (size_t i = 0; i < c.linux_parameters->tmpfs.size(); ++i) {
      const std::string& path = c.linux_parameters->tmpfs[i].container_path;
      if (!mountTargetProblem(path) && !container_paths.insert(normalizedPath(path)).second) {
        problems.add("{}.linuxParameters.tmpfs[{}].containerPath: \"{}\" is mounted twice", label,
                     i, clip(path));
      }
    }
  }
}

void validateEnvironment(const ContainerDefinition& c, const std::string& label,
                         Problems& problems) {
  for (size_t i = 0; i < c.environment.size(); ++i) {
    const std::string& name = c.environment[i].name;
    if (name.empty()) {
      problems.add("{}.environment[{}].name: required", label, i);
    } else if (name.find('=') != std::string::npos) {
      problems.add("{}.environment[{}].name: \"{}\" must not contain '='", label, i, clip(name));
    } else if (hasControlCharacter(name)) {
      problems.add("{}.environment[{}].name: \"{}\" must not contain control characters", label, i,
                   clip(name));
    }
  }
  for (size_t i = 0; i < c.environment_files.size(); ++i) {
    const EnvironmentFile& file = c.environment_files[i];
    if (file.value.empty()) problems.add("{}.environmentFiles[{}].value: required", label, i);
    if (file.type != "s3") {
      problems.add("{}.environmentFiles[{}].type: \"{}\" is not \"s3\"", label, i, clip(file.type));
    }
  }
  for (size_t i = 0; i < c.secrets.size(); ++i) {
    const std::string& name = c.secrets[i].name;
    if (name.empty()) {
      problems.add("{}.secrets[{}].name: required", label, i);
    } else if (hasControlCharacter(name) || name.find('=') != std::string::npos) {
      problems.add("{}.secrets[{}].name: \"{}\" must not contain '=' or control characters", label,
                   i, clip(name));
    }
    if (c.secrets[i].value_from.empty()) {
      problems.add("{}.secrets[{}].valueFrom: required", label, i);
    }
  }
}

// awsvpc leaves hostname and DNS to the task ENI; addresses must parse.
void validateNetworkSettings(const TaskDefinition& d, const ContainerDefinition& c,
                             const std::string& label, Problems& problems) {
  if (d.network_mode == "awsvpc") {
    if (!c.hostname.empty()) {
      problems.add("{}.hostname: not allowed with networkMode awsvpc", label);
    }
    if (!c.dns_servers.empty()) {
      problems.add("{}.dnsServers: not allowed with networkMode awsvpc", label);
    }
    if (!c.dns_search_domains.empty()) {
      problems.add("{}.dnsSearchDomains: not allowed with networkMode awsvpc", label);
    }
    if (!c.extra_hosts.empty()) {
      problems.add("{}.extraHosts: not allowed with networkMode awsvpc", label);
    }
  }
  if (!c.hostname.empty()) {
    if (auto problem = hostnameProblem(c.hostname)) {
      problems.add("{}.hostname: \"{}\" {}", label, clip(c.hostname), *problem);
    }
  }
  for (size_t i = 0; i < c.dns_search_domains.size(); ++i) {
    if (auto problem = hostnameProblem(c.dns_search_domains[i])) {
      problems.add("{}.dnsSearchDomains[{}]: \"{}\" {}", label, i, clip(c.dns_search_domains[i]),
                   *problem);
    }
  }
  for (size_t i = 0; i < c.dns_servers.size(); ++i) {
    if (!isIpAddress(c.dns_servers[i])) {
      problems.add("{}.dnsServers[{}]: \"{}\" is not an IP address", label, i,
                   clip(c.dns_servers[i]));
    }
  }
  for (size_t i = 0; i < c.extra_hosts.size(); ++i) {
    const HostEntry& entry = c.extra_hosts[i];
    if (entry.hostname.empty()) {
      problems.add("{}.extraHosts[{}].hostname: required", label, i);
    } else if (auto problem = hostnameProblem(entry.hostname)) {
      problems.add("{}.extraHosts[{}].hostname: \"{}\" {}", label, i, clip(entry.hostname),
                   *problem);
    }
    if (!isIpAddress(entry.ip_address)) {
      problems.add("{}.extraHosts[{}].ipAddress: \"{}\" is not an IP address", label, i,
                   clip(entry.ip_address));
    }
  }
}

void validateSecurityAndLimits(const ContainerDefinition& c, const std::string& label,
                               Problems& problems) {
  for (size_t i = 0; i < c.docker_security_options.size(); ++i) {
    if (auto problem = securityOptionProblem(c.docker_security_options[i])) {
      problems.add("{}.dockerSecurityOptions[{}]: {}", label, i, *problem);
    }
  }
  for (const auto& [key, value] : c.docker_labels) {
    if (key.empty()) problems.add("{}.dockerLabels: a label name must not be empty", label);
    if (hasLineBreak(key)) {
      problems.add("{}.dockerLabels: label name \"{}\" must not contain a line break", label,
                   clip(key));
    } else if (hasLineBreak(value)) {
      problems.add("{}.dockerLabels.{}: the value must not contain a line break", label, clip(key));
    }
  }
  for (size_t i = 0; i < c.ulimits.size(); ++i) {
    const Ulimit& ulimit = c.ulimits[i];
    std::string field = fmt::format("{}.ulimits[{}]", label, i);
    if (!oneOf(ulimit.name, kUlimitNames)) {
      problems.add(
          "{}.name: unknown ulimit \"{}\" (expected one of core, cpu, data, fsize, locks, "
          "memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)",
          field, clip(ulimit.name));
    }
    if (ulimit.soft_limit < 0)
      problems.add("{}.softLimit: {} is negative", field, ulimit.soft_limit);
    if (ulimit.hard_limit < 0)
      problems.add("{}.hardLimit: {} is negative", field, ulimit.hard_limit);
    if (ulimit.soft_limit > ulimit.hard_limit) {
      problems.add("{}.softLimit: {} is more than hardLimit {}", field, ulimit.soft_limit,
                   ulimit.hard_limit);
    }
  }
}

// Only namespaced sysctls, and never in a namespace shared with the host.
void validateSystemControls(const TaskDefinition& d, const ContainerDefinition& c,
                            const std::string& label, Problems& problems) {
  for (size_t i = 0; i < c.system_controls.size(); ++i) {
    const KeyValuePair& control = c.system_controls[i];
    std::string field = fmt::format("{}.systemControls[{}]", label, i);
    if (control.name.empty()) {
      problems.add("{}.namespace: required", field);
      continue;
    }
    switch (sysctlNamespace(control.name)) {
      case SysctlNamespace::kNone:
        problems.add(
            "{}.namespace: \"{}\" is not a namespaced sysctl (allowed: kernel.msg*, "
            "kernel.sem, kernel.shm*, fs.mqueue.*, net.*)",
            field, clip(control.name));
        break;
      case SysctlNamespace::kNetwork:
        if (d.network_mode == "host") {
          problems.add(
              "{}.namespace: \"{}\" cannot be set with networkMode host (it would change "
              "the host)",
              field, clip(control.name));
        }
        break;
      case SysctlNamespace::kIpc:
        if (d.ipc_mode == "host") {
          problems.add(
              "{}.namespace: \"{}\" cannot be set with ipcMode host (it would change the "
              "host)",
              field, clip(control.name));
        }
        break;
    }
    if (control.value.empty()) problems.add("{}.value: required", field);
  }
}

void validateProcessSettings(const ContainerDefinition& c, const std::string& label,
                             Problems& problems) {
  if (c.image.empty()) {
    problems.add("{}.image: required", label);
  } else if (auto reference = images::ImageReference::parse(c.image); !reference) {
    // The reference's message quotes the whole image.
    if (c.image.size() > text::kMaxQuoted || hasControlCharacter(c.image)) {
      problems.add("{}.image: \"{}\" ({} characters) is not a valid image reference", label,
                   clip(c.image), c.image.size());
    } else {
      problems.add("{}.image: {}", label, reference.error().message);
    }
  }

  if (c.start_timeout_seconds &&
      (*c.start_timeout_seconds < 0 || *c.start_timeout_seconds > kMaxTimeoutSeconds)) {
    problems.add("{}.startTimeout: {} is outside 0..{} seconds", label, *c.start_timeout_seconds,
                 kMaxTimeoutSeconds);
  }
  if (c.stop_timeout_seconds &&
      (*c.stop_timeout_seconds < 0 || *c.stop_timeout_seconds > kMaxTimeoutSeconds)) {
    problems.add("{}.stopTimeout: {} is outside 0..{} seconds", label, *c.stop_timeout_seconds,
                 kMaxTimeoutSeconds);
  }
  if (!c.working_directory.empty() && !isAbsolutePath(c.working_directory)) {
    problems.add("{}.workingDirectory: \"{}\" must be an absolute path", label,
                 clip(c.working_directory));
  }
  if (c.log_configuration) {
    const LogConfiguration& log = *c.log_configuration;
    if (log.log_driver.empty()) {
      problems.add("{}.logConfiguration.logDriver: required", label);
    } else if (!oneOf(log.log_driver, kLogDrivers)) {
      problems.add(
          "{}.logConfiguration.logDriver: \"{}\" is not one of json-file, syslog, "
          "journald, gelf, fluentd, awslogs, splunk, awsfirelens",
          label, clip(log.log_driver));
    }
  }
  if (c.health_check) validateHealthCheck(label, *c.health_check, problems);
  if (c.restart_policy) {
    const RestartPolicy& policy = *c.restart_policy;
    if (policy.ignored_exit_codes.size() > kMaxIgnoredExitCodes) {
      problems.add("{}.restartPolicy.ignoredExitCodes: {} entries is more than the limit of {}",
                   label, policy.ignored_exit_codes.size(), kMaxIgnoredExitCodes);
    }
    if (policy.restart_attempt_period_seconds < 60 ||
        policy.restart_attempt_period_seconds > 1800) {
      problems.add("{}.restartPolicy.restartAttemptPeriod: {} is outside 60..1800 seconds", label,
                   policy.restart_attempt_period_seconds);
    }
  }
}

void validateContainer(const TaskView& view, size_t index, Problems& problems) {
  const TaskDefinition& d = view.definition;
  const ContainerDefinition& c = d.container_definitions[index];
  std::string label = containerLabel(c, index);
  validateProcessSettings(c, label, problems);
  validateReferences(view, c, label, problems);
  validateMounts(view, c, label, problems);
  validateEnvironment(c, label, problems);
  validateNetworkSettings(d, c, label, problems);
  validateSecurityAndLimits(c, label, problems);
  validateSystemControls(d, c, label, problems);
}

// How one container reaches the next in the dependency graph.
enum class Via { kDependsOn, kLinks, kVolumesFrom };

// "dependsOn cycle: a -> b -> a", hops through links or volumesFrom marked as such. `cycle` starts
// and ends with the same container; each entry names the edge that reached it.
std::string describeCycle(const std::vector<ContainerDefinition>& containers,
                          const std::vector<std::pair<size_t, Via>>& cycle) {
  bool only_depends_on = std::all_of(cycle.begin() + 1, cycle.end(), [](const auto& entry) {
    return entry.second == Via::kDependsOn;
  });
  std::string text = only_depends_on ? "dependsOn cycle: " : "dependency cycle: ";
  text += clip(containers[cycle.front().first].name);
  for (size_t k = 1; k < cycle.size(); ++k) {
    switch (cycle[k].second) {
      case Via::kDependsOn:
        text += " -> ";
        break;
      case Via::kLinks:
        text += " -(links)-> ";
        break;
      case Via::kVolumesFrom:
        text += " -(volumesFrom)-> ";
        break;
    }
    text += clip(containers[cycle[k].first].name);
  }
  return text;
}

// Cycles through dependsOn, links (implicit START) and volumesFrom (implicit CREATE): each is
// reported once, as the path that closes it: "dependsOn cycle: a -> b -> a".
void validateDependencyGraph(const TaskView& view, Problems& problems) {
  const auto& containers = view.definition.container_definitions;
  struct Edge {
    size_t to;
    Via via;
  };
  std::vector<std::vector<Edge>> edges(containers.size());
  for (size_t i = 0; i < containers.size(); ++i) {
    auto add = [&](const std::string& name, Via via) {
      auto target = view.containers.find(name);
      if (target != view.containers.end() && target->second != i) {
        edges[i].push_back({target->second, via});
      }
    };
    // Only the first container of a duplicated name takes part; the duplicate is reported.
    auto self = view.containers.find(containers[i].name);
    if (self == view.containers.end() || self->second != i) continue;
    for (const auto& dependency : containers[i].depends_on) {
      add(dependency.container_name, Via::kDependsOn);
    }
    for (const auto& link : containers[i].links) add(link.substr(0, link.find(':')), Via::kLinks);
    for (const auto& from : containers[i].volumes_from) {
      add(from.source_container, Via::kVolumesFrom);
    }
  }

  enum class Color { kWhite, kGray, kBlack };
  std::vector<Color> color(containers.size(), Color::kWhite);
  std::vector<std::pair<size_t, Via>> stack;  // path of (container, edge used to reach it)
  std::set<std::set<size_t>> reported;

  // Iterative DFS, so a long chain cannot overflow the stack.
  for (size_t root = 0; root < containers.size(); ++root) {
    if (color[root] != Color::kWhite) continue;
    std::vector<std::pair<size_t, size_t>> frames{{root, 0}};  // (node, next edge)
    color[root] = Color::kGray;
    stack.push_back({root, Via::kDependsOn});
    while (!frames.empty()) {
      auto& [node, next] = frames.back();
      if (next == edges[node].size()) {
        color[node] = Color::kBlack;
        frames.pop_back();
        stack.pop_back();
        continue;
      }
      Edge edge = edges[node][next++];
      if (color[edge.to] == Color::kWhite) {
        color[edge.to] = Color::kGray;
        frames.push_back({edge.to, 0});
        stack.push_back({edge.to, edge.via});
      } else if (color[edge.to] == Color::kGray) {
        auto start = std::find_if(stack.begin(), stack.end(),
                                  [&](const auto& entry) { return entry.first == edge.to; });
        std::vector<std::pair<size_t, Via>> cycle(start, stack.end());
        cycle.push_back({edge.to, edge.via});
        std::set<size_t> members;
        for (const auto& entry : cycle) members.insert(entry.first);
        if (!reported.insert(members).second) continue;
        problems.add(describeCycle(containers, cycle));
      }
    }
  }
}

}  // namespace

std::vector<std::string> validateTaskDefinition(const TaskDefinition& definition) {
  Problems problems;
  TaskView view{definition, {}, {}};
  validateTask(definition, problems);
  validateNames(definition, view, problems);
  validateVolumes(definition, view, problems);
  validateMemoryAndCpu(definition, problems);
  validatePorts(view, problems);
  for (size_t i = 0; i < definition.container_definitions.size(); ++i) {
    validateContainer(view, i, problems);
  }
  validateDependencyGraph(view, problems);
  return problems.take();
}

}  // namespace ecs::engine
