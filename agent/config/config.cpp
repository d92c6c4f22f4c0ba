#include "agent/config/config.h"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

extern char** environ;

namespace ecs::config {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A string list given as a JSON array (`["a","b"]`) or comma-separated (`a,b`).
Result<std::vector<std::string>> parseStringList(std::string_view text) {
  std::vector<std::string> out;
  text = trim(text);
  if (text.empty()) return out;
  if (text.front() == '[') {
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec);
    if (ec || !value.is_array()) {
      return fail(ErrorCode::kInvalidArgument, "not a JSON array of strings: {}", text);
    }
    for (const auto& item : value.as_array()) {
      if (!item.is_string()) {
        return fail(ErrorCode::kInvalidArgument, "not a JSON array of strings: {}", text);
      }
      out.emplace_back(item.as_string());
    }
    return out;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    auto item = trim(text.substr(start, comma - start));
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

// A JSON array of port numbers, as ECS_RESERVED_PORTS is written: `[22, 2375]`.
Result<std::vector<int>> parsePortList(std::string_view text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(trim(text), ec);
  if (ec || !value.is_array())
    return fail(ErrorCode::kInvalidArgument, "expected a JSON array of ports such as [22, 2375]");
  std::vector<int> out;
  for (const auto& item : value.as_array()) {
    if (!item.is_int64() || item.as_int64() < 1 || item.as_int64() > 65535)
      return fail(ErrorCode::kInvalidArgument, "expected a JSON array of ports from 1 to 65535");
    out.push_back(static_cast<int>(item.as_int64()));
  }
  return out;
}

}  // namespace

ConfigSources ConfigSources::fromProcess() {
  ConfigSources sources;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    sources.environment.emplace(std::string(entry.substr(0, eq)),
                                std::string(entry.substr(eq + 1)));
  }
  return sources;
}

std::map<std::string, std::string> parseEnvFile(std::string_view text) {
  std::map<std::string, std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    auto trimmed = trim(line);
    auto eq = trimmed.find('=');
    if (eq == std::string_view::npos) continue;
    out[std::string(trimmed.substr(0, eq))] = std::string(trimmed.substr(eq + 1));
  }
  return out;
}

Result<bool> parseBool(std::string_view text) {
  static constexpr std::string_view kTrue[] = {"1", "t", "T", "TRUE", "true", "True"};
  static constexpr std::string_view kFalse[] = {"0", "f", "F", "FALSE", "false", "False"};
  if (std::ranges::find(kTrue, text) != std::end(kTrue)) return true;
  if (std::ranges::find(kFalse, text) != std::end(kFalse)) return false;
  return fail(ErrorCode::kInvalidArgument, "not a boolean: \"{}\"", text);
}

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  using namespace std::chrono;
  std::string_view rest = trim(text);
  if (rest.empty()) return fail(ErrorCode::kInvalidArgument, "empty duration");
  if (rest == "0") return milliseconds(0);
  double total_ms = 0;
  while (!rest.empty()) {
    double number = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
    if (ec != std::errc() || ptr == rest.data()) {
      return fail(ErrorCode::kInvalidArgument, "not a duration: \"{}\" (use e.g. 30s, 5m, 1h)",
                  text);
    }
    rest.remove_prefix(ptr - rest.data());
    size_t unit_len = 0;
    while (unit_len < rest.size() && std::isalpha(static_cast<unsigned char>(rest[unit_len])))
      ++unit_len;
    auto unit = rest.substr(0, unit_len);
    rest.remove_prefix(unit_len);
    double scale = 0;
    if (unit == "ns")
      scale = 1e-6;
    else if (unit == "us" || unit == "µs")
      scale = 1e-3;
    else if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1e3;
    else if (unit == "m")
      scale = 60e3;
    else if (unit == "h")
      scale = 3600e3;
    else
      return fail(ErrorCode::kInvalidArgument, "not a duration: \"{}\" (unknown unit \"{}\")", text,
                  unit);
    total_ms += number * scale;
  }
  return milliseconds(static_cast<int64_t>(total_ms));
}

std::string_view toString(ImagePullBehavior behavior) {
  switch (behavior) {
    case ImagePullBehavior::kDefault:
      return "default";
    case ImagePullBehavior::kAlways:
      return "always";
    case ImagePullBehavior::kOnce:
      return "once";
    case ImagePullBehavior::kPreferCached:
      return "prefer-cached";
  }
  return "default";
}

Result<Config> load(const ConfigSources& sources) {
  // Files first (later files override earlier ones), then the environment over them.
  std::map<std::string, std::string> values;
  for (const auto& path : sources.files) {
    std::ifstream in(path);
    if (!in) continue;
    std::stringstream buffer;
    buffer << in.rdbuf();
    for (auto& [k, v] : parseEnvFile(buffer.str())) values[k] = v;
  }
  for (const auto& [k, v] : sources.environment) values[k] = v;

  Config config;
  auto get = [&](const char* key) -> const std::string* {
    auto it = values.find(key);
    return it == values.end() || trim(it->second).empty() ? nullptr : &it->second;
  };
  auto warn = [&](const char* key, const std::string& value, const std::string& why) {
    config.warnings.push_back(fmt::format("{}=\"{}\" ignored: {}", key, value, why));
  };
  auto duration = [&](const char* key, std::chrono::seconds& field, std::chrono::seconds min) {
    const auto* v = get(key);
    if (!v) return;
    auto parsed = parseDuration(*v);
    if (!parsed) return warn(key, *v, parsed.error().message);
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(*parsed);
    if (secs < min) return warn(key, *v, fmt::format("below the minimum of {}s", min.count()));
    field = secs;
  };

  if (const auto* v = get("ECS_CONTAINERD_ADDRESS")) {
    std::string address(trim(*v));
    if (address.starts_with("unix://")) address = address.substr(7);
    config.containerd_address = address;
  }
  if (const auto* v = get("ECS_CONTAINERD_NAMESPACE")) config.containerd_namespace = trim(*v);
  if (const auto* v = get("ECS_IMAGE_PULL_BEHAVIOR")) {
    static const std::map<std::string, ImagePullBehavior, std::less<>> kBehaviors = {
        {"default", ImagePullBehavior::kDefault},
        {"always", ImagePullBehavior::kAlways},
        {"once", ImagePullBehavior::kOnce},
        {"prefer-cached", ImagePullBehavior::kPreferCached}};
    auto it = kBehaviors.find(trim(*v));
    if (it == kBehaviors.end()) {
      warn("ECS_IMAGE_PULL_BEHAVIOR", *v, "expected default, always, once or prefer-cached");
    } else {
      config.image_pull_behavior = it->second;
    }
  }
  if (const auto* v = get("ECS_ENGINE_AUTH_TYPE")) config.engine_auth_type = trim(*v);
  if (const auto* v = get("ECS_ENGINE_AUTH_DATA")) config.engine_auth_data = *v;
  if (const auto* v = get("ECS_INSECURE_REGISTRIES")) {
    auto list = parseStringList(*v);
    if (list)
      config.insecure_registries = std::move(*list);
    else
      warn("ECS_INSECURE_REGISTRIES", *v, list.error().message);
  }
  duration("ECS_IMAGE_PULL_TIMEOUT", config.image_pull_timeout, std::chrono::seconds(1));
  duration("ECS_IMAGE_PULL_INACTIVITY_TIMEOUT", config.image_pull_inactivity_timeout,
           std::chrono::seconds(60));
  duration("ECS_MANIFEST_PULL_TIMEOUT", config.manifest_pull_timeout, std::chrono::seconds(30));
  if (const auto* v = get("ECS_CONTAINER_STOP_TIMEOUT")) {
    auto parsed = parseDuration(*v);
    if (!parsed) {
      warn("ECS_CONTAINER_STOP_TIMEOUT", *v, parsed.error().message);
    } else {
      // As the real agent: anything below one second becomes one second.
      config.container_stop_timeout = std::max(*parsed, std::chrono::milliseconds(1000));
    }
  }
  if (const auto* v = get("ECS_ENABLE_TASK_CPU_MEM_LIMIT")) {
    auto parsed = parseBool(trim(*v));
    if (parsed)
      config.task_cpu_mem_limit = *parsed;
    else
      warn("ECS_ENABLE_TASK_CPU_MEM_LIMIT", *v, parsed.error().message);
  }
  if (const auto* v = get("ECS_CGROUP_PATH")) config.cgroup_path = trim(*v);
  if (const auto* v = get("ECS_CGROUP_CPU_PERIOD")) {
    auto parsed = parseDuration(*v);
    if (!parsed || *parsed < std::chrono::milliseconds(8) ||
        *parsed > std::chrono::milliseconds(100)) {
      warn("ECS_CGROUP_CPU_PERIOD", *v, "expected a duration from 8ms to 100ms");
    } else {
      config.cgroup_cpu_period = std::chrono::duration_cast<std::chrono::microseconds>(*parsed);
    }
  }
  if (const auto* v = get("ECS_TASK_PIDS_LIMIT")) {
    int64_t limit = 0;
    auto text = trim(*v);
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || ptr != text.data() + text.size() || limit < 0 || limit > 4194304) {
      warn("ECS_TASK_PIDS_LIMIT", *v, "expected a whole number from 0 to 4194304");
    } else {
      config.task_pids_limit = limit;
    }
  }
  auto boolean = [&](const char* key, bool& field) {
    const auto* v = get(key);
    if (!v) return;
    auto parsed = parseBool(trim(*v));
    if (parsed)
      field = *parsed;
    else
      warn(key, *v, parsed.error().message);
  };
  auto port = [&](const char* key, int& field) {
    const auto* v = get(key);
    if (!v) return;
    int value = 0;
    auto text = trim(*v);
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < 1 || value > 65535)
      return warn(key, *v, "expected a port from 1 to 65535");
    field = value;
  };
  auto ports = [&](const char* key, std::vector<int>& field) {
    const auto* v = get(key);
    if (!v) return;
    auto list = parsePortList(*v);
    if (list)
      field = std::move(*list);
    else
      warn(key, *v, list.error().message);
  };
  if (const auto* v = get("ECS_BRIDGE_NAME")) {
    std::string name(trim(*v));
    if (name.size() > 15 || name.find_first_of("/ \t") != std::string::npos)
      warn("ECS_BRIDGE_NAME", *v, "an interface name is at most 15 characters, no '/' or spaces");
    else
      config.bridge_name = name;
  }
  if (const auto* v = get("ECS_BRIDGE_SUBNET")) config.bridge_subnet = trim(*v);
  if (const auto* v = get("ECS_DYNAMIC_HOST_PORT_RANGE")) {
    std::string range(trim(*v));
    int first = 0, last = 0;
    auto dash = range.find('-');
    bool ok = dash != std::string::npos;
    if (ok) {
      auto a = std::from_chars(range.data(), range.data() + dash, first);
      auto b = std::from_chars(range.data() + dash + 1, range.data() + range.size(), last);
      ok = a.ec == std::errc() && a.ptr == range.data() + dash && b.ec == std::errc() &&
           b.ptr == range.data() + range.size() && first >= 1 && first < last && last <= 65535;
    }
    if (ok)
      config.dynamic_host_port_range = range;
    else
      warn("ECS_DYNAMIC_HOST_PORT_RANGE", *v,
           "expected <first>-<last>, 1 <= first < last <= 65535");
  }
  ports("ECS_RESERVED_PORTS", config.reserved_ports);
  ports("ECS_RESERVED_PORTS_UDP", config.reserved_ports_udp);
  boolean("ECS_AWSVPC_BLOCK_IMDS", config.awsvpc_block_imds);
  boolean("ECS_ENABLE_TASK_IAM_ROLE", config.task_iam_role);
  boolean("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", config.task_iam_role_network_host);
  if (const auto* v = get("ECS_EFS_MOUNT_COMMAND")) config.efs_mount_command = trim(*v);
  port("ECS_TASK_ENDPOINT_PORT", config.task_endpoint_port);
  port("ECS_INTROSPECTION_PORT", config.introspection_port);
  boolean("ECS_ENABLE_PROMETHEUS_METRICS", config.enable_prometheus_metrics);
  if (const auto* v = get("ECS_TASK_METADATA_RPS_LIMIT")) {
    std::string text(trim(*v));
    int steady = 0, burst = 0;
    auto comma = text.find(',');
    bool ok = comma != std::string::npos;
    if (ok) {
      auto a = std::from_chars(text.data(), text.data() + comma, steady);
      auto b = std::from_chars(text.data() + comma + 1, text.data() + text.size(), burst);
      ok = a.ec == std::errc() && a.ptr == text.data() + comma && b.ec == std::errc() &&
           b.ptr == text.data() + text.size() && steady > 0 && burst > 0;
    }
    if (ok) {
      config.task_metadata_rps_steady = steady;
      config.task_metadata_rps_burst = burst;
    } else {
      warn("ECS_TASK_METADATA_RPS_LIMIT", *v, "expected <steady>,<burst>, both above 0");
    }
  }
  boolean("ECS_DISABLE_TASK_METADATA_AZ", config.disable_task_metadata_az);
  boolean("ECS_ENABLE_CONTAINER_METADATA", config.enable_container_metadata);
  boolean("ECS_RUN_HOST_CREDENTIALS", config.run_host_credentials);
  if (const auto* v = get("ECS_AVAILABILITY_ZONE")) config.availability_zone = trim(*v);
  if (const auto* v = get("ECS_DATADIR")) config.data_dir = trim(*v);
  if (const auto* v = get("ECS_CLUSTER")) config.cluster = trim(*v);
  if (const auto* v = get("AWS_REGION")) config.region = trim(*v);
  if (const auto* v = get("AWS_DEFAULT_REGION")) config.region = trim(*v);
  if (const auto* v = get("ECS_LOGLEVEL")) {
    static constexpr std::string_view kLevels[] = {"debug", "info", "warn",
                                                   "error", "crit", "none"};
    std::string level(trim(*v));
    std::ranges::transform(level, level.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::ranges::find(kLevels, level) == std::end(kLevels)) {
      warn("ECS_LOGLEVEL", *v, "expected debug, info, warn, error, crit or none");
    } else {
      config.log_level = level;
      config.log_level_set = true;
    }
  }

  if (config.containerd_namespace.empty() ||
      config.containerd_namespace.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
          std::string::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "ECS_CONTAINERD_NAMESPACE=\"{}\": a namespace is letters, digits, '.', '_' and '-'",
                config.containerd_namespace);
  }
  return config;
}

}  // namespace ecs::config
