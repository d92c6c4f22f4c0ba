#include "agent/engine/container_spec.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "agent/common/text.h"
#include "agent/engine/image_user.h"
#include "agent/runtime/capabilities.h"
#include "agent/runtime/seccomp_profile.h"

namespace ecs::engine {

namespace json = boost::json;
namespace fs = std::filesystem;
using text::clip;

namespace {

constexpr int64_t kMiB = 1024 * 1024;
constexpr int64_t kMinimumMemory = 4 * kMiB;  // the real agent's floor for a non-zero limit
constexpr int kMinCpuShares = 2;              // the kernel's minimum
constexpr int kMaxCpuShares = 262144;
constexpr int kDefaultSwappiness = 60;
constexpr const char* kInitPath = "/sbin/ecs-init";
constexpr off_t kMaxEnvironmentFile = 1 << 20;

// --- small helpers ------------------------------------------------------------------------------

Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(ErrorCode::kInvalidArgument, "cannot read {}: {}", path, std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return fail(ErrorCode::kInvalidArgument, "cannot read {}", path);
  return out.str();
}

Result<void> writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) return fail(ErrorCode::kInternal, "write {}: {}", path, std::strerror(errno));
  return {};
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    if (line.ends_with('\r')) line.remove_suffix(1);
    out.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool pathExists(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0;
}

json::object& objectAt(json::object& parent, std::string_view key) {
  auto& value = parent[key];
  if (!value.is_object()) value = json::object();
  return value.as_object();
}

json::array& arrayAt(json::object& parent, std::string_view key) {
  auto& value = parent[key];
  if (!value.is_array()) value = json::array();
  return value.as_array();
}

json::array toArray(const std::vector<std::string>& v) {
  return json::array(v.begin(), v.end());
}

template <typename Pred>
void eraseIf(json::array& array, Pred pred) {
  array.erase(std::remove_if(array.begin(), array.end(), pred), array.end());
}

std::string dirJoin(const std::string& dir, const char* name) {
  std::error_code ec;
  auto absolute = fs::absolute(fs::path(dir) / name, ec);
  return ec ? (fs::path(dir) / name).string() : absolute.lexically_normal().string();
}

size_t pathDepth(const std::string& path) {
  const auto normal = fs::path(path).lexically_normal();
  return static_cast<size_t>(std::distance(normal.begin(), normal.end()));
}

bool hostNetwork(const ContainerSpecInputs& in) {
  return in.task->network_mode == "host" && !in.container->disable_networking;
}

const LinuxParameters& linuxParameters(const ContainerDefinition& c) {
  static const LinuxParameters kNone;
  return c.linux_parameters ? *c.linux_parameters : kNone;
}

// --- environment --------------------------------------------------------------------------------

// An environment file of the task, read beneath `dir` as the agent (root): a path outside it, a
// link out of it, a non-regular file or one over kMaxEnvironmentFile is refused.
Result<std::string> readEnvironmentFile(const std::string& dir, const std::string& path) {
  if (dir.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "{}: local environment files are not allowed on this host (set "
                "ECS_ENVIRONMENT_FILES_DIR to a directory they may come from)",
                clip(path));
  }
  const fs::path base = fs::path(dir).lexically_normal();
  const fs::path file = fs::path(path).lexically_normal();
  auto relative = file.lexically_relative(base);
  if (!file.is_absolute() || relative.empty() || *relative.begin() == "..") {
    return fail(ErrorCode::kInvalidArgument, "{}: not beneath {} (ECS_ENVIRONMENT_FILES_DIR)",
                clip(path), dir);
  }
  const int dir_fd = ::open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return fail(ErrorCode::kInvalidArgument, "{}: {}", dir, std::strerror(errno));
  }
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  const int fd =
      static_cast<int>(::syscall(SYS_openat2, dir_fd, relative.c_str(), &how, sizeof(how)));
  const int open_errno = errno;
  ::close(dir_fd);
  if (fd < 0) {
    if (open_errno == EXDEV) {
      return fail(ErrorCode::kInvalidArgument, "{}: a link leads out of {}", clip(path), dir);
    }
    return fail(ErrorCode::kInvalidArgument, "{}: {}", clip(path), std::strerror(open_errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(ErrorCode::kInvalidArgument, "{}: not a regular file", clip(path));
  }
  if (st.st_size > kMaxEnvironmentFile) {
    ::close(fd);
    return fail(ErrorCode::kInvalidArgument, "{}: larger than {} bytes", clip(path),
                kMaxEnvironmentFile);
  }
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int read_errno = errno;
      ::close(fd);
      return fail(ErrorCode::kInvalidArgument, "{}: {}", clip(path), std::strerror(read_errno));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > static_cast<size_t>(kMaxEnvironmentFile)) {
      ::close(fd);
      return fail(ErrorCode::kInvalidArgument, "{}: larger than {} bytes", clip(path),
                  kMaxEnvironmentFile);
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// Docker's env-file format: leading whitespace dropped, blank and '#' lines skipped, KEY=VALUE with
// the value taken verbatim. A line without '=' would import the variable from the caller's
// environment in Docker; the agent's own environment is not the task's, so it is skipped.
Result<std::vector<std::pair<std::string, std::string>>> parseEnvFile(std::string_view text,
                                                                      const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  int number = 0;
  for (auto line : lines(text)) {
    ++number;
    const auto first = line.find_first_not_of(" \t\v\f");
    if (first == std::string_view::npos || line[first] == '#') continue;
    line.remove_prefix(first);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, eq);
    if (key.empty()) {
      return fail(ErrorCode::kInvalidArgument, "{} line {}: no variable name", path, number);
    }
    // Never quote the file: it holds secrets.
    if (key.find_first_of(" \t\v\f") != std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "{} line {}: the variable name contains whitespace",
                  path, number);
    }
    if (line.find('\0') != std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "{} line {}: contains a NUL byte", path, number);
    }
    out.emplace_back(std::string(key), std::string(line.substr(eq + 1)));
  }
  return out;
}

// The container's variables over the image's: environment files (the first file that sets a
// variable wins, as in the real agent), then `environment`, then the agent's own.
Result<std::vector<std::string>> containerEnv(const ContainerSpecInputs& in) {
  const auto& c = *in.container;
  std::vector<std::string> env;
  std::map<std::string, size_t> from_files;  // key -> index in env
  for (size_t i = 0; i < c.environment_files.size(); ++i) {
    const auto& path = c.environment_files[i].value;
    const auto where = fmt::format("environmentFiles[{}]", i);
    if (path.starts_with("arn:")) {
      return fail(ErrorCode::kInvalidArgument,
                  "{}: {:?}: environment files from S3 are not supported yet, only local paths",
                  where, path);
    }
    auto text = readEnvironmentFile(in.environment_files_dir, path);
    if (!text) return fail(text.error().wrap(where));
    auto vars = parseEnvFile(*text, path);
    if (!vars) return fail(vars.error().wrap(where));
    std::map<std::string, std::string> this_file;  // within a file the last line wins
    std::vector<std::string> order;
    for (auto& [key, value] : *vars) {
      if (!this_file.contains(key)) order.push_back(key);
      this_file[key] = std::move(value);
    }
    for (const auto& key : order) {
      if (from_files.contains(key)) continue;
      from_files[key] = env.size();
      env.push_back(key + "=" + this_file[key]);
    }
  }
  for (const auto& kv : c.environment) {
    if (!kv.name.empty()) env.push_back(kv.name + "=" + kv.value);
  }
  env.insert(env.end(), in.extra_env.begin(), in.extra_env.end());
  return env;
}

// --- user ---------------------------------------------------------------------------------------

bool numericUserAndGroup(std::string_view user) {
  const auto colon = user.find(':');
  if (colon == std::string_view::npos) return false;
  auto numeric = [](std::string_view s) {
    return !s.empty() && std::ranges::all_of(s, [](char ch) { return ch >= '0' && ch <= '9'; });
  };
  return numeric(user.substr(0, colon)) && numeric(user.substr(colon + 1));
}

Result<UserIds> containerUser(const ContainerSpecInputs& in) {
  const std::string& user = !in.container->user.empty() ? in.container->user : in.image.user;
  // Root needs nothing from the image (Docker would add root's memberships from /etc/group; root
  // holds CAP_DAC_OVERRIDE, so they change nothing but `id`'s output).
  const bool root = user.empty() || user == "root" || user == "0";
  if (root || numericUserAndGroup(user) || !in.resolve_user) {
    auto ids = resolveImageUser("", "", user);
    if (!ids) return fail(ids.error().wrap("user"));
    return ids;
  }
  auto ids = in.resolve_user(user);
  if (!ids) return fail(ids.error().wrap("user"));
  return ids;
}

// --- security options ---------------------------------------------------------------------------

struct SecurityOptions {
  bool no_new_privileges = false;
  bool seccomp_unconfined = false;
  bool system_paths_unconfined = false;
  bool writable_cgroups = false;
};

Result<bool> parseBool(std::string_view value) {
  const auto v = lower(value);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  return fail(ErrorCode::kInvalidArgument, "{:?} is not a boolean", std::string(value));
}

// Docker's --security-opt: "key=value" or "key:value". AppArmor and SELinux labels do not exist
// on this host and are ignored, as are credential specs (a Windows/gMSA feature).
Result<SecurityOptions> securityOptions(const std::vector<std::string>& options) {
  SecurityOptions out;
  for (size_t i = 0; i < options.size(); ++i) {
    const std::string_view option = options[i];
    const auto where = fmt::format("dockerSecurityOptions[{}]", i);
    if (option == "no-new-privileges") {
      out.no_new_privileges = true;
      continue;
    }
    auto sep = option.find('=');
    if (sep == std::string_view::npos) sep = option.find(':');
    if (sep == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "{}: invalid security option {:?}", where,
                  std::string(option));
    }
    const auto key = option.substr(0, sep);
    const auto value = option.substr(sep + 1);
    if (key == "apparmor" || key == "label" || key == "credentialspec") continue;
    if (key == "no-new-privileges" || key == "writable-cgroups") {
      auto enabled = parseBool(value);
      if (!enabled) return fail(enabled.error().wrap(where));
      (key == "no-new-privileges" ? out.no_new_privileges : out.writable_cgroups) = *enabled;
    } else if (key == "seccomp" && value == "unconfined") {
      out.seccomp_unconfined = true;
    } else if (key == "seccomp") {
      return fail(ErrorCode::kInvalidArgument,
                  "{}: custom seccomp profiles are not supported (only seccomp=unconfined)", where);
    } else if (key == "systempaths" && value == "unconfined") {
      out.system_paths_unconfined = true;
    } else {
      return fail(ErrorCode::kInvalidArgument, "{}: unsupported security option {:?}", where,
                  std::string(option));
    }
  }
  return out;
}

// --- ulimits ------------------------------------------------------------------------------------

Result<std::vector<runtime::Rlimit>> rlimits(const std::vector<Ulimit>& ulimits) {
  static const std::set<std::string> kNames = {
      "as",   "core",   "cpu",   "data", "fsize",  "locks",  "memlock",    "msgqueue",
      "nice", "nofile", "nproc", "rss",  "rtprio", "rttime", "sigpending", "stack"};
  std::vector<runtime::Rlimit> out;
  auto value = [](int64_t v) {
    return v < 0 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(v);
  };
  for (size_t i = 0; i < ulimits.size(); ++i) {
    const auto& u = ulimits[i];
    const auto name = lower(u.name);
    if (!kNames.contains(name)) {
      return fail(ErrorCode::kInvalidArgument, "ulimits[{}]: unknown ulimit {:?}", i, u.name);
    }
    const uint64_t soft = value(u.soft_limit);
    const uint64_t hard = value(u.hard_limit);
    if (soft > hard) {
      return fail(ErrorCode::kInvalidArgument,
                  "ulimits[{}]: {} soft limit {} is above the hard limit {}", i, name, u.soft_limit,
                  u.hard_limit);
    }
    std::string type = "RLIMIT_" + name;
    std::ranges::transform(type, type.begin(), [](unsigned char ch) { return std::toupper(ch); });
    std::erase_if(out, [&](const runtime::Rlimit& r) { return r.type == type; });
    out.push_back(runtime::Rlimit{type, soft, hard});
  }
  return out;
}

// --- what a process of the container is ---------------------------------------------------------

// What the container's own process and its exec'd processes share.
struct ProcessSettings {
  runtime::SpecInputs spec;
  UserIds user;
  std::vector<std::string> capabilities;
  SecurityOptions security;
};

std::string defaultHostname(const ContainerSpecInputs& in) {
  if (!in.container->hostname.empty()) return in.container->hostname;
  if (in.task->network_mode == "host") {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) == 0) return name;
    return "";
  }
  return in.runtime_id.substr(0, 12);  // Docker's: the short container ID
}

Result<ProcessSettings> processSettings(const ContainerSpecInputs& in) {
  if (in.task == nullptr || in.container == nullptr) {
    return fail(ErrorCode::kInvalidArgument, "container spec: no task or container definition");
  }
  const auto& c = *in.container;
  ProcessSettings out;
  auto env = containerEnv(in);
  if (!env) return fail(env.error());
  auto user = containerUser(in);
  if (!user) return fail(user.error());
  out.user = std::move(*user);
  auto security = securityOptions(c.docker_security_options);
  if (!security) return fail(security.error());
  out.security = *security;
  const auto& lp = linuxParameters(c);
  auto caps = runtime::applyCapabilityChanges(runtime::defaultCapabilities(), lp.capabilities_add,
                                              lp.capabilities_drop, c.privileged);
  if (!caps) return fail(caps.error().wrap("linuxParameters"));
  out.capabilities = std::move(*caps);
  auto limits = rlimits(c.ulimits);
  if (!limits) return fail(limits.error());

  auto& spec = out.spec;
  spec.image = in.image;
  spec.entrypoint = c.entry_point;
  spec.command = c.command;
  spec.env = std::move(*env);
  spec.working_dir = c.working_directory;
  spec.user = fmt::format("{}:{}", out.user.uid, out.user.gid);
  spec.hostname = defaultHostname(in);
  spec.cgroups_path = in.cgroups_path;
  spec.readonly_rootfs = c.readonly_root_filesystem;
  spec.rlimits = std::move(*limits);
  return out;
}

void patchProcess(json::object& process, const ProcessSettings& settings) {
  if (!settings.user.additional_gids.empty()) {
    auto& gids = arrayAt(objectAt(process, "user"), "additionalGids");
    gids.clear();
    for (auto gid : settings.user.additional_gids) gids.emplace_back(gid);
  }
  const auto caps = toArray(settings.capabilities);
  // Inheritable and ambient stay empty, as Docker leaves them: an exec'd file gains nothing.
  process["capabilities"] =
      json::object{{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
  process["noNewPrivileges"] = settings.security.no_new_privileges;
}

// --- network files ------------------------------------------------------------------------------

constexpr const char* kDefaultHosts =
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n";

std::string hostsFile(const ContainerSpecInputs& in, const std::string& hostname) {
  std::string out;
  if (hostNetwork(in)) {
    auto host = readFile(in.host_hosts);
    out = host ? *host : kDefaultHosts;
    if (!out.empty() && !out.ends_with('\n')) out += '\n';
  } else {
    out = kDefaultHosts;
  }
  for (const auto& h : in.container->extra_hosts) {
    out += fmt::format("{}\t{}\n", h.ip_address, h.hostname);
  }
  if (!hostNetwork(in) && !hostname.empty()) {
    out += fmt::format("{}\t{}\n", in.ip_address.empty() ? "127.0.0.1" : in.ip_address, hostname);
  }
  return out;
}

struct ResolvConf {
  std::vector<std::string> nameservers;
  std::vector<std::string> search;
  std::vector<std::string> options;
};

ResolvConf parseResolvConf(std::string_view text) {
  ResolvConf out;
  for (auto line : lines(text)) {
    auto w = words(line);
    if (w.empty() || w[0].starts_with('#') || w[0].starts_with(';')) continue;
    if (w[0] == "nameserver" && w.size() > 1) out.nameservers.push_back(w[1]);
    // As in libc (and Docker), the last search / options line is the one that counts.
    if (w[0] == "search") out.search.assign(w.begin() + 1, w.end());
    if (w[0] == "options") out.options.assign(w.begin() + 1, w.end());
  }
  return out;
}

bool localhostNameserver(std::string_view ns) {
  return ns.starts_with("127.") || ns == "::1";
}

// The host's resolv.conf; on systemd-resolved hosts the stub (127.0.0.53) is unreachable from
// another network namespace, so Docker reads the real upstream list instead.
std::string hostResolvConf(const ContainerSpecInputs& in, bool host_network) {
  auto text = readFile(in.host_resolv_conf);
  if (!text) return "";
  if (!host_network &&
      parseResolvConf(*text).nameservers == std::vector<std::string>{"127.0.0.53"}) {
    if (auto upstream = readFile("/run/systemd/resolve/resolv.conf")) return *upstream;
  }
  return *text;
}

std::string resolvConfFile(const ContainerSpecInputs& in) {
  const auto& c = *in.container;
  const bool host_network = hostNetwork(in);
  const std::string host = hostResolvConf(in, host_network);
  if (!c.dns_servers.empty() || !c.dns_search_domains.empty()) {
    auto conf = parseResolvConf(host);
    if (!c.dns_servers.empty()) conf.nameservers = c.dns_servers;
    if (!c.dns_search_domains.empty()) conf.search = c.dns_search_domains;
    std::string out;
    if (!conf.search.empty() && !(conf.search.size() == 1 && conf.search[0] == ".")) {
      out += fmt::format("search {}\n", fmt::join(conf.search, " "));
    }
    for (const auto& ns : conf.nameservers) out += fmt::format("nameserver {}\n", ns);
    if (!conf.options.empty()) out += fmt::format("options {}\n", fmt::join(conf.options, " "));
    return out;
  }
  if (host_network) return host;

  // Another network namespace cannot reach the host's loopback resolvers: drop them, and if none
  // is left fall back to Google's public DNS, as Docker does.
  std::string out;
  bool any_nameserver = false;
  for (auto line : lines(host)) {
    const auto w = words(line);
    if (w.size() > 1 && w[0] == "nameserver") {
      if (localhostNameserver(w[1])) continue;
      any_nameserver = true;
    }
    out += line;
    out += '\n';
  }
  if (!any_nameserver) out += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";
  return out;
}

// Writes hosts, resolv.conf and hostname into container_dir; returns their bind mounts.
Result<std::vector<runtime::SpecMount>> networkFiles(const ContainerSpecInputs& in,
                                                     const std::string& hostname) {
  if (in.container_dir.empty()) return std::vector<runtime::SpecMount>{};
  const std::vector<std::pair<const char*, std::string>> files = {
      {"hosts", hostsFile(in, hostname)},
      {"resolv.conf", resolvConfFile(in)},
      {"hostname", hostname + "\n"},
  };
  std::vector<runtime::SpecMount> mounts;
  for (const auto& [name, content] : files) {
    const auto path = dirJoin(in.container_dir, name);
    if (auto written = writeFile(path, content); !written) return fail(written.error());
    std::vector<std::string> options = {"rbind", "rprivate"};
    if (in.container->readonly_root_filesystem) options.push_back("ro");
    mounts.push_back(runtime::SpecMount{fmt::format("/etc/{}", name), "bind", path, options});
  }
  return mounts;
}

// --- tmpfs --------------------------------------------------------------------------------------

// Docker's MergeTmpfsOptions: options later in the list win over earlier ones that set the same
// flag (ro/rw, exec/noexec, ...), the same key= (size=, mode=, ...) or the propagation.
Result<std::vector<std::string>> mergeTmpfsOptions(const std::vector<std::string>& options) {
  static const std::map<std::string, std::string> kFlagGroup = {
      {"ro", "rdonly"},
      {"rw", "rdonly"},
      {"suid", "nosuid"},
      {"nosuid", "nosuid"},
      {"dev", "nodev"},
      {"nodev", "nodev"},
      {"exec", "noexec"},
      {"noexec", "noexec"},
      {"sync", "sync"},
      {"async", "sync"},
      {"dirsync", "dirsync"},
      {"remount", "remount"},
      {"mand", "mand"},
      {"nomand", "mand"},
      {"atime", "noatime"},
      {"noatime", "noatime"},
      {"diratime", "nodiratime"},
      {"nodiratime", "nodiratime"},
      {"relatime", "relatime"},
      {"norelatime", "relatime"},
      {"strictatime", "strictatime"},
      {"nostrictatime", "strictatime"},
      {"bind", "bind"},
      {"rbind", "bind"},
      {"private", "propagation"},
      {"rprivate", "propagation"},
      {"shared", "propagation"},
      {"rshared", "propagation"},
      {"slave", "propagation"},
      {"rslave", "propagation"},
      {"unbindable", "propagation"},
      {"runbindable", "propagation"},
  };
  static const std::set<std::string> kDataKeys = {"size",      "mode",      "uid", "gid",
                                                  "nr_inodes", "nr_blocks", "mpol"};
  std::set<std::string> seen;
  std::vector<std::string> out;
  for (auto it = options.rbegin(); it != options.rend(); ++it) {
    const auto& option = *it;
    if (option == "defaults") continue;
    std::string key;
    if (const auto group = kFlagGroup.find(option); group != kFlagGroup.end()) {
      key = group->second;
    } else {
      const auto eq = option.find('=');
      if (eq == std::string::npos || !kDataKeys.contains(option.substr(0, eq))) {
        return fail(ErrorCode::kInvalidArgument, "invalid tmpfs option {:?}", option);
      }
      key = option.substr(0, eq) + "=";
    }
    if (seen.insert(key).second) out.insert(out.begin(), option);
  }
  return out;
}

Result<std::vector<runtime::SpecMount>> tmpfsMounts(const std::vector<Tmpfs>& tmpfs) {
  std::vector<runtime::SpecMount> out;
  for (size_t i = 0; i < tmpfs.size(); ++i) {
    const auto& t = tmpfs[i];
    if (!t.container_path.starts_with('/')) {
      return fail(ErrorCode::kInvalidArgument,
                  "linuxParameters.tmpfs[{}]: containerPath {:?} is not absolute", i,
                  t.container_path);
    }
    std::vector<std::string> options = {"noexec", "nosuid", "nodev", "rprivate"};
    if (t.size_mib > 0) options.push_back(fmt::format("size={}m", t.size_mib));
    options.insert(options.end(), t.mount_options.begin(), t.mount_options.end());
    auto merged = mergeTmpfsOptions(options);
    if (!merged) return fail(merged.error().wrap(fmt::format("linuxParameters.tmpfs[{}]", i)));
    out.push_back(runtime::SpecMount{t.container_path, "tmpfs", "tmpfs", std::move(*merged)});
  }
  return out;
}

// --- devices ------------------------------------------------------------------------------------

struct HostDevice {
  std::string path;  // in the container
  char type = 'c';
  int64_t major = 0;
  int64_t minor = 0;
  uint32_t file_mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

std::optional<HostDevice> deviceAt(const std::string& host_path, const std::string& container_path,
                                   bool follow) {
  struct stat st {};
  if ((follow ? ::stat(host_path.c_str(), &st) : ::lstat(host_path.c_str(), &st)) != 0) {
    return std::nullopt;
  }
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) return std::nullopt;
  return HostDevice{container_path,     S_ISBLK(st.st_mode) ? 'b' : 'c',
                    major(st.st_rdev),  minor(st.st_rdev),
                    st.st_mode & 07777, st.st_uid,
                    st.st_gid};
}

// Every device under `dir` (containerd's HostDevices: pseudo-filesystems and the console
// skipped, symlinks not followed), mapped under `container_dir`.
void devicesUnder(const std::string& dir, const std::string& container_dir,
                  std::vector<HostDevice>& out) {
  static const std::set<std::string> kSkippedDirs = {"pts",  "shm",         "fd",   "mqueue",
                                                     ".lxc", ".lxd-mounts", ".udev"};
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    const auto host_path = entry.path().string();
    const auto container_path = (fs::path(container_dir) / name).string();
    std::error_code type_ec;
    if (entry.is_directory(type_ec) && !entry.is_symlink(type_ec)) {
      if (!kSkippedDirs.contains(name)) devicesUnder(host_path, container_path, out);
      continue;
    }
    if (name == "console") continue;
    if (auto device = deviceAt(host_path, container_path, false)) out.push_back(*device);
  }
}

std::string devicePermissions(const std::vector<std::string>& permissions, size_t index,
                              std::optional<Error>& error) {
  if (permissions.empty()) return "rwm";
  std::string access;
  for (const auto& p : permissions) {
    const char flag = p == "read" ? 'r' : p == "write" ? 'w' : p == "mknod" ? 'm' : '\0';
    if (flag == '\0') {
      error = Error{ErrorCode::kInvalidArgument,
                    fmt::format("linuxParameters.devices[{}]: unknown permission {:?} (read, "
                                "write or mknod)",
                                index, p)};
      return "";
    }
    if (access.find(flag) == std::string::npos) access += flag;
  }
  return access;
}

struct DeviceRule {
  HostDevice device;
  std::string access;
};

Result<std::vector<DeviceRule>> definitionDevices(const std::vector<Device>& devices) {
  std::vector<DeviceRule> out;
  for (size_t i = 0; i < devices.size(); ++i) {
    const auto& d = devices[i];
    const auto where = fmt::format("linuxParameters.devices[{}]", i);
    std::optional<Error> error;
    const auto access = devicePermissions(d.permissions, i, error);
    if (error) return fail(*error);
    const std::string container_path = d.container_path.empty() ? d.host_path : d.container_path;
    if (!container_path.starts_with('/')) {
      return fail(ErrorCode::kInvalidArgument, "{}: containerPath {:?} is not absolute", where,
                  container_path);
    }
    struct stat st {};
    if (::stat(d.host_path.c_str(), &st) != 0) {
      return fail(ErrorCode::kInvalidArgument, "{}: host device {}: {}", where, d.host_path,
                  std::strerror(errno));
    }
    std::vector<HostDevice> found;
    if (S_ISDIR(st.st_mode)) {
      devicesUnder(d.host_path, container_path, found);
    } else if (auto device = deviceAt(d.host_path, container_path, true)) {
      found.push_back(*device);
    } else {
      return fail(ErrorCode::kInvalidArgument, "{}: {} is not a device", where, d.host_path);
    }
    for (auto& device : found) out.push_back(DeviceRule{std::move(device), access});
  }
  return out;
}

json::object specDevice(const HostDevice& d) {
  return json::object{{"path", d.path},   {"type", std::string(1, d.type)}, {"major", d.major},
                      {"minor", d.minor}, {"fileMode", d.file_mode},        {"uid", d.uid},
                      {"gid", d.gid}};
}

// --- sysctls ------------------------------------------------------------------------------------

// runc's rule: only namespaced sysctls, and only when the container has that namespace.
Result<void> checkSysctl(const std::string& name, size_t index, bool own_ipc, bool own_net) {
  static const std::set<std::string> kIpc = {
      "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
      "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"};
  const auto where = fmt::format("systemControls[{}]", index);
  if (kIpc.contains(name) || name.starts_with("fs.mqueue.")) {
    if (own_ipc) return {};
    return fail(ErrorCode::kInvalidArgument, "{}: {} is not allowed with the host's IPC namespace",
                where, name);
  }
  if (name.starts_with("net.")) {
    if (own_net) return {};
    return fail(ErrorCode::kInvalidArgument,
                "{}: {} is not allowed with the host's network namespace", where, name);
  }
  if (name == "kernel.domainname") return {};
  if (name == "kernel.hostname") {
    return fail(ErrorCode::kInvalidArgument, "{}: set the container's hostname instead of {}",
                where, name);
  }
  return fail(ErrorCode::kInvalidArgument, "{}: {} is not in a kernel namespace of the container",
              where, name);
}

// --- memory -------------------------------------------------------------------------------------

bool swapLimitSupported() {
  return pathExists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") ||
         pathExists("/sys/fs/cgroup/cgroup.controllers");
}

bool swappinessSupported() {
  return pathExists("/sys/fs/cgroup/memory/memory.swappiness");
}

Result<void> applyMemory(const ContainerDefinition& c, json::object& resources) {
  int64_t limit = 0;
  if (c.memory_mib && *c.memory_mib > 0) {
    limit = std::max<int64_t>(*c.memory_mib * kMiB, kMinimumMemory);
  }
  json::object memory;
  if (limit > 0) memory["limit"] = limit;
  if (c.memory_reservation_mib && *c.memory_reservation_mib > 0) {
    memory["reservation"] = static_cast<int64_t>(*c.memory_reservation_mib) * kMiB;
  }
  const auto& lp = linuxParameters(c);
  // Like Docker, a host without swap accounting runs the container without a swap limit.
  if (lp.max_swap_mib && swapLimitSupported()) {
    if (limit == 0) {
      return fail(ErrorCode::kInvalidArgument,
                  "linuxParameters.maxSwap needs a container memory limit (memory)");
    }
    memory["swap"] = *lp.max_swap_mib < 0 ? int64_t{-1} : limit + *lp.max_swap_mib * kMiB;
    if (swappinessSupported()) {
      memory["swappiness"] = static_cast<uint64_t>(lp.swappiness.value_or(kDefaultSwappiness));
    }
  }
  if (!memory.empty()) resources["memory"] = std::move(memory);
  return {};
}

// --- the spec -----------------------------------------------------------------------------------

// The container's own mounts beyond runc's defaults, parents before children. Volumes and tmpfs
// mounts win over the network files and /dev/shm, as in Docker.
Result<std::vector<runtime::SpecMount>> containerMounts(const ContainerSpecInputs& in,
                                                        const std::string& hostname) {
  const auto& c = *in.container;
  const auto& lp = linuxParameters(c);
  std::vector<runtime::SpecMount> mounts;
  auto network = networkFiles(in, hostname);
  if (!network) return fail(network.error());
  mounts = std::move(*network);

  if (in.task->ipc_mode == "host") {
    mounts.push_back(runtime::SpecMount{"/dev/shm", "bind", "/dev/shm", {"rbind", "rprivate"}});
  } else if (lp.shared_memory_size_mib && *lp.shared_memory_size_mib > 0) {
    mounts.push_back(
        runtime::SpecMount{"/dev/shm",
                           "tmpfs",
                           "shm",
                           {"nosuid", "noexec", "nodev", "mode=1777",
                            fmt::format("size={}", int64_t{*lp.shared_memory_size_mib} * kMiB)}});
  }
  if (lp.init_process_enabled) {
    if (::access(in.init_binary.c_str(), X_OK) != 0) {
      return fail(ErrorCode::kFailedPrecondition,
                  "linuxParameters.initProcessEnabled: {} is not an executable on this host "
                  "(Debian package tini)",
                  in.init_binary);
    }
    mounts.push_back(runtime::SpecMount{kInitPath, "bind", in.init_binary, {"bind", "ro"}});
  }

  auto tmpfs = tmpfsMounts(lp.tmpfs);
  if (!tmpfs) return fail(tmpfs.error());
  std::vector<runtime::SpecMount> user = std::move(*tmpfs);
  user.insert(user.end(), in.extra_mounts.begin(), in.extra_mounts.end());
  std::set<std::string> user_destinations;
  for (const auto& m : user) {
    const auto dest = fs::path(m.destination).lexically_normal().string();
    if (!user_destinations.insert(dest).second) {
      return fail(ErrorCode::kInvalidArgument, "duplicate mount point {}", m.destination);
    }
  }
  std::erase_if(mounts, [&](const runtime::SpecMount& m) {
    return user_destinations.contains(fs::path(m.destination).lexically_normal().string());
  });
  mounts.insert(mounts.end(), user.begin(), user.end());
  std::ranges::stable_sort(mounts, {},
                           [](const runtime::SpecMount& m) { return pathDepth(m.destination); });
  return mounts;
}

void removeNamespace(json::object& linux_section, std::string_view type) {
  auto& namespaces = arrayAt(linux_section, "namespaces");
  eraseIf(namespaces, [&](const json::value& ns) {
    const auto* t = ns.as_object().if_contains("type");
    return t != nullptr && t->is_string() && t->get_string() == type;
  });
}

void removeMount(json::object& spec, std::string_view destination) {
  eraseIf(arrayAt(spec, "mounts"), [&](const json::value& m) {
    return m.as_object().at("destination").as_string() == destination;
  });
}

void makeWritable(json::object& spec, std::string_view destination) {
  for (auto& m : arrayAt(spec, "mounts")) {
    auto& mount = m.as_object();
    if (mount.at("destination").as_string() != destination) continue;
    if (auto* options = mount.if_contains("options"); options != nullptr && options->is_array()) {
      eraseIf(options->as_array(), [](const json::value& o) { return o == "ro"; });
    }
  }
}

Result<void> applyDevices(const ContainerSpecInputs& in, json::object& linux_section,
                          json::object& resources) {
  const auto& c = *in.container;
  auto rules = definitionDevices(linuxParameters(c).devices);
  if (!rules) return fail(rules.error());

  std::vector<HostDevice> devices;
  if (c.privileged) devicesUnder(in.host_dev_dir, "/dev", devices);
  for (const auto& rule : *rules) {
    std::erase_if(devices, [&](const HostDevice& d) { return d.path == rule.device.path; });
    devices.push_back(rule.device);
  }
  auto& spec_devices = arrayAt(linux_section, "devices");
  for (const auto& d : devices) spec_devices.push_back(specDevice(d));
  if (spec_devices.empty()) linux_section.erase("devices");

  auto& cgroup_rules = arrayAt(resources, "devices");
  if (c.privileged) {
    cgroup_rules = json::array{json::object{{"allow", true}, {"access", "rwm"}}};
    return {};
  }
  for (const auto& rule : *rules) {
    cgroup_rules.push_back(json::object{{"allow", true},
                                        {"type", std::string(1, rule.device.type)},
                                        {"major", rule.device.major},
                                        {"minor", rule.device.minor},
                                        {"access", rule.access}});
  }
  return {};
}

Result<json::object> parseSpec(const std::string& text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec || !value.is_object()) {
    return fail(ErrorCode::kInternal, "runtime spec does not parse: {}", ec.message());
  }
  return std::move(value.as_object());
}

Result<std::string> buildSpec(const ContainerSpecInputs& in) {
  auto settings = processSettings(in);
  if (!settings) return fail(settings.error());
  const auto& c = *in.container;
  const auto& task = *in.task;
  const auto& lp = linuxParameters(c);
  const bool host_network = hostNetwork(in);

  auto mounts = containerMounts(in, settings->spec.hostname);
  if (!mounts) return fail(mounts.error());
  settings->spec.mounts = std::move(*mounts);
  settings->spec.netns_path = host_network || c.disable_networking ? "" : in.netns_path;

  auto text = runtime::buildOciSpec(settings->spec);
  if (!text) return fail(text.error());
  auto parsed = parseSpec(*text);
  if (!parsed) return fail(parsed.error());
  // Edited in parts taken out of the spec: inserting into a Boost.JSON object may move its
  // other members, so no reference into `spec` is held across an edit.
  json::object& spec = *parsed;
  json::object process = std::move(objectAt(spec, "process"));
  json::object linux_section = std::move(objectAt(spec, "linux"));
  json::object resources = std::move(objectAt(linux_section, "resources"));

  patchProcess(process, *settings);
  if (lp.init_process_enabled) {
    json::array args{kInitPath, "--"};
    for (const auto& arg : process.at("args").as_array()) args.push_back(arg);
    process["args"] = std::move(args);
  }

  // Namespaces: "task" pid/ipc modes share with the task's other containers once task-level
  // namespaces exist; until then they get their own, like the default.
  if (host_network) removeNamespace(linux_section, "network");
  if (task.pid_mode == "host") removeNamespace(linux_section, "pid");
  if (task.ipc_mode == "host") removeNamespace(linux_section, "ipc");
  if (task.ipc_mode == "none") removeMount(spec, "/dev/shm");

  // Privileged: every capability (above), no seccomp, no masked paths, /sys writable and every
  // host device (below).
  const auto& security = settings->security;
  if (c.privileged || security.system_paths_unconfined) {
    linux_section.erase("maskedPaths");
    linux_section.erase("readonlyPaths");
  }
  if (c.privileged) makeWritable(spec, "/sys");
  if (c.privileged || security.writable_cgroups) makeWritable(spec, "/sys/fs/cgroup");
  if (!c.privileged && !security.seccomp_unconfined) {
    const auto profile = runtime::defaultSeccompProfile(settings->capabilities);
    linux_section["seccomp"] = json::parse(runtime::seccompProfileJson(profile));
  }

  if (!c.system_controls.empty()) {
    json::object sysctl;
    for (size_t i = 0; i < c.system_controls.size(); ++i) {
      const auto& kv = c.system_controls[i];
      if (auto ok = checkSysctl(kv.name, i, task.ipc_mode != "host", !host_network); !ok) {
        return fail(ok.error());
      }
      sysctl[kv.name] = kv.value;
    }
    linux_section["sysctl"] = std::move(sysctl);
  }

  resources["cpu"] = json::object{
      {"shares", static_cast<uint64_t>(std::clamp(c.cpu, kMinCpuShares, kMaxCpuShares))}};
  if (auto ok = applyMemory(c, resources); !ok) return fail(ok.error());
  if (auto ok = applyDevices(in, linux_section, resources); !ok) return fail(ok.error());

  linux_section["resources"] = std::move(resources);
  spec["linux"] = std::move(linux_section);
  spec["process"] = std::move(process);
  return json::serialize(spec);
}

}  // namespace

Result<std::string> buildContainerSpec(const ContainerSpecInputs& inputs) {
  auto spec = buildSpec(inputs);
  if (!spec && inputs.container != nullptr) {
    return fail(spec.error().wrap(fmt::format("container {:?}", inputs.container->name)));
  }
  return spec;
}

Result<std::string> buildExecProcess(const ContainerSpecInputs& inputs,
                                     const std::vector<std::string>& args) {
  auto settings = processSettings(inputs);
  if (!settings) {
    if (inputs.container == nullptr) return fail(settings.error());
    return fail(settings.error().wrap(fmt::format("container {:?}", inputs.container->name)));
  }
  auto text = runtime::buildExecProcessSpec(settings->spec, args);
  if (!text) return fail(text.error());
  auto process = parseSpec(*text);
  if (!process) return fail(process.error());
  patchProcess(*process, *settings);
  return json::serialize(*process);
}

}  // namespace ecs::engine
