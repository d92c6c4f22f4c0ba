#include "agent/engine/task_definition.h"

#include <arpa/inet.h>
#include <sys/capability.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "agent/images/image_reference.h"

namespace ecs::engine {
namespace {

namespace json = boost::json;

// ---------------------------------------------------------------------------------------------
// Small text helpers (locale-independent).

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char toLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
char toUpper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), toLower);
  return out;
}

std::string uppercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), toUpper);
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return toLower(x) == toLower(y);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Joins problems with "; ", at most 50 of them, so a hostile document cannot make a huge message.
std::string joinProblems(const std::vector<std::string>& problems) {
  constexpr size_t kMaxShown = 50;
  std::string out;
  for (size_t i = 0; i < problems.size() && i < kMaxShown; ++i) {
    if (!out.empty()) out += "; ";
    out += problems[i];
  }
  if (problems.size() > kMaxShown) {
    out += fmt::format("; and {} more", problems.size() - kMaxShown);
  }
  return out;
}

// ECS names (containers, volumes, families): up to 255 letters, digits, '_' and '-'.
bool isEcsName(std::string_view name) {
  return !name.empty() && name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
    return isAlpha(c) || isDigit(c) || c == '_' || c == '-';
  });
}

bool isIpAddress(const std::string& text) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

// Parses "<digits>[.<digits>]" into value * scale, exactly; nullopt when the text is not such a
// number, the product is not whole, or it does not fit an int.
std::optional<int> scaledDecimal(std::string_view number, int64_t scale) {
  size_t dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : number.substr(dot + 1);
  if (whole.empty() && fraction.empty()) return std::nullopt;
  if (dot != std::string_view::npos && fraction.empty()) return std::nullopt;
  if (!std::all_of(whole.begin(), whole.end(), isDigit) ||
      !std::all_of(fraction.begin(), fraction.end(), isDigit)) {
    return std::nullopt;
  }
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  if (whole.size() > 10 || fraction.size() > 9) return std::nullopt;
  int64_t whole_value = 0;
  for (char c : whole) whole_value = whole_value * 10 + (c - '0');
  int64_t fraction_value = 0;
  int64_t denominator = 1;
  for (char c : fraction) {
    fraction_value = fraction_value * 10 + (c - '0');
    denominator *= 10;
  }
  int64_t numerator = fraction_value * scale;
  if (numerator % denominator != 0) return std::nullopt;
  int64_t result = whole_value * scale + numerator / denominator;
  if (result > std::numeric_limits<int>::max()) return std::nullopt;
  return static_cast<int>(result);
}

// Splits "<number><spaces><unit>" into its two parts.
std::pair<std::string_view, std::string_view> splitUnit(std::string_view text) {
  size_t end = 0;
  while (end < text.size() && (isDigit(text[end]) || text[end] == '.')) ++end;
  return {text.substr(0, end), trim(text.substr(end))};
}

// ---------------------------------------------------------------------------------------------
// JSON reading: every field of the wrong type is reported with its path; reading goes on so that
// one parse reports every type error. JSON null reads as "absent", as the ECS API treats it.

std::string describe(const json::value& value) {
  switch (value.kind()) {
    case json::kind::string:
      return "a string";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a number";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::object:
      return "an object";
    case json::kind::array:
      return "an array";
    case json::kind::null:
      return "null";
  }
  return "something else";
}

class Reader {
 public:
  void error(const std::string& path, std::string_view message) {
    errors_.push_back(fmt::format("{}: {}", path, message));
  }
  void typeError(const std::string& path, std::string_view expected, const json::value& got) {
    error(path, fmt::format("expected {}, got {}", expected, describe(got)));
  }
  void unsupported(const std::string& path) { unsupported_.push_back(path); }

  const std::vector<std::string>& errors() const { return errors_; }
  const std::vector<std::string>& unsupportedFields() const { return unsupported_; }

 private:
  std::vector<std::string> errors_;
  std::vector<std::string> unsupported_;
};

std::string childPath(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

std::string indexPath(const std::string& parent, size_t index) {
  return fmt::format("{}[{}]", parent, index);
}

// Converters from a JSON value to a typed field. Each reports its own type errors and returns
// false on them. Declared up front so the templates below find every overload.
bool convert(Reader& reader, const json::value& value, const std::string& path, std::string& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, bool& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, int& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, int64_t& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, KeyValuePair& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, Secret& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, PortMapping& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, MountPoint& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, VolumeFrom& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, Device& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, Tmpfs& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             LinuxParameters& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             ContainerDependency& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, HealthCheck& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, Ulimit& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, HostEntry& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             EnvironmentFile& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             LogConfiguration& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, RestartPolicy& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             ContainerDefinition& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, HostVolume& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             DockerVolumeConfiguration& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             EfsVolumeConfiguration& out);
bool convert(Reader& reader, const json::value& value, const std::string& path, Volume& out);
bool convert(Reader& reader, const json::value& value, const std::string& path,
             RuntimePlatform& out);

template <typename T>
bool convert(Reader& reader, const json::value& value, const std::string& path,
             std::optional<T>& out) {
  T item{};
  if (!convert(reader, value, path, item)) return false;
  out = std::move(item);
  return true;
}

template <typename T>
bool convert(Reader& reader, const json::value& value, const std::string& path,
             std::vector<T>& out) {
  const json::array* array = value.if_array();
  if (!array) {
    reader.typeError(path, "an array", value);
    return false;
  }
  out.clear();
  bool ok = true;
  for (size_t i = 0; i < array->size(); ++i) {
    T item{};
    if (convert(reader, (*array)[i], indexPath(path, i), item)) {
      out.push_back(std::move(item));
    } else {
      ok = false;
    }
  }
  return ok;
}

template <typename T>
bool convert(Reader& reader, const json::value& value, const std::string& path,
             std::map<std::string, T>& out) {
  const json::object* object = value.if_object();
  if (!object) {
    reader.typeError(path, "an object", value);
    return false;
  }
  out.clear();
  bool ok = true;
  for (const auto& [key, item_value] : *object) {
    T item{};
    if (convert(reader, item_value, childPath(path, key), item)) {
      out[std::string(key)] = std::move(item);
    } else {
      ok = false;
    }
  }
  return ok;
}

// One JSON object being read, with its path for messages.
class Fields {
 public:
  Fields(Reader& reader, const json::object& object, std::string path)
      : reader_(reader), object_(object), path_(std::move(path)) {}

  // The member, or nullptr when absent or null.
  const json::value* find(std::string_view key) const {
    const json::value* value = object_.if_contains(key);
    return value && !value->is_null() ? value : nullptr;
  }
  std::string path(std::string_view key) const { return childPath(path_, key); }
  Reader& reader() const { return reader_; }

  template <typename T>
  void read(std::string_view key, T& out) const {
    if (const json::value* value = find(key)) convert(reader_, *value, path(key), out);
  }

  // Required members the structs cannot mark as missing by themselves.
  template <typename T>
  void require(std::string_view key, T& out) const {
    if (const json::value* value = find(key)) {
      convert(reader_, *value, path(key), out);
    } else {
      reader_.error(path(key), "required");
    }
  }

  // A member ECS knows but this agent cannot honour: recorded when set to anything non-empty.
  void unsupported(std::string_view key) const {
    const json::value* value = find(key);
    if (!value) return;
    if (value->is_array() && value->as_array().empty()) return;
    if (value->is_object() && value->as_object().empty()) return;
    if (value->is_bool() && !value->as_bool()) return;
    reader_.unsupported(path(key));
  }

 private:
  Reader& reader_;
  const json::object& object_;
  std::string path_;
};

// Checks that `value` is an object and hands it to `fill` as Fields.
template <typename F>
bool withObject(Reader& reader, const json::value& value, const std::string& path, F&& fill) {
  const json::object* object = value.if_object();
  if (!object) {
    reader.typeError(path, "an object", value);
    return false;
  }
  size_t errors_before = reader.errors().size();
  fill(Fields(reader, *object, path));
  return reader.errors().size() == errors_before;
}

bool convert(Reader& reader, const json::value& value, const std::string& path, std::string& out) {
  const json::string* string = value.if_string();
  if (!string) {
    reader.typeError(path, "a string", value);
    return false;
  }
  out.assign(string->data(), string->size());
  return true;
}

bool convert(Reader& reader, const json::value& value, const std::string& path, bool& out) {
  if (!value.is_bool()) {
    reader.typeError(path, "a boolean", value);
    return false;
  }
  out = value.get_bool();
  return true;
}

bool convert(Reader& reader, const json::value& value, const std::string& path, int64_t& out) {
  if (value.is_int64()) {
    out = value.get_int64();
    return true;
  }
  if (value.is_uint64()) {
    reader.error(path, fmt::format("{} is out of range", value.get_uint64()));
    return false;
  }
  if (value.is_double()) {
    double number = value.get_double();
    // A whole number written with a fraction or exponent ("512.0", "1e3") is still an integer.
    if (number >= -9.0e18 && number <= 9.0e18 &&
        number == static_cast<double>(static_cast<int64_t>(number))) {
      out = static_cast<int64_t>(number);
      return true;
    }
    reader.error(path, fmt::format("expected an integer, got {}", json::serialize(value)));
    return false;
  }
  reader.typeError(path, "an integer", value);
  return false;
}

bool convert(Reader& reader, const json::value& value, const std::string& path, int& out) {
  int64_t wide = 0;
  if (!convert(reader, value, path, wide)) return false;
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
    reader.error(path, fmt::format("{} is out of range", wide));
    return false;
  }
  out = static_cast<int>(wide);
  return true;
}

bool convert(Reader& reader, const json::value& value, const std::string& path, KeyValuePair& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("name", out.name);
    f.read("value", out.value);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, Secret& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("name", out.name);
    f.read("valueFrom", out.value_from);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, PortMapping& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("containerPort", out.container_port);
    f.read("hostPort", out.host_port);
    if (f.find("protocol")) {
      f.read("protocol", out.protocol);
      out.protocol = lowercase(out.protocol);
    }
    f.read("containerPortRange", out.container_port_range);
    f.read("name", out.name);
    f.read("appProtocol", out.app_protocol);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, MountPoint& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("sourceVolume", out.source_volume);
    f.read("containerPath", out.container_path);
    f.read("readOnly", out.read_only);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, VolumeFrom& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("sourceContainer", out.source_container);
    f.read("readOnly", out.read_only);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, Device& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("hostPath", out.host_path);
    f.read("containerPath", out.container_path);
    f.read("permissions", out.permissions);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, Tmpfs& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("containerPath", out.container_path);
    f.require("size", out.size_mib);
    f.read("mountOptions", out.mount_options);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             LinuxParameters& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    if (const json::value* capabilities = f.find("capabilities")) {
      withObject(f.reader(), *capabilities, f.path("capabilities"), [&](const Fields& caps) {
        caps.read("add", out.capabilities_add);
        caps.read("drop", out.capabilities_drop);
      });
    }
    f.read("devices", out.devices);
    f.read("initProcessEnabled", out.init_process_enabled);
    f.read("sharedMemorySize", out.shared_memory_size_mib);
    f.read("tmpfs", out.tmpfs);
    f.read("maxSwap", out.max_swap_mib);
    f.read("swappiness", out.swappiness);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             ContainerDependency& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("containerName", out.container_name);
    std::string condition;
    f.require("condition", condition);
    if (!f.find("condition") || !f.find("condition")->is_string()) return;
    if (condition == "START") {
      out.condition = ContainerDependency::Condition::kStart;
    } else if (condition == "COMPLETE") {
      out.condition = ContainerDependency::Condition::kComplete;
    } else if (condition == "SUCCESS") {
      out.condition = ContainerDependency::Condition::kSuccess;
    } else if (condition == "HEALTHY") {
      out.condition = ContainerDependency::Condition::kHealthy;
    } else {
      f.reader().error(f.path("condition"),
                       fmt::format("unknown condition \"{}\" (expected START, COMPLETE, SUCCESS "
                                   "or HEALTHY)",
                                   condition));
    }
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, HealthCheck& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("command", out.command);
    f.read("interval", out.interval_seconds);
    f.read("timeout", out.timeout_seconds);
    f.read("retries", out.retries);
    f.read("startPeriod", out.start_period_seconds);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, Ulimit& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("name", out.name);
    f.require("softLimit", out.soft_limit);
    f.require("hardLimit", out.hard_limit);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, HostEntry& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("hostname", out.hostname);
    f.read("ipAddress", out.ip_address);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             EnvironmentFile& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("value", out.value);
    f.read("type", out.type);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             LogConfiguration& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("logDriver", out.log_driver);
    f.read("options", out.options);
    f.read("secretOptions", out.secret_options);
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             RestartPolicy& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("enabled", out.enabled);
    f.read("ignoredExitCodes", out.ignored_exit_codes);
    f.read("restartAttemptPeriod", out.restart_attempt_period_seconds);
  });
}

// systemControls [{namespace, value}] become KeyValuePair{name = namespace}.
void readSystemControls(const Fields& f, std::vector<KeyValuePair>& out) {
  const json::value* controls = f.find("systemControls");
  if (!controls) return;
  const json::array* array = controls->if_array();
  if (!array) {
    f.reader().typeError(f.path("systemControls"), "an array", *controls);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    KeyValuePair control;
    withObject(f.reader(), (*array)[i], indexPath(f.path("systemControls"), i),
               [&](const Fields& c) {
                 c.read("namespace", control.name);
                 c.read("value", control.value);
               });
    out.push_back(std::move(control));
  }
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             ContainerDefinition& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("name", out.name);
    f.read("image", out.image);
    if (const json::value* credentials = f.find("repositoryCredentials")) {
      withObject(f.reader(), *credentials, f.path("repositoryCredentials"), [&](const Fields& c) {
        c.read("credentialsParameter", out.repository_credentials_parameter);
      });
    }
    f.read("cpu", out.cpu);
    f.read("memory", out.memory_mib);
    f.read("memoryReservation", out.memory_reservation_mib);
    f.read("links", out.links);
    f.read("portMappings", out.port_mappings);
    f.read("essential", out.essential);
    f.read("entryPoint", out.entry_point);
    f.read("command", out.command);
    f.read("environment", out.environment);
    f.read("environmentFiles", out.environment_files);
    f.read("mountPoints", out.mount_points);
    f.read("volumesFrom", out.volumes_from);
    f.read("linuxParameters", out.linux_parameters);
    f.read("secrets", out.secrets);
    f.read("dependsOn", out.depends_on);
    f.read("startTimeout", out.start_timeout_seconds);
    f.read("stopTimeout", out.stop_timeout_seconds);
    f.read("hostname", out.hostname);
    f.read("user", out.user);
    f.read("workingDirectory", out.working_directory);
    f.read("disableNetworking", out.disable_networking);
    f.read("privileged", out.privileged);
    f.read("readonlyRootFilesystem", out.readonly_root_filesystem);
    f.read("dnsServers", out.dns_servers);
    f.read("dnsSearchDomains", out.dns_search_domains);
    f.read("extraHosts", out.extra_hosts);
    f.read("dockerSecurityOptions", out.docker_security_options);
    f.read("interactive", out.interactive);
    f.read("pseudoTerminal", out.pseudo_terminal);
    f.read("dockerLabels", out.docker_labels);
    f.read("ulimits", out.ulimits);
    f.read("logConfiguration", out.log_configuration);
    f.read("healthCheck", out.health_check);
    readSystemControls(f, out.system_controls);
    f.read("restartPolicy", out.restart_policy);
    f.unsupported("resourceRequirements");
    f.unsupported("firelensConfiguration");
    f.unsupported("credentialSpecs");
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, HostVolume& out) {
  return withObject(reader, value, path,
                    [&](const Fields& f) { f.read("sourcePath", out.source_path); });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             DockerVolumeConfiguration& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("scope", out.scope);
    f.read("autoprovision", out.autoprovision);
    f.read("driver", out.driver);
    f.read("driverOpts", out.driver_opts);
    f.read("labels", out.labels);
  });
}

// "ENABLED" | "DISABLED" members of the EFS configuration.
void readEnabled(const Fields& f, std::string_view key, bool& out) {
  std::string text;
  f.read(key, text);
  if (!f.find(key) || !f.find(key)->is_string()) return;
  if (text == "ENABLED") {
    out = true;
  } else if (text == "DISABLED") {
    out = false;
  } else {
    f.reader().error(f.path(key),
                     fmt::format("unknown value \"{}\" (expected ENABLED or DISABLED)", text));
  }
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             EfsVolumeConfiguration& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("fileSystemId", out.file_system_id);
    f.read("rootDirectory", out.root_directory);
    readEnabled(f, "transitEncryption", out.transit_encryption);
    f.read("transitEncryptionPort", out.transit_encryption_port);
    if (const json::value* authorization = f.find("authorizationConfig")) {
      withObject(f.reader(), *authorization, f.path("authorizationConfig"), [&](const Fields& a) {
        a.read("accessPointId", out.access_point_id);
        readEnabled(a, "iam", out.iam);
      });
    }
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path, Volume& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("name", out.name);
    f.read("host", out.host);
    f.read("dockerVolumeConfiguration", out.docker_volume_configuration);
    f.read("efsVolumeConfiguration", out.efs_volume_configuration);
    f.unsupported("fsxWindowsFileServerVolumeConfiguration");
    f.unsupported("configuredAtLaunch");  // EBS volumes attached by the control plane
    if (!f.find("host") && !f.find("dockerVolumeConfiguration") &&
        !f.find("efsVolumeConfiguration") && !f.find("fsxWindowsFileServerVolumeConfiguration")) {
      out.host = HostVolume{};
    }
  });
}

bool convert(Reader& reader, const json::value& value, const std::string& path,
             RuntimePlatform& out) {
  return withObject(reader, value, path, [&](const Fields& f) {
    f.read("cpuArchitecture", out.cpu_architecture);
    f.read("operatingSystemFamily", out.operating_system_family);
  });
}

// Task-level cpu/memory: strings in the API; plain integers are accepted too.
void readTaskSize(const Fields& f, std::string_view key, std::optional<int>& out,
                  Result<int> (*parse)(std::string_view)) {
  const json::value* value = f.find(key);
  if (!value) return;
  std::string text;
  if (value->is_int64() || value->is_uint64() || value->is_double()) {
    text = json::serialize(*value);
  } else if (!convert(f.reader(), *value, f.path(key), text)) {
    return;
  }
  if (auto parsed = parse(text)) {
    out = *parsed;
  } else {
    f.reader().error(f.path(key), parsed.error().message);
  }
}

void readTaskDefinition(const Fields& f, TaskDefinition& out) {
  f.read("family", out.family);
  f.read("revision", out.revision);
  f.read("taskDefinitionArn", out.task_definition_arn);
  f.read("taskRoleArn", out.task_role_arn);
  f.read("executionRoleArn", out.execution_role_arn);
  f.read("networkMode", out.network_mode);
  f.read("containerDefinitions", out.container_definitions);
  f.read("volumes", out.volumes);
  readTaskSize(f, "cpu", out.cpu_units, parseTaskCpu);
  readTaskSize(f, "memory", out.memory_mib, parseTaskMemory);
  f.read("pidMode", out.pid_mode);
  f.read("ipcMode", out.ipc_mode);
  f.read("requiresCompatibilities", out.requires_compatibilities);
  f.read("runtimePlatform", out.runtime_platform);
  f.unsupported("proxyConfiguration");
  f.unsupported("inferenceAccelerators");
}

// Tags are a list of {key, value}.
void readTags(const Fields& f, std::map<std::string, std::string>& out) {
  const json::value* tags = f.find("tags");
  if (!tags) return;
  const json::array* array = tags->if_array();
  if (!array) {
    f.reader().typeError(f.path("tags"), "an array", *tags);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    std::string key;
    std::string value;
    withObject(f.reader(), (*array)[i], indexPath(f.path("tags"), i), [&](const Fields& tag) {
      tag.read("key", key);
      tag.read("value", value);
    });
    out[key] = value;
  }
}

// Line and column (1-based, columns counted in characters) of a byte offset.
std::pair<size_t, size_t> lineAndColumn(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1;
  size_t column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;  // UTF-8 continuation bytes do not start a character
    }
  }
  return {line, column};
}

// What follows the error position on its line, for the message: `near "\"port\": 80"`.
std::string excerptAt(std::string_view text, size_t offset) {
  if (offset >= text.size()) return "at the end of the input";
  std::string_view rest = text.substr(offset);
  rest = rest.substr(0, std::min(rest.find('\n'), size_t{24}));
  std::string printable;
  for (char c : rest) {
    printable += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  return fmt::format("near '{}'", printable);
}

Result<json::value> parseJson(std::string_view text) {
  json::stream_parser parser;
  boost::system::error_code ec;
  size_t consumed = parser.write(text.data(), text.size(), ec);
  if (!ec) {
    parser.finish(ec);
    consumed = text.size();
  }
  if (ec) {
    auto [line, column] = lineAndColumn(text, consumed);
    return fail(ErrorCode::kInvalidArgument, "malformed JSON at line {}, column {}: {} ({})", line,
                column, ec.message(), excerptAt(text, consumed));
  }
  return parser.release();
}

// ---------------------------------------------------------------------------------------------
// Validation.

constexpr size_t kMaxContainers = 10;
constexpr int kMinMemoryMib = 6;  // Docker 20.10+ refuses less (older Docker: 4 MiB)
constexpr int kMinTaskCpuUnits = 128;
constexpr int kMaxTaskCpuUnits = 196608;  // 192 vCPU
constexpr int kMaxTimeoutSeconds = 120;
constexpr int kMaxPortRangesPerContainer = 100;
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
  return fmt::format("containerDefinitions[{}] (name \"{}\")", index, container.name);
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
    problems.add("family: \"{}\" must be 1-255 letters, digits, '_' or '-'", d.family);
  }
  if (d.revision < 1) problems.add("revision: {} must be at least 1", d.revision);
  static constexpr std::array kNetworkModes = {"bridge", "host", "awsvpc", "none"};
  if (!oneOf(d.network_mode, kNetworkModes)) {
    problems.add("networkMode: \"{}\" is not one of bridge, host, awsvpc, none", d.network_mode);
  }
  static constexpr std::array kPidModes = {"", "host", "task"};
  if (!oneOf(d.pid_mode, kPidModes)) {
    problems.add("pidMode: \"{}\" is not one of host, task", d.pid_mode);
  }
  static constexpr std::array kIpcModes = {"", "host", "task", "none"};
  if (!oneOf(d.ipc_mode, kIpcModes)) {
    problems.add("ipcMode: \"{}\" is not one of host, task, none", d.ipc_mode);
  }
  static constexpr std::array kCompatibilities = {"EC2", "FARGATE", "EXTERNAL"};
  for (size_t i = 0; i < d.requires_compatibilities.size(); ++i) {
    if (!oneOf(d.requires_compatibilities[i], kCompatibilities)) {
      problems.add("requiresCompatibilities[{}]: \"{}\" is not one of EC2, FARGATE, EXTERNAL", i,
                   d.requires_compatibilities[i]);
    }
  }
  if (d.runtime_platform) {
    const RuntimePlatform& platform = *d.runtime_platform;
    if (!platform.operating_system_family.empty() && platform.operating_system_family != "LINUX") {
      problems.add("runtimePlatform.operatingSystemFamily: \"{}\" cannot run on this Linux agent",
                   platform.operating_system_family);
    }
    static constexpr std::array kArchitectures = {"", "X86_64", "ARM64"};
    if (!oneOf(platform.cpu_architecture, kArchitectures)) {
      problems.add("runtimePlatform.cpuArchitecture: \"{}\" is not one of X86_64, ARM64",
                   platform.cpu_architecture);
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
  if (!efs.root_directory.empty() && !isAbsolutePath(efs.root_directory)) {
    problems.add("{}.rootDirectory: \"{}\" must be an absolute path", prefix, efs.root_directory);
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
                            : fmt::format("volumes[{}] (name \"{}\")", i, volume.name);
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
    if (volume.host && !volume.host->source_path.empty() &&
        !isAbsolutePath(volume.host->source_path)) {
      problems.add("{}.host.sourcePath: \"{}\" must be an absolute path", label,
                   volume.host->source_path);
    }
    if (const auto& docker = volume.docker_volume_configuration) {
      if (docker->scope != "task" && docker->scope != "shared") {
        problems.add("{}.dockerVolumeConfiguration.scope: \"{}\" is not one of task, shared", label,
                     docker->scope);
      } else if (docker->scope == "task" && docker->autoprovision.value_or(false)) {
        problems.add(
            "{}.dockerVolumeConfiguration.autoprovision: only allowed with scope \"shared\"",
            label);
      }
      if (docker->driver != "local") {
        problems.add(
            "{}.dockerVolumeConfiguration.driver: \"{}\" is not supported (there is no Docker "
            "volume plugin here; only \"local\")",
            label, docker->driver);
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
  if (!protocol_ok) problems.add("{}.protocol: \"{}\" is not one of tcp, udp", field, m.protocol);
  if (!m.app_protocol.empty() && m.app_protocol != "http" && m.app_protocol != "http2" &&
      m.app_protocol != "grpc") {
    problems.add("{}.appProtocol: \"{}\" is not one of http, http2, grpc", field, m.app_protocol);
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
    PortClaims claims;
    for (size_t j = 0; j < c.port_mappings.size(); ++j) {
      validatePortMapping(d.network_mode, c.port_mappings[j],
                          fmt::format("{}.portMappings[{}]", label, j), claims, problems);
    }
    auto ranges = std::count_if(c.port_mappings.begin(), c.port_mappings.end(),
                                [](const auto& m) { return !m.container_port_range.empty(); });
    if (ranges > kMaxPortRangesPerContainer) {
      problems.add("{}.portMappings: {} port ranges is more than the limit of {}", label, ranges,
                   kMaxPortRangesPerContainer);
    }
    task_claims.host.insert(task_claims.host.end(), claims.host.begin(), claims.host.end());
    if (view.sharesNetworkNamespace()) {
      task_claims.container.insert(task_claims.container.end(), claims.container.begin(),
                                   claims.container.end());
    } else {
      reportOverlaps(std::move(claims.container), "container", problems);
    }
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
        option);
  }
  std::string key = option.substr(0, separator);
  std::string value = option.substr(separator + 1);
  if (key == "no-new-privileges") {
    if (value == "true" || value == "false") return std::nullopt;
    return fmt::format("\"{}\": no-new-privileges takes true or false", option);
  }
  if (key == "apparmor") {
    if (!value.empty()) return std::nullopt;
    return fmt::format("\"{}\": apparmor needs a profile name", option);
  }
  if (key == "label") {
    if (value == "disable" || value == "nested") return std::nullopt;
    for (std::string_view prefix : {"user:", "role:", "type:", "level:", "filetype:"}) {
      if (value.starts_with(prefix) && value.size() > prefix.size()) return std::nullopt;
    }
    return fmt::format("\"{}\": label takes user:, role:, type:, level:, filetype: or disable",
                       option);
  }
  if (key == "seccomp") {
    if (value == "unconfined") return std::nullopt;
    boost::system::error_code ec;
    json::value profile = json::parse(value, ec);
    if (!ec && profile.is_object()) return std::nullopt;
    return fmt::format(
        "\"{}\": seccomp takes \"unconfined\" or an inline JSON profile (as the Docker API does; "
        "not a file path)",
        option);
  }
  if (key == "credentialspec") {
    return fmt::format("\"{}\": credentialspec is for Windows containers", option);
  }
  return fmt::format(
      "\"{}\": unknown security option \"{}\" (expected no-new-privileges, "
      "label, apparmor or seccomp)",
      option, key);
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
                     names[i]);
      }
    }
  };
  checkCapabilities(p.capabilities_add, "add");
  checkCapabilities(p.capabilities_drop, "drop");
  for (size_t i = 0; i < p.devices.size(); ++i) {
    const Device& device = p.devices[i];
    std::string field = fmt::format("{}.devices[{}]", prefix, i);
    if (!isAbsolutePath(device.host_path)) {
      problems.add("{}.hostPath: \"{}\" must be an absolute path", field, device.host_path);
    }
    if (!device.container_path.empty() && !isAbsolutePath(device.container_path)) {
      problems.add("{}.containerPath: \"{}\" must be an absolute path", field,
                   device.container_path);
    }
    for (size_t j = 0; j < device.permissions.size(); ++j) {
      const auto& permission = device.permissions[j];
      if (permission != "read" && permission != "write" && permission != "mknod") {
        problems.add("{}.permissions[{}]: \"{}\" is not one of read, write, mknod", field, j,
                     permission);
      }
    }
  }
  for (size_t i = 0; i < p.tmpfs.size(); ++i) {
    const Tmpfs& tmpfs = p.tmpfs[i];
    std::string field = fmt::format("{}.tmpfs[{}]", prefix, i);
    if (!isAbsolutePath(tmpfs.container_path)) {
      problems.add("{}.containerPath: \"{}\" must be an absolute path", field,
                   tmpfs.container_path);
    }
    if (tmpfs.size_mib <= 0)
      problems.add("{}.size: {} MiB must be positive", field, tmpfs.size_mib);
    for (size_t j = 0; j < tmpfs.mount_options.size(); ++j) {
      const std::string& option = tmpfs.mount_options[j];
      if (!oneOf(std::string_view(option).substr(0, option.find('=')), kTmpfsOptions)) {
        problems.add("{}.mountOptions[{}]: unknown mount option \"{}\"", field, j, option);
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
    problems.add("{}.command[0]: \"{}\" must be CMD, CMD-SHELL or NONE", prefix, h.command[0]);
  } else if (h.command[0] != "NONE" && h.command.size() < 2) {
    problems.add("{}.command: {} needs a command after it", prefix, h.command[0]);
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
      problems.add("{}.links[{}]: unknown container \"{}\"", label, i, target);
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
                   source);
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
      problems.add("{}.containerName: unknown container \"{}\"", field, dependency.container_name);
    } else if (dependency.container_name == c.name) {
      problems.add("{}.containerName: a container cannot depend on itself", field);
    } else {
      const ContainerDefinition& other = d.container_definitions[target->second];
      using Condition = ContainerDependency::Condition;
      if (dependency.condition == Condition::kHealthy &&
          (!other.health_check ||
           (!other.health_check->command.empty() && other.health_check->command[0] == "NONE"))) {
        problems.add("{}.condition: HEALTHY needs a healthCheck on \"{}\"", field, other.name);
      }
      if ((dependency.condition == Condition::kComplete ||
           dependency.condition == Condition::kSuccess) &&
          other.essential) {
        problems.add(
            "{}.condition: {} cannot be used on essential container \"{}\" (the task "
            "stops when it exits)",
            field, conditionName(dependency.condition), other.name);
      }
    }
  }
}

// mountPoints and tmpfs: known volumes, absolute paths, each path mounted once.
void validateMounts(const TaskView& view, const ContainerDefinition& c, const std::string& label,
                    Problems& problems) {
  std::set<std::string> container_paths;
  for (size_t i = 0; i < c.mount_points.size(); ++i) {
    const MountPoint& mount = c.mount_points[i];
    std::string field = fmt::format("{}.mountPoints[{}]", label, i);
    if (mount.source_volume.empty()) {
      problems.add("{}.sourceVolume: required", field);
    } else if (!view.volumes.contains(mount.source_volume)) {
      problems.add("{}.sourceVolume: unknown volume \"{}\"", field, mount.source_volume);
    }
    if (!isAbsolutePath(mount.container_path)) {
      problems.add("{}.containerPath: \"{}\" must be an absolute path", field,
                   mount.container_path);
    } else if (!container_paths.insert(mount.container_path).second) {
      problems.add("{}.containerPath: \"{}\" is mounted twice", field, mount.container_path);
    }
  }
  if (c.linux_parameters) {
    validateLinuxParameters(label, *c.linux_parameters, problems);
    for (size_t i = 0; i < c.linux_parameters->tmpfs.size(); ++i) {
      const std::string& path = c.linux_parameters->tmpfs[i].container_path;
      if (isAbsolutePath(path) && !container_paths.insert(path).second) {
        problems.add("{}.linuxParameters.tmpfs[{}].containerPath: \"{}\" is mounted twice", label,
                     i, path);
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
      problems.add("{}.environment[{}].name: \"{}\" must not contain '='", label, i, name);
    }
  }
  for (size_t i = 0; i < c.environment_files.size(); ++i) {
    const EnvironmentFile& file = c.environment_files[i];
    if (file.value.empty()) problems.add("{}.environmentFiles[{}].value: required", label, i);
    if (file.type != "s3") {
      problems.add("{}.environmentFiles[{}].type: \"{}\" is not \"s3\"", label, i, file.type);
    }
  }
  for (size_t i = 0; i < c.secrets.size(); ++i) {
    if (c.secrets[i].name.empty()) problems.add("{}.secrets[{}].name: required", label, i);
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
  for (size_t i = 0; i < c.dns_servers.size(); ++i) {
    if (!isIpAddress(c.dns_servers[i])) {
      problems.add("{}.dnsServers[{}]: \"{}\" is not an IP address", label, i, c.dns_servers[i]);
    }
  }
  for (size_t i = 0; i < c.extra_hosts.size(); ++i) {
    const HostEntry& entry = c.extra_hosts[i];
    if (entry.hostname.empty()) problems.add("{}.extraHosts[{}].hostname: required", label, i);
    if (!isIpAddress(entry.ip_address)) {
      problems.add("{}.extraHosts[{}].ipAddress: \"{}\" is not an IP address", label, i,
                   entry.ip_address);
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
  }
  for (size_t i = 0; i < c.ulimits.size(); ++i) {
    const Ulimit& ulimit = c.ulimits[i];
    std::string field = fmt::format("{}.ulimits[{}]", label, i);
    if (!oneOf(ulimit.name, kUlimitNames)) {
      problems.add(
          "{}.name: unknown ulimit \"{}\" (expected one of core, cpu, data, fsize, locks, "
          "memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)",
          field, ulimit.name);
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
            field, control.name);
        break;
      case SysctlNamespace::kNetwork:
        if (d.network_mode == "host") {
          problems.add(
              "{}.namespace: \"{}\" cannot be set with networkMode host (it would change "
              "the host)",
              field, control.name);
        }
        break;
      case SysctlNamespace::kIpc:
        if (d.ipc_mode == "host") {
          problems.add(
              "{}.namespace: \"{}\" cannot be set with ipcMode host (it would change the "
              "host)",
              field, control.name);
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
    problems.add("{}.image: {}", label, reference.error().message);
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
                 c.working_directory);
  }
  if (c.log_configuration) {
    const LogConfiguration& log = *c.log_configuration;
    if (log.log_driver.empty()) {
      problems.add("{}.logConfiguration.logDriver: required", label);
    } else if (!oneOf(log.log_driver, kLogDrivers)) {
      problems.add(
          "{}.logConfiguration.logDriver: \"{}\" is not one of json-file, syslog, "
          "journald, gelf, fluentd, awslogs, splunk, awsfirelens",
          label, log.log_driver);
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
  text += containers[cycle.front().first].name;
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
    text += containers[cycle[k].first].name;
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

// ---------------------------------------------------------------------------------------------
// Public API.

const ContainerDefinition* TaskDefinition::container(std::string_view name) const {
  for (const auto& c : container_definitions) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Result<PortRange> parsePortRange(std::string_view text) {
  size_t dash = text.find('-');
  auto number = [](std::string_view digits) -> std::optional<int> {
    if (digits.empty() || digits.size() > 5 ||
        !std::all_of(digits.begin(), digits.end(), isDigit)) {
      return std::nullopt;
    }
    int value = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return value;
  };
  if (dash == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is not a port range like \"8000-8010\"", text);
  }
  auto first = number(text.substr(0, dash));
  auto last = number(text.substr(dash + 1));
  if (!first || !last) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is not a port range like \"8000-8010\"", text);
  }
  if (*first < 1 || *last > 65535) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is outside 1..65535", text);
  }
  if (*first >= *last) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\": the first port must be below the last", text);
  }
  return PortRange{*first, *last};
}

Result<int> parseTaskCpu(std::string_view text) {
  auto [number, unit] = splitUnit(trim(text));
  std::optional<int> units;
  if (unit.empty()) {
    if (number.find('.') == std::string_view::npos) units = scaledDecimal(number, 1);
  } else if (equalsIgnoreCase(unit, "vcpu")) {
    units = scaledDecimal(number, 1024);
  }
  if (!units) {
    return fail(ErrorCode::kInvalidArgument,
                "\"{}\" is not a whole number of CPU units or a vCPU amount (e.g. \"256\" or "
                "\"0.25 vCPU\")",
                text);
  }
  return *units;
}

Result<int> parseTaskMemory(std::string_view text) {
  auto [number, unit] = splitUnit(trim(text));
  std::optional<int> mib;
  if (unit.empty()) {
    if (number.find('.') == std::string_view::npos) mib = scaledDecimal(number, 1);
  } else if (equalsIgnoreCase(unit, "gb") || equalsIgnoreCase(unit, "gib")) {
    mib = scaledDecimal(number, 1024);
  } else if (equalsIgnoreCase(unit, "mb") || equalsIgnoreCase(unit, "mib")) {
    mib = scaledDecimal(number, 1);
  }
  if (!mib) {
    return fail(ErrorCode::kInvalidArgument,
                "\"{}\" is not a whole number of MiB or a GB amount (e.g. \"512\" or \"0.5 GB\")",
                text);
  }
  return *mib;
}

std::optional<std::string> canonicalCapabilityName(std::string_view name) {
  if (equalsIgnoreCase(name, "ALL")) return "ALL";
  std::string upper = uppercase(name);
  if (!upper.starts_with("CAP_")) upper = "CAP_" + upper;
  // libcap also takes numbers and comma lists; Docker only takes names.
  std::string_view bare = std::string_view(upper).substr(4);
  if (bare.empty() || !isAlpha(bare.front()) || !std::all_of(bare.begin(), bare.end(), [](char c) {
        return isAlpha(c) || isDigit(c) || c == '_';
      })) {
    return std::nullopt;
  }
  cap_value_t value = 0;
  if (cap_from_name(lowercase(upper).c_str(), &value) != 0) return std::nullopt;
  return upper;
}

Result<TaskDefinition> parseTaskDefinition(std::string_view json_text) {
  auto document = parseJson(json_text);
  if (!document) return fail(document.error());
  const json::object* top = document->if_object();
  if (!top) {
    return fail(ErrorCode::kInvalidArgument, "expected a JSON object at the top level, got {}",
                describe(*document));
  }
  Reader reader;
  TaskDefinition definition;
  Fields top_fields(reader, *top, "");
  // describe-task-definition output: {"taskDefinition": {...}, "tags": [...]}.
  if (const json::value* wrapped = top_fields.find("taskDefinition")) {
    withObject(reader, *wrapped, "taskDefinition",
               [&](const Fields& f) { readTaskDefinition(f, definition); });
  } else {
    readTaskDefinition(top_fields, definition);
  }
  readTags(top_fields, definition.tags);
  if (!reader.errors().empty()) {
    return fail(ErrorCode::kInvalidArgument, "{}", joinProblems(reader.errors()));
  }
  definition.unsupported_fields = reader.unsupportedFields();
  return definition;
}

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

Result<TaskDefinition> loadTaskDefinition(std::string_view json_text) {
  auto definition = parseTaskDefinition(json_text);
  if (!definition) return definition;
  std::vector<std::string> problems = validateTaskDefinition(*definition);
  if (!problems.empty()) {
    return fail(ErrorCode::kInvalidArgument, "{}", joinProblems(problems));
  }
  return definition;
}

}  // namespace ecs::engine
