#include "agent/acs/acs_task.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "agent/common/json_reader.h"
#include "agent/common/text.h"
#include "agent/engine/task_definition_json.h"

namespace ecs::acs {
namespace {

using engine::ContainerDefinition;
using engine::KeyValuePair;
using engine::LinuxParameters;
using engine::TaskDefinition;
using engine::Volume;
using text::clip;

constexpr int64_t kMiB = 1024 * 1024;
constexpr int64_t kNanosecondsPerSecond = 1'000'000'000;

// ---------------------------------------------------------------------------------------------
// Small readers for the Docker Engine API's conventions.

// Byte counts (Memory, ShmSize, ...) as whole MiB, rounded up so a limit never shrinks.
std::optional<int> bytesToMib(json::Reader& reader, const std::string& path, int64_t bytes) {
  if (bytes < 0) {
    reader.error(path, fmt::format("{} bytes must not be negative", bytes));
    return std::nullopt;
  }
  int64_t mib = bytes / kMiB + (bytes % kMiB != 0 ? 1 : 0);
  if (mib > std::numeric_limits<int>::max()) {
    reader.error(path, fmt::format("{} bytes is out of range", bytes));
    return std::nullopt;
  }
  return static_cast<int>(mib);
}

// A byte-count member: absent or 0 (Docker's "unset") leaves `out` as it is.
void readMib(const json::Fields& f, std::string_view key, std::optional<int>& out) {
  int64_t bytes = 0;
  f.read(key, bytes);
  if (bytes == 0) return;
  if (auto mib = bytesToMib(f.reader(), f.path(key), bytes)) out = *mib;
}

// A duration member in nanoseconds as whole seconds (rounded up); absent or 0 (Docker's "use
// the default") leaves `out` as it is.
void readSeconds(const json::Fields& f, std::string_view key, int& out) {
  int64_t nanoseconds = 0;
  f.read(key, nanoseconds);
  if (nanoseconds == 0) return;
  if (nanoseconds < 0) {
    f.reader().error(f.path(key), fmt::format("{} ns must not be negative", nanoseconds));
    return;
  }
  int64_t seconds =
      nanoseconds / kNanosecondsPerSecond + (nanoseconds % kNanosecondsPerSecond != 0 ? 1 : 0);
  out = static_cast<int>(std::min<int64_t>(seconds, std::numeric_limits<int>::max()));
}

// Docker's StrSlice (Cmd, Entrypoint): an array of strings, or one string.
void readStrSlice(const json::Fields& f, std::string_view key, std::vector<std::string>& out) {
  const json::Value* value = f.find(key);
  if (!value) return;
  if (value->is_string()) {
    out = {std::string(value->get_string())};
  } else {
    json::readValue(f.reader(), *value, f.path(key), out);
  }
}

// A JSON object's string members in document order ({"A": "1"} -> {A, 1}), for maps the engine
// keeps as name/value lists.
void readStringMap(const json::Fields& f, std::string_view key, std::vector<KeyValuePair>& out) {
  const json::Value* value = f.find(key);
  if (!value) return;
  json::readObject(f.reader(), *value, f.path(key), [&](const json::Fields& members) {
    for (const auto& member : value->get_object()) {
      KeyValuePair pair{std::string(member.key()), {}};
      if (json::readString(members.reader(), member.value(), members.path(member.key()),
                           pair.value)) {
        out.push_back(std::move(pair));
      }
    }
  });
}

// Sets `name` to `value`, replacing an earlier entry of that name.
void setVariable(std::vector<KeyValuePair>& variables, std::string name, std::string value) {
  auto existing = std::find_if(variables.begin(), variables.end(),
                               [&](const KeyValuePair& v) { return v.name == name; });
  if (existing != variables.end()) {
    existing->value = std::move(value);
  } else {
    variables.push_back({std::move(name), std::move(value)});
  }
}

// Adds the names not already present.
void addAll(std::vector<std::string>& to, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (std::find(to.begin(), to.end(), name) == to.end()) to.push_back(name);
  }
}

LinuxParameters& linuxParameters(ContainerDefinition& c) {
  if (!c.linux_parameters) c.linux_parameters.emplace();
  return *c.linux_parameters;
}

// A member holding a JSON document as a string (dockerConfig.config, overrides): the parsed
// object handed to `fill`, with paths continuing from the member's. Empty strings are absent.
// The document's text is never quoted: it may hold environment values.
template <typename Fill>
void readEmbeddedObject(const json::Fields& f, std::string_view key, Fill&& fill) {
  const json::Value* value = f.find(key);
  if (!value) return;
  std::string text;
  if (!json::readString(f.reader(), *value, f.path(key), text) || text.empty()) return;
  auto document = json::parse(text, json::Excerpt::kHide);
  if (!document) {
    f.reader().error(f.path(key), document.error().message);
    return;
  }
  if (document->is_null()) return;
  json::refuseNul(f.reader(), *document, f.path(key));
  if (!document->is_object()) {
    f.reader().error(f.path(key),
                     fmt::format("expected a JSON object, got {}", json::describe(*document)));
    return;
  }
  json::readObject(f.reader(), *document, f.path(key), fill);
}

// ---------------------------------------------------------------------------------------------
// dockerConfig.config: Docker's container.Config.

bool readDockerHealthcheck(json::Reader& reader, const json::Value& value, const std::string& path,
                           std::optional<engine::HealthCheck>& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    engine::HealthCheck check;
    f.read("Test", check.command);
    readSeconds(f, "Interval", check.interval_seconds);
    readSeconds(f, "Timeout", check.timeout_seconds);
    readSeconds(f, "StartPeriod", check.start_period_seconds);
    int retries = 0;
    f.read("Retries", retries);
    if (retries != 0) check.retries = retries;
    // An empty Test inherits the image's check, which a task definition cannot express.
    if (!check.command.empty()) out = std::move(check);
  });
}

void readDockerConfig(const json::Fields& f, ContainerDefinition& c) {
  f.read("Hostname", c.hostname);
  f.read("User", c.user);
  f.read("WorkingDir", c.working_directory);
  f.read("Tty", c.pseudo_terminal);
  f.read("OpenStdin", c.interactive);
  f.read("NetworkDisabled", c.disable_networking);
  readStrSlice(f, "Cmd", c.command);
  readStrSlice(f, "Entrypoint", c.entry_point);
  std::map<std::string, std::string> labels;
  f.read("Labels", labels);
  for (auto& [name, value] : labels) c.docker_labels[name] = std::move(value);
  std::vector<std::string> env;
  f.read("Env", env);
  for (size_t i = 0; i < env.size(); ++i) {
    size_t equals = env[i].find('=');
    if (equals == std::string::npos || equals == 0) {
      f.reader().error(json::indexPath(f.path("Env"), i), "expected NAME=value");
      continue;
    }
    setVariable(c.environment, env[i].substr(0, equals), env[i].substr(equals + 1));
  }
  f.read("Healthcheck", c.health_check, readDockerHealthcheck);
}

// ---------------------------------------------------------------------------------------------
// dockerConfig.hostConfig: Docker's container.HostConfig.

bool readDockerUlimit(json::Reader& reader, const json::Value& value, const std::string& path,
                      engine::Ulimit& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.require("Name", out.name);
    f.require("Soft", out.soft_limit);
    f.require("Hard", out.hard_limit);
  });
}

// {"PathOnHost", "PathInContainer", "CgroupPermissions": "rwm"}.
bool readDockerDevice(json::Reader& reader, const json::Value& value, const std::string& path,
                      engine::Device& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.require("PathOnHost", out.host_path);
    f.read("PathInContainer", out.container_path);
    std::string permissions;
    f.read("CgroupPermissions", permissions);
    for (char letter : permissions) {
      switch (letter) {
        case 'r':
          out.permissions.push_back("read");
          break;
        case 'w':
          out.permissions.push_back("write");
          break;
        case 'm':
          out.permissions.push_back("mknod");
          break;
        default:
          f.reader().error(
              f.path("CgroupPermissions"),
              fmt::format("\"{}\" is not a combination of r, w and m", clip(permissions)));
          return;
      }
    }
  });
}

// "size=64m" and friends: bytes with an optional k/m/g suffix, as Docker's tmpfs options take.
std::optional<int64_t> parseByteSize(std::string_view size) {
  int64_t scale = 1;
  if (!size.empty()) {
    switch (text::toLower(size.back())) {
      case 'k':
        scale = 1024;
        break;
      case 'm':
        scale = kMiB;
        break;
      case 'g':
        scale = 1024 * kMiB;
        break;
      default:
        break;
    }
    if (scale != 1) size.remove_suffix(1);
  }
  if (size.empty() || size.size() > 18 || !std::all_of(size.begin(), size.end(), text::isDigit)) {
    return std::nullopt;
  }
  int64_t number = std::stoll(std::string(size));
  if (number > std::numeric_limits<int64_t>::max() / scale) return std::nullopt;
  return number * scale;
}

// Tmpfs: {"/run": "rw,noexec,size=64m"}.
void readDockerTmpfs(const json::Fields& f, ContainerDefinition& c) {
  const json::Value* value = f.find("Tmpfs");
  if (!value) return;
  json::readObject(f.reader(), *value, f.path("Tmpfs"), [&](const json::Fields& entries) {
    for (const auto& member : value->get_object()) {
      std::string path = entries.path(member.key());
      std::string options;
      if (!json::readString(entries.reader(), member.value(), path, options)) continue;
      engine::Tmpfs tmpfs;
      tmpfs.container_path = std::string(member.key());
      std::string_view rest = options;
      while (!rest.empty()) {
        size_t comma = rest.find(',');
        std::string_view option = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
        if (option.empty()) continue;
        if (!option.starts_with("size=")) {
          tmpfs.mount_options.emplace_back(option);
          continue;
        }
        auto bytes = parseByteSize(option.substr(5));
        if (!bytes) {
          entries.reader().error(path,
                                 fmt::format("\"{}\" is not a size like size=64m", clip(option)));
        } else if (auto mib = bytesToMib(entries.reader(), path, *bytes)) {
          tmpfs.size_mib = *mib;
        }
      }
      linuxParameters(c).tmpfs.push_back(std::move(tmpfs));
    }
  });
}

// ExtraHosts: ["db:10.0.0.10"] (the address may be IPv6, so split at the first ':').
void readDockerExtraHosts(const json::Fields& f, ContainerDefinition& c) {
  std::vector<std::string> hosts;
  f.read("ExtraHosts", hosts);
  for (size_t i = 0; i < hosts.size(); ++i) {
    size_t colon = hosts[i].find(':');
    if (colon == std::string::npos) {
      f.reader().error(json::indexPath(f.path("ExtraHosts"), i),
                       fmt::format("\"{}\" is not hostname:address", clip(hosts[i])));
      continue;
    }
    c.extra_hosts.push_back({hosts[i].substr(0, colon), hosts[i].substr(colon + 1)});
  }
}

// MemorySwap is Docker's memory + swap total (-1: unlimited, as the host allows); ECS's maxSwap
// is the swap alone.
void readDockerSwap(const json::Fields& f, ContainerDefinition& c) {
  int64_t total = 0;
  f.read("MemorySwap", total);
  if (total > 0) {
    if (!c.memory_mib) {
      f.reader().error(f.path("MemorySwap"), "needs a memory limit (Memory or the memory field)");
    } else if (total < *c.memory_mib * kMiB) {
      f.reader().error(f.path("MemorySwap"),
                       fmt::format("{} bytes is below the memory limit", total));
    } else if (auto swap =
                   bytesToMib(f.reader(), f.path("MemorySwap"), total - *c.memory_mib * kMiB)) {
      linuxParameters(c).max_swap_mib = *swap;
    }
  }
  std::optional<int> swappiness;
  f.read("MemorySwappiness", swappiness);
  if (swappiness && *swappiness != -1) linuxParameters(c).swappiness = *swappiness;
}

void readDockerHostConfig(const json::Fields& f, ContainerDefinition& c) {
  if (const json::Value* log = f.find("LogConfig")) {
    json::readObject(f.reader(), *log, f.path("LogConfig"), [&](const json::Fields& l) {
      engine::LogConfiguration configuration;
      l.read("Type", configuration.log_driver);
      l.read("Config", configuration.options);
      if (configuration.log_driver.empty() && configuration.options.empty()) return;
      c.log_configuration = std::move(configuration);
    });
  }
  f.read("Ulimits", c.ulimits, readDockerUlimit);
  readMib(f, "Memory", c.memory_mib);
  readMib(f, "MemoryReservation", c.memory_reservation_mib);
  readDockerSwap(f, c);
  f.read("Privileged", c.privileged);
  f.read("ReadonlyRootfs", c.readonly_root_filesystem);
  f.read("Dns", c.dns_servers);
  f.read("DnsSearch", c.dns_search_domains);
  readDockerExtraHosts(f, c);
  f.read("SecurityOpt", c.docker_security_options);
  readStringMap(f, "Sysctls", c.system_controls);

  std::vector<std::string> capabilities;
  f.read("CapAdd", capabilities);
  if (!capabilities.empty()) addAll(linuxParameters(c).capabilities_add, capabilities);
  capabilities.clear();
  f.read("CapDrop", capabilities);
  if (!capabilities.empty()) addAll(linuxParameters(c).capabilities_drop, capabilities);
  std::vector<engine::Device> devices;
  f.read("Devices", devices, readDockerDevice);
  for (auto& device : devices) linuxParameters(c).devices.push_back(std::move(device));
  if (const json::Value* init = f.find("Init")) {
    json::readBool(f.reader(), *init, f.path("Init"), linuxParameters(c).init_process_enabled);
  }
  std::optional<int> shm;
  readMib(f, "ShmSize", shm);
  if (shm) linuxParameters(c).shared_memory_size_mib = shm;
  readDockerTmpfs(f, c);

  // GPUs and other runtimes: ECS asks for them through resourceRequirements, which this agent
  // cannot honour either.
  std::string runtime;
  f.read("Runtime", runtime);
  if (!runtime.empty() && runtime != "runc") f.reader().unsupported(f.path("Runtime"));
  f.unsupported("DeviceRequests");
}

// ---------------------------------------------------------------------------------------------
// Containers.

// A secret for an environment variable (target CONTAINER) or for the log driver (LOG_DRIVER).
struct AcsSecret {
  engine::Secret secret;
  bool for_log_driver = false;
};

bool readAcsSecret(json::Reader& reader, const json::Value& value, const std::string& path,
                   AcsSecret& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.secret.name);
    f.read("valueFrom", out.secret.value_from);
    std::string type;
    f.read("type", type);
    if (!type.empty() && type != "ENVIRONMENT_VARIABLE") {
      // MOUNT_POINT and BOOTSTRAP secrets are written into the container's filesystem.
      f.reader().unsupported(f.path("type"));
    }
    std::string target;
    f.read("target", target);
    if (target == "LOG_DRIVER") {
      out.for_log_driver = true;
    } else if (!target.empty() && target != "CONTAINER") {
      f.reader().error(
          f.path("target"),
          fmt::format("unknown target \"{}\" (expected CONTAINER or LOG_DRIVER)", clip(target)));
    }
  });
}

void readSecrets(const json::Fields& f, ContainerDefinition& c) {
  std::vector<AcsSecret> secrets;
  f.read("secrets", secrets, readAcsSecret);
  for (auto& entry : secrets) {
    if (!entry.for_log_driver) {
      c.secrets.push_back(std::move(entry.secret));
      continue;
    }
    if (!c.log_configuration) c.log_configuration.emplace();
    c.log_configuration->secret_options.push_back(std::move(entry.secret));
  }
}

// registryAuthentication: "asm" names the Secrets Manager secret holding registry credentials;
// "ecr" needs nothing here (ECR images are pulled with the task's execution role).
void readRegistryAuthentication(const json::Fields& f, ContainerDefinition& c) {
  f.object("registryAuthentication", [&](const json::Fields& auth) {
    std::string type;
    auth.read("type", type);
    if (type == "asm") {
      auth.object("asmAuthData", [&](const json::Fields& asm_data) {
        asm_data.read("credentialsParameter", c.repository_credentials_parameter);
      });
    } else if (!type.empty() && type != "ecr") {
      auth.reader().error(auth.path("type"), fmt::format("unknown type \"{}\" (expected ecr or "
                                                         "asm)",
                                                         clip(type)));
    }
  });
}

// overrides: {"command": [...]}, or that object as a JSON string. Only command is honoured.
void readOverrides(const json::Fields& f, ContainerDefinition& c) {
  auto apply = [&](const json::Fields& overrides) {
    std::optional<std::vector<std::string>> command;
    overrides.read("command", command);
    if (command) c.command = std::move(*command);
  };
  const json::Value* value = f.find("overrides");
  if (!value) return;
  if (value->is_object()) {
    json::readObject(f.reader(), *value, f.path("overrides"), apply);
  } else if (value->is_string()) {
    readEmbeddedObject(f, "overrides", apply);
  } else {
    f.reader().typeError(f.path("overrides"), "an object or a JSON string", *value);
  }
}

// Integers the model does not box: 0 is "not set".
void readNonZero(const json::Fields& f, std::string_view key, std::optional<int>& out) {
  int value = 0;
  f.read(key, value);
  if (value != 0) out = value;
}

bool readContainer(json::Reader& reader, const json::Value& value, const std::string& path,
                   ContainerDefinition& out) {
  // `essential` is a plain boolean on this wire: absent is false.
  out.essential = false;
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.read("image", out.image);
    f.read("command", out.command);
    f.read("entryPoint", out.entry_point);
    f.read("cpu", out.cpu);
    readNonZero(f, "memory", out.memory_mib);
    f.read("essential", out.essential);
    readStringMap(f, "environment", out.environment);
    f.read("environmentFiles", out.environment_files, engine::readEnvironmentFile);
    f.read("links", out.links);
    f.read("portMappings", out.port_mappings, engine::readPortMapping);
    f.read("mountPoints", out.mount_points, engine::readMountPoint);
    f.read("volumesFrom", out.volumes_from, engine::readVolumeFrom);
    f.read("linuxParameters", out.linux_parameters, engine::readLinuxParameters);
    f.read("privileged", out.privileged);
    f.read("dependsOn", out.depends_on, engine::readContainerDependency);
    readNonZero(f, "startTimeout", out.start_timeout_seconds);
    readNonZero(f, "stopTimeout", out.stop_timeout_seconds);
    f.read("restartPolicy", out.restart_policy, engine::readRestartPolicy);
    readRegistryAuthentication(f, out);

    // Docker's shapes go over the fields read above, as Docker's own client would apply them.
    f.object("dockerConfig", [&](const json::Fields& docker) {
      readEmbeddedObject(docker, "config",
                         [&](const json::Fields& config) { readDockerConfig(config, out); });
      readEmbeddedObject(docker, "hostConfig",
                         [&](const json::Fields& host) { readDockerHostConfig(host, out); });
    });
    readSecrets(f, out);
    readOverrides(f, out);

    std::string health_check_type;
    f.read("healthCheckType", health_check_type);
    if (health_check_type == "docker" && !out.health_check) {
      f.reader().error(f.path("healthCheckType"),
                       "\"docker\" needs a Healthcheck in dockerConfig.config");
    } else if (!health_check_type.empty() && health_check_type != "docker") {
      f.reader().error(
          f.path("healthCheckType"),
          fmt::format("unknown type \"{}\" (expected docker)", clip(health_check_type)));
    }

    f.unsupported("firelensConfiguration");
    f.unsupported("credentialSpecs");
    f.unsupported("managedAgents");  // ECS Exec
  });
}

// ---------------------------------------------------------------------------------------------
// Volumes.

bool readVolume(json::Reader& reader, const json::Value& value, const std::string& path,
                Volume& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    std::string type;
    f.read("type", type);
    if (type.empty() || type == "host") {
      out.host.emplace();
      f.read("host", out.host, engine::readHostVolume);
    } else if (type == "docker") {
      out.docker_volume_configuration.emplace();
      f.read("dockerVolumeConfiguration", out.docker_volume_configuration,
             engine::readDockerVolumeConfiguration);
    } else if (type == "efs") {
      out.efs_volume_configuration.emplace();
      f.read("efsVolumeConfiguration", out.efs_volume_configuration,
             engine::readEfsVolumeConfiguration);
    } else if (type == "fsxWindowsFileServer") {
      f.reader().unsupported(f.path("fsxWindowsFileServerVolumeConfiguration"));
    } else if (type == "ebs") {
      f.reader().unsupported(f.path("ebsVolumeConfiguration"));
    } else if (type == "logDriverOutput") {
      f.reader().unsupported(f.path("logDriverVolumeConfiguration"));
    } else if (type == "amazonebs" || type == "s3files" || type == "attachment") {
      // Volumes backed by attachments the control plane makes (EBS, S3 Files).
      f.reader().unsupported(f.path("type"));
    } else {
      f.reader().error(
          f.path("type"),
          fmt::format("unknown volume type \"{}\" (expected host, docker or efs)", clip(type)));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The task.

void readCredentials(const json::Fields& f, std::string_view key, std::string_view role_type,
                     std::optional<RoleCredentials>& out) {
  const json::Value* value = f.find(key);
  if (!value) return;
  RoleCredentials credentials;
  credentials.role_type = role_type;
  bool ok = json::readObject(f.reader(), *value, f.path(key), [&](const json::Fields& c) {
    c.read("credentialsId", credentials.credentials_id);
    c.read("roleArn", credentials.role_arn);
    c.read("accessKeyId", credentials.access_key_id);
    c.read("secretAccessKey", credentials.secret_access_key);
    c.read("sessionToken", credentials.session_token);
    c.read("expiration", credentials.expiration);
    // The id is what the task's containers and the acks name the credentials by.
    const json::Value* id = c.find("credentialsId");
    if (!id) {
      c.reader().error(c.path("credentialsId"), "required");
    } else if (id->is_string() && credentials.credentials_id.empty()) {
      c.reader().error(c.path("credentialsId"), "must not be empty");
    }
  });
  if (ok) out = std::move(credentials);
}

void readDesiredStatus(const json::Fields& f, engine::ContainerStatus& out) {
  std::string status;
  f.require("desiredStatus", status);
  if (status == "RUNNING") {
    out = engine::ContainerStatus::kRunning;
  } else if (status == "STOPPED") {
    out = engine::ContainerStatus::kStopped;
  } else if (f.find("desiredStatus") && f.find("desiredStatus")->is_string()) {
    f.reader().error(
        f.path("desiredStatus"),
        fmt::format("unknown status \"{}\" (expected RUNNING or STOPPED)", clip(status)));
  }
}

// `version` is the revision as a string ("3").
void readRevision(const json::Fields& f, int& out) {
  std::string version;
  f.read("version", version);
  if (version.empty()) return;
  bool digits = version.size() <= 9 && std::all_of(version.begin(), version.end(), text::isDigit);
  if (!digits) {
    f.reader().error(f.path("version"),
                     fmt::format("\"{}\" is not a revision number", clip(version)));
    return;
  }
  out = std::stoi(version);
}

// Task `cpu` is a number of vCPUs (0.25) where a task definition has units (256); 0 is unset.
void readTaskCpu(const json::Fields& f, std::optional<int>& out) {
  double vcpus = 0;
  f.read("cpu", vcpus);
  if (vcpus == 0) return;
  double units = std::round(vcpus * 1024);
  if (!std::isfinite(units) || units < 0 || units > std::numeric_limits<int>::max()) {
    f.reader().error(f.path("cpu"), fmt::format("{} vCPU is out of range", vcpus));
    return;
  }
  out = static_cast<int>(units);
}

void readTask(const json::Fields& f, AcsTask& task) {
  engine::TaskSpec& spec = task.spec;
  TaskDefinition& d = spec.definition;
  f.require("arn", spec.arn);
  readDesiredStatus(f, spec.desired);
  f.read("family", d.family);
  readRevision(f, d.revision);
  std::string mode;
  f.read("networkMode", mode);
  if (!mode.empty()) d.network_mode = std::move(mode);
  f.read("pidMode", d.pid_mode);
  f.read("ipcMode", d.ipc_mode);
  readTaskCpu(f, d.cpu_units);
  readNonZero(f, "memory", d.memory_mib);
  f.read("containers", d.container_definitions, readContainer);
  f.read("volumes", d.volumes, readVolume);

  readCredentials(f, "roleCredentials", kRoleTypeTaskApplication, task.role_credentials);
  readCredentials(f, "executionRoleCredentials", kRoleTypeTaskExecution,
                  task.execution_role_credentials);
  if (task.role_credentials) {
    spec.role_credentials_id = task.role_credentials->credentials_id;
    d.task_role_arn = task.role_credentials->role_arn;
  }
  if (task.execution_role_credentials) {
    spec.execution_role_credentials_id = task.execution_role_credentials->credentials_id;
    d.execution_role_arn = task.execution_role_credentials->role_arn;
  }

  f.unsupported("associations");  // GPUs, Elastic Inference
  f.unsupported("proxyConfiguration");
  f.unsupported("attachments");  // Service Connect, EBS and S3 Files volumes
  f.unsupported("enableFaultInjection");
  f.unsupported("trustedExecutionConfiguration");
}

// The validator names containers as a task definition does ("containerDefinitions[0] ...");
// this wire calls the list `containers`.
std::string inAcsTerms(std::string problem) {
  static constexpr std::string_view kDefinitionName = "containerDefinitions";
  static constexpr std::string_view kAcsName = "containers";
  for (size_t at = problem.find(kDefinitionName); at != std::string::npos;
       at = problem.find(kDefinitionName, at + kAcsName.size())) {
    problem.replace(at, kDefinitionName.size(), kAcsName);
  }
  return problem;
}

}  // namespace

Result<AcsTask> parseAcsTask(const boost::json::value& value) {
  const json::Object* object = value.if_object();
  if (!object) {
    return fail(ErrorCode::kInvalidArgument, "expected a task object, got {}",
                json::describe(value));
  }
  json::Reader reader;
  AcsTask task;
  readTask(json::Fields(reader, *object, ""), task);
  if (task.spec.desired != engine::ContainerStatus::kStopped) json::refuseNul(reader, value, "");
  if (!reader.ok()) {
    return fail(ErrorCode::kInvalidArgument, "{}", json::joinProblems(reader.errors()));
  }
  task.spec.definition.unsupported_fields = reader.unsupportedFields();
  if (task.spec.desired == engine::ContainerStatus::kStopped) return task;

  std::vector<std::string> problems = engine::validateTaskDefinition(task.spec.definition);
  if (!problems.empty()) {
    std::transform(problems.begin(), problems.end(), problems.begin(), inAcsTerms);
    return fail(ErrorCode::kInvalidArgument, "{}", json::joinProblems(problems));
  }
  return task;
}

Result<AcsTask> parseAcsTask(std::string_view json_text) {
  auto document = json::parse(json_text, json::Excerpt::kHide);
  if (!document) return fail(document.error());
  return parseAcsTask(*document);
}

std::optional<std::string> acsTaskArn(const boost::json::value& task) {
  const json::Object* object = task.if_object();
  if (!object) return std::nullopt;
  const json::Value* arn = object->if_contains("arn");
  if (!arn || !arn->is_string() || arn->get_string().empty()) return std::nullopt;
  return std::string(arn->get_string());
}

}  // namespace ecs::acs
