#include "agent/config/config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include "agent/common/byte_size.h"

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

// The largest whole unit of Go's syntax: "10m", "1s", "250ms".
std::string formatDuration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
  if (ms != 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

// A port, 1 to 65535.
Result<uint16_t> parsePort(std::string_view text) {
  uint16_t port = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || ptr != text.data() + text.size() || port == 0)
    return fail(ErrorCode::kInvalidArgument, "expected a port from 1 to 65535");
  return port;
}

// A JSON array of port numbers, as ECS_RESERVED_PORTS is written: `[22, 2375]`.
Result<std::vector<uint16_t>> parsePortList(std::string_view text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(text, ec);
  if (ec || !value.is_array())
    return fail(ErrorCode::kInvalidArgument, "expected a JSON array of ports such as [22, 2375]");
  std::vector<uint16_t> out;
  for (const auto& item : value.as_array()) {
    if (!item.is_int64() || item.as_int64() < 1 || item.as_int64() > 65535)
      return fail(ErrorCode::kInvalidArgument, "expected a JSON array of ports from 1 to 65535");
    out.push_back(static_cast<uint16_t>(item.as_int64()));
  }
  return out;
}

// "<first>-<last>".
Result<PortRange> parsePortRange(std::string_view text) {
  auto dash = text.find('-');
  auto first = dash == std::string_view::npos ? fail(ErrorCode::kInvalidArgument, "no '-'")
                                              : parsePort(text.substr(0, dash));
  auto last = first ? parsePort(text.substr(dash + 1)) : first;
  if (!first || !last || *first >= *last)
    return fail(ErrorCode::kInvalidArgument, "expected <first>-<last>, 1 <= first < last <= 65535");
  return PortRange{*first, *last};
}

// "a.b.c.d/n" with no host bits set.
Result<Ipv4Cidr> parseCidr(std::string_view text) {
  auto slash = text.find('/');
  in_addr address{};
  int prefix = -1;
  if (slash != std::string_view::npos &&
      ::inet_pton(AF_INET, std::string(text.substr(0, slash)).c_str(), &address) == 1) {
    auto digits = text.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || digits.empty()) prefix = -1;
  }
  if (prefix < 0 || prefix > 32)
    return fail(ErrorCode::kInvalidArgument, "expected an IPv4 CIDR such as 172.31.224.0/20");
  const Ipv4Cidr cidr{ntohl(address.s_addr), prefix};
  const uint32_t host_bits = prefix == 0 ? ~0u : (1u << (32 - prefix)) - 1;
  if ((cidr.network & host_bits) != 0) {
    return fail(ErrorCode::kInvalidArgument, "host bits are set (the network is {})",
                Ipv4Cidr{cidr.network & ~host_bits, prefix}.toString());
  }
  return cidr;
}

// "<steady>,<burst>", both above 0.
Result<RpsLimit> parseRpsLimit(std::string_view text) {
  auto number = [](std::string_view part) -> std::optional<int> {
    part = trim(part);
    int value = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (ec != std::errc() || ptr != part.data() + part.size() || value <= 0) return std::nullopt;
    return value;
  };
  auto comma = text.find(',');
  auto steady = comma == std::string_view::npos ? std::nullopt : number(text.substr(0, comma));
  auto burst = steady ? number(text.substr(comma + 1)) : std::nullopt;
  if (!steady || !burst)
    return fail(ErrorCode::kInvalidArgument, "expected <steady>,<burst>, both above 0");
  return RpsLimit{*steady, *burst};
}

// A whole number in [min, max].
template <typename T>
Result<T> parseNumber(std::string_view text, T min, T max) {
  T value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < min || value > max)
    return fail(ErrorCode::kInvalidArgument, "expected a whole number from {} to {}", min, max);
  return value;
}

// A command line split on white space, as a shell would without quoting.
std::vector<std::string> splitWords(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// A JSON object whose values are strings: `{"stack":"prod"}`.
Result<std::map<std::string, std::string>> parseStringMap(std::string_view text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(text, ec);
  std::map<std::string, std::string> out;
  if (!ec && value.is_object()) {
    for (const auto& [key, item] : value.as_object()) {
      if (!item.is_string()) {
        return fail(ErrorCode::kInvalidArgument, "the value of \"{}\" is not a string",
                    std::string_view(key));
      }
      out[std::string(key)] = std::string(item.as_string());
    }
    return out;
  }
  return fail(ErrorCode::kInvalidArgument,
              "expected a JSON object of strings such as {{\"stack\":\"prod\"}}");
}

// An ECS endpoint: an http(s) URL; a bare host gets https://, as the AWS SDK does.
Result<std::string> parseEndpointUrl(std::string_view text) {
  std::string url(text);
  if (url.find("://") == std::string::npos) url = "https://" + url;
  const bool http = url.starts_with("https://") || url.starts_with("http://");
  const auto host = std::string_view(url).substr(url.find("://") + 3);
  if (!http || host.empty() || host.front() == '/' ||
      url.find_first_of(" \t") != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "expected an http:// or https:// URL");
  }
  return url;
}

// AWS_EC2_METADATA_DISABLED as the AWS SDKs read it: "true" or "false", in any case.
Result<bool> parseSdkBool(std::string_view text) {
  std::string lower(text);
  std::ranges::transform(lower, lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "true") return true;
  if (lower == "false") return false;
  return fail(ErrorCode::kInvalidArgument, "expected true or false");
}

Result<LogLevel> parseLogLevel(std::string_view text) {
  static const std::map<std::string, LogLevel, std::less<>> kLevels = {
      {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo}, {"warn", LogLevel::kWarn},
      {"error", LogLevel::kError}, {"crit", LogLevel::kCrit}, {"none", LogLevel::kNone}};
  std::string lower(text);
  std::ranges::transform(lower, lower.begin(), [](unsigned char c) { return std::tolower(c); });
  auto it = kLevels.find(lower);
  if (it == kLevels.end())
    return fail(ErrorCode::kInvalidArgument, "expected debug, info, warn, error, crit or none");
  return it->second;
}

Result<ImagePullBehavior> parsePullBehavior(std::string_view text) {
  static const std::map<std::string, ImagePullBehavior, std::less<>> kBehaviors = {
      {"default", ImagePullBehavior::kDefault},
      {"always", ImagePullBehavior::kAlways},
      {"once", ImagePullBehavior::kOnce},
      {"prefer-cached", ImagePullBehavior::kPreferCached}};
  auto it = kBehaviors.find(text);
  if (it == kBehaviors.end())
    return fail(ErrorCode::kInvalidArgument, "expected default, always, once or prefer-cached");
  return it->second;
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

std::string_view toString(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCrit:
      return "crit";
    case LogLevel::kNone:
      return "none";
  }
  return "info";
}

std::string Ipv4Cidr::toString() const {
  return fmt::format("{}.{}.{}.{}/{}", network >> 24, (network >> 16) & 0xff, (network >> 8) & 0xff,
                     network & 0xff, prefix_length);
}

Result<Config> load(const ConfigSources& sources) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;

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
  for (const char* name :
       {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}) {
    if (auto it = values.find(name); it != values.end())
      config.proxy_environment[name] = it->second;
  }
  // The trimmed value of `key`; nullopt when it is unset or blank (blank means the default, as
  // for the real agent).
  auto get = [&](const char* key) -> std::optional<std::string_view> {
    auto it = values.find(key);
    if (it == values.end() || trim(it->second).empty()) return std::nullopt;
    return trim(it->second);
  };
  auto warn = [&](const char* key, std::string_view why) {
    config.warnings.push_back(fmt::format("{}=\"{}\" ignored: {}", key, values[key], why));
  };
  // `field` = parse(value) when `key` is set; a value parse refuses is a warning, and the
  // default stays.
  auto set = [&](const char* key, auto& field, auto parse) {
    auto text = get(key);
    if (!text) return;
    auto parsed = parse(*text);
    if (!parsed) return warn(key, parsed.error().message);
    field = std::move(*parsed);
  };
  auto text = [](std::string_view v) -> Result<std::string> { return std::string(v); };
  auto boolean = [](std::string_view v) { return parseBool(v); };
  // A duration of at least `min`, and above 0 (the real agent reads 0 as unset), truncated to
  // the field's unit.
  auto duration = [&](const char* key, auto& field, milliseconds min) {
    using Unit = std::remove_reference_t<decltype(field)>;
    set(key, field, [&](std::string_view v) -> Result<Unit> {
      auto parsed = parseDuration(v);
      if (!parsed) return fail(parsed.error());
      if (*parsed <= milliseconds(0))
        return fail(ErrorCode::kInvalidArgument, "expected a duration above 0");
      if (*parsed < min)
        return fail(ErrorCode::kInvalidArgument, "below the minimum of {}", formatDuration(min));
      return std::chrono::duration_cast<Unit>(*parsed);
    });
  };

  // containerd
  set("ECS_CONTAINERD_ADDRESS", config.containerd_address,
      [](std::string_view v) -> Result<std::string> {
        return std::string(v.starts_with("unix://") ? v.substr(7) : v);
      });
  if (auto v = get("ECS_CONTAINERD_NAMESPACE")) config.containerd_namespace = *v;

  // images
  set("ECS_IMAGE_PULL_BEHAVIOR", config.image_pull_behavior, parsePullBehavior);
  set("ECS_ENGINE_AUTH_TYPE", config.engine_auth_type, text);
  set("ECS_ENGINE_AUTH_DATA", config.engine_auth_data, text);
  set("ECS_INSECURE_REGISTRIES", config.insecure_registries, parseStringList);
  duration("ECS_IMAGE_PULL_TIMEOUT", config.image_pull_timeout, seconds(1));
  duration("ECS_IMAGE_PULL_INACTIVITY_TIMEOUT", config.image_pull_inactivity_timeout, seconds(60));
  duration("ECS_MANIFEST_PULL_TIMEOUT", config.manifest_pull_timeout, seconds(30));
  set("ECS_DISABLE_IMAGE_CLEANUP", config.image_cleanup_disabled, boolean);
  duration("ECS_IMAGE_CLEANUP_INTERVAL", config.image_cleanup_interval, std::chrono::minutes(10));
  duration("ECS_IMAGE_MINIMUM_CLEANUP_AGE", config.image_minimum_cleanup_age, milliseconds(0));
  set("ECS_NUM_IMAGES_DELETE_PER_CYCLE", config.num_images_delete_per_cycle,
      [](std::string_view v) { return parseNumber<int>(v, 1, 1'000'000); });

  // telemetry
  set("ECS_DISABLE_METRICS", config.disable_metrics, boolean);
  set("ECS_STOP_TASKS_ON_EXIT", config.stop_tasks_on_exit, boolean);
  set("ECS_METRICS_PUBLISH_INTERVAL", config.metrics_publish_interval,
      [](std::string_view v) -> Result<milliseconds> {
        auto parsed = parseDuration(v);
        if (!parsed || *parsed < seconds(1) || *parsed > seconds(20))
          return fail(ErrorCode::kInvalidArgument, "expected a duration from 1s to 20s");
        return *parsed;
      });

  // tasks
  set("ECS_CONTAINER_STOP_TIMEOUT", config.container_stop_timeout,
      [](std::string_view v) -> Result<milliseconds> {
        auto parsed = parseDuration(v);
        if (!parsed) return fail(parsed.error());
        if (*parsed <= milliseconds(0))
          return fail(ErrorCode::kInvalidArgument, "expected a duration above 0");
        // As the real agent: anything below one second becomes one second.
        return std::max(*parsed, milliseconds(1000));
      });
  duration("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", config.task_cleanup_wait, seconds(1));
  set("ECS_ENABLE_TASK_CPU_MEM_LIMIT", config.task_cpu_mem_limit, boolean);
  set("ECS_CGROUP_PATH", config.cgroup_path, text);
  set("ECS_CGROUP_CPU_PERIOD", config.cgroup_cpu_period,
      [](std::string_view v) -> Result<std::chrono::microseconds> {
        auto parsed = parseDuration(v);
        if (!parsed || *parsed < milliseconds(8) || *parsed > milliseconds(100))
          return fail(ErrorCode::kInvalidArgument, "expected a duration from 8ms to 100ms");
        return std::chrono::duration_cast<std::chrono::microseconds>(*parsed);
      });
  set("ECS_TASK_PIDS_LIMIT", config.task_pids_limit,
      [](std::string_view v) { return parseNumber<int64_t>(v, 0, 4194304); });
  set("ECS_CONTAINER_LOG_MAX_SIZE", config.container_log_max_size,
      [](std::string_view v) -> Result<uint64_t> {
        auto size = parseByteSize(v);
        if (!size) return fail(size.error());
        if (*size < 64 * 1024) return fail(ErrorCode::kInvalidArgument, "below the minimum of 64k");
        return *size;
      });
  set("ECS_CONTAINER_LOG_MAX_FILES", config.container_log_max_files,
      [](std::string_view v) { return parseNumber<uint32_t>(v, 1, 100); });
  set("ECS_ENVIRONMENT_FILES_DIR", config.environment_files_dir,
      [](std::string_view v) -> Result<std::string> {
        if (!v.starts_with('/'))
          return fail(ErrorCode::kInvalidArgument, "expected an absolute path");
        return std::string(v);
      });

  // network
  set("ECS_BRIDGE_NAME", config.bridge_name, [](std::string_view v) -> Result<std::string> {
    if (v.size() > 15 || v.find_first_of("/ \t") != std::string_view::npos)
      return fail(ErrorCode::kInvalidArgument,
                  "an interface name is at most 15 characters, no '/' or spaces");
    return std::string(v);
  });
  set("ECS_BRIDGE_SUBNET", config.bridge_subnet, [](std::string_view v) -> Result<Ipv4Cidr> {
    auto cidr = parseCidr(v);
    // Room for the network, the gateway (the bridge), one task and the broadcast address.
    if (cidr && cidr->prefix_length > 30)
      return fail(ErrorCode::kInvalidArgument, "too small for a bridge: /30 at most");
    return cidr;
  });
  set("ECS_DYNAMIC_HOST_PORT_RANGE", config.dynamic_host_port_range, parsePortRange);
  set("ECS_RESERVED_PORTS", config.reserved_ports, parsePortList);
  set("ECS_RESERVED_PORTS_UDP", config.reserved_ports_udp, parsePortList);
  set("ECS_AWSVPC_BLOCK_IMDS", config.awsvpc_block_imds, boolean);
  set("ECS_ENABLE_TASK_IAM_ROLE", config.task_iam_role, boolean);
  set("ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", config.task_iam_role_network_host, boolean);

  // volumes
  set("ECS_EFS_MOUNT_COMMAND", config.efs_mount_command,
      [](std::string_view v) -> Result<std::vector<std::string>> { return splitWords(v); });

  // endpoints
  set("ECS_TASK_ENDPOINT_PORT", config.task_endpoint_port, parsePort);
  set("ECS_INTROSPECTION_PORT", config.introspection_port, parsePort);
  set("ECS_ENABLE_PROMETHEUS_METRICS", config.enable_prometheus_metrics, boolean);
  set("ECS_TASK_METADATA_RPS_LIMIT", config.task_metadata_rps_limit, parseRpsLimit);
  // Up to the kernel's default fs.nr_open: no process can hold more descriptors than that.
  constexpr uint32_t kMaxDescriptors = 1024 * 1024;
  set("ECS_TASK_ENDPOINT_MAX_CONNECTIONS", config.task_endpoint_max_connections,
      [&](std::string_view v) { return parseNumber<uint32_t>(v, 1, kMaxDescriptors); });
  set("ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT",
      config.task_endpoint_max_connections_per_client,
      [&](std::string_view v) { return parseNumber<uint32_t>(v, 1, kMaxDescriptors); });
  // The agent's own files and sockets (containerd, state database, ACS/TCS, stats) need some.
  set("ECS_RESERVED_FDS", config.reserved_fds,
      [&](std::string_view v) { return parseNumber<uint32_t>(v, 64, kMaxDescriptors); });
  set("ECS_DISABLE_TASK_METADATA_AZ", config.disable_task_metadata_az, boolean);
  set("ECS_ENABLE_CONTAINER_METADATA", config.enable_container_metadata, boolean);
  set("ECS_RUN_HOST_CREDENTIALS", config.run_host_credentials, boolean);
  set("ECS_AVAILABILITY_ZONE", config.availability_zone, text);

  // registration
  set("ECS_BACKEND_HOST", config.backend_host, parseEndpointUrl);
  set("ECS_EXTERNAL", config.external, boolean);
  set("AWS_EC2_METADATA_DISABLED", config.ec2_metadata_disabled, parseSdkBool);
  set("ECS_RESERVED_MEMORY", config.reserved_memory_mib,
      [](std::string_view v) { return parseNumber<uint16_t>(v, 0, 65535); });
  // Malformed attributes or tags stop the agent, as they stop the real one: registering
  // without them cannot be undone by fixing the file later (they are sent once, at
  // registration).
  for (auto [key, field] :
       {std::pair{"ECS_INSTANCE_ATTRIBUTES", &config.instance_attributes},
        std::pair{"ECS_CONTAINER_INSTANCE_TAGS", &config.container_instance_tags}}) {
    auto v = get(key);
    if (!v) continue;
    auto parsed = parseStringMap(*v);
    if (!parsed) return fail(parsed.error().wrap(key));
    *field = std::move(*parsed);
  }

  // host
  set("ECS_DATADIR", config.data_dir, text);
  set("ECS_CLUSTER", config.cluster, text);
  set("AWS_REGION", config.region, text);
  set("AWS_DEFAULT_REGION", config.region, text);
  set("ECS_LOGLEVEL", config.log_level, parseLogLevel);

  if (config.containerd_namespace.empty() ||
      config.containerd_namespace.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
          std::string::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "ECS_CONTAINERD_NAMESPACE=\"{}\": a namespace is letters, digits, '.', '_' and '-'",
                config.containerd_namespace);
  }
  // Off EC2 there is no instance metadata to learn the region from.
  if (config.external && config.region.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "ECS_EXTERNAL=true needs AWS_DEFAULT_REGION: an external instance has no instance "
                "metadata to learn its region from");
  }
  return config;
}

}  // namespace ecs::config
