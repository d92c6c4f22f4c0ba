#include "agent/runtime/oci_spec.h"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>

namespace ecs::runtime {

namespace json = boost::json;

namespace {

constexpr const char* kOciVersion = "1.0.2";
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// --- image config parsing -----------------------------------------------------------------------

Result<std::vector<std::string>> stringArray(const json::object& obj, std::string_view key,
                                             std::string_view where) {
  std::vector<std::string> out;
  const auto* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) return fail(ErrorCode::kInvalidArgument, "{}.{} is not an array", where, key);
  for (const auto& item : v->get_array()) {
    if (!item.is_string()) {
      return fail(ErrorCode::kInvalidArgument, "{}.{} holds a non-string", where, key);
    }
    out.emplace_back(item.get_string());
  }
  return out;
}

Result<std::string> string(const json::object& obj, std::string_view key, std::string_view where) {
  const auto* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_string())
    return fail(ErrorCode::kInvalidArgument, "{}.{} is not a string", where, key);
  return std::string(v->get_string());
}

// --- spec building ------------------------------------------------------------------------------

std::string_view envKey(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

// Docker's ReplaceOrAppendEnvValues: same key replaces in place, new keys append, and an entry
// without '=' removes the key.
void replaceOrAppend(std::vector<std::string>& env, const std::vector<std::string>& overrides) {
  for (const auto& entry : overrides) {
    const auto key = envKey(entry);
    auto it = std::find_if(env.begin(), env.end(), [&](const auto& e) { return envKey(e) == key; });
    if (entry.find('=') == std::string::npos) {
      if (it != env.end()) env.erase(it);
    } else if (it != env.end()) {
      *it = entry;
    } else {
      env.push_back(entry);
    }
  }
}

Result<uint32_t> parseId(std::string_view s, std::string_view what, std::string_view user) {
  uint32_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "user {:?}: {} {:?} is not numeric (user and group names are not supported yet)",
                user, what, s);
  }
  return value;
}

json::array toArray(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

json::object capabilities() {
  const auto caps = toArray(defaultCapabilities());
  return json::object{{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
}

json::object processJson(const ProcessInputs& p, const std::vector<Rlimit>& rlimits) {
  json::object process{
      {"terminal", false},
      {"user", json::object{{"uid", p.uid}, {"gid", p.gid}}},
      {"args", toArray(p.args)},
      {"env", toArray(p.env)},
      {"cwd", p.cwd},
      {"capabilities", capabilities()},
      {"noNewPrivileges", false},
  };
  json::array limits;
  for (const auto& r : rlimits) {
    limits.push_back(json::object{{"type", r.type}, {"hard", r.hard}, {"soft", r.soft}});
  }
  if (!limits.empty()) process["rlimits"] = std::move(limits);
  return process;
}

std::vector<SpecMount> defaultMounts() {
  return {
      {"/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}},
      {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {"/dev/pts",
       "devpts",
       "devpts",
       {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
      {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
      {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
      {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}},
      {"/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}},
  };
}

}  // namespace

const std::vector<std::string>& defaultCapabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE",
  };
  return caps;
}

Result<ImageConfig> parseImageConfig(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return fail(ErrorCode::kInvalidArgument, "image config: {}", ec.message());
  if (!root.is_object()) return fail(ErrorCode::kInvalidArgument, "image config: not an object");
  const auto& top = root.get_object();
  ImageConfig out;
  auto os = string(top, "os", "image config");
  auto arch = string(top, "architecture", "image config");
  if (!os) return fail(os.error());
  if (!arch) return fail(arch.error());
  out.os = *os;
  out.architecture = *arch;

  if (const auto* rootfs = top.if_contains("rootfs"); rootfs != nullptr && rootfs->is_object()) {
    auto diff_ids = stringArray(rootfs->get_object(), "diff_ids", "image config rootfs");
    if (!diff_ids) return fail(diff_ids.error());
    out.diff_ids = std::move(*diff_ids);
  }

  const auto* config = top.if_contains("config");
  if (config == nullptr || config->is_null()) return out;
  if (!config->is_object()) {
    return fail(ErrorCode::kInvalidArgument, "image config: config is not an object");
  }
  const auto& c = config->get_object();
  constexpr std::string_view where = "image config";
  auto entrypoint = stringArray(c, "Entrypoint", where);
  auto cmd = stringArray(c, "Cmd", where);
  auto env = stringArray(c, "Env", where);
  auto working_dir = string(c, "WorkingDir", where);
  auto user = string(c, "User", where);
  auto stop_signal = string(c, "StopSignal", where);
  for (const auto* r : {&entrypoint, &cmd, &env}) {
    if (!*r) return fail(r->error());
  }
  for (const auto* r : {&working_dir, &user, &stop_signal}) {
    if (!*r) return fail(r->error());
  }
  out.entrypoint = std::move(*entrypoint);
  out.cmd = std::move(*cmd);
  out.env = std::move(*env);
  out.working_dir = std::move(*working_dir);
  out.user = std::move(*user);
  out.stop_signal = std::move(*stop_signal);
  if (const auto* labels = c.if_contains("Labels"); labels != nullptr && labels->is_object()) {
    for (const auto& [k, v] : labels->get_object()) {
      if (v.is_string()) out.labels[std::string(k)] = std::string(v.get_string());
    }
  }
  return out;
}

Result<ProcessInputs> resolveProcess(const SpecInputs& in) {
  ProcessInputs p;
  if (!in.entrypoint.empty()) {
    p.args = in.entrypoint;
    p.args.insert(p.args.end(), in.command.begin(), in.command.end());
  } else {
    p.args = in.image.entrypoint;
    const auto& cmd = in.command.empty() ? in.image.cmd : in.command;
    p.args.insert(p.args.end(), cmd.begin(), cmd.end());
  }
  if (p.args.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "no command to run: the image has no Entrypoint or Cmd and the container "
                "definition gives no entryPoint or command");
  }

  p.env = {std::string("PATH=") + kDefaultPath};
  if (!in.hostname.empty()) p.env.push_back("HOSTNAME=" + in.hostname);
  replaceOrAppend(p.env, in.image.env);
  replaceOrAppend(p.env, in.env);

  p.cwd = !in.working_dir.empty()         ? in.working_dir
          : !in.image.working_dir.empty() ? in.image.working_dir
                                          : "/";
  if (!p.cwd.starts_with('/')) {
    return fail(ErrorCode::kInvalidArgument, "working directory {:?} is not absolute", p.cwd);
  }

  const std::string& user = !in.user.empty() ? in.user : in.image.user;
  if (!user.empty() && user != "root") {
    const auto colon = user.find(':');
    const std::string_view uid = std::string_view(user).substr(0, colon);
    auto parsed_uid = parseId(uid == "root" ? "0" : uid, "uid", user);
    if (!parsed_uid) return fail(parsed_uid.error());
    p.uid = *parsed_uid;
    if (colon != std::string::npos) {
      const std::string_view gid = std::string_view(user).substr(colon + 1);
      auto parsed_gid = parseId(gid == "root" ? "0" : gid, "gid", user);
      if (!parsed_gid) return fail(parsed_gid.error());
      p.gid = *parsed_gid;
    }
  }
  return p;
}

Result<std::string> buildOciSpec(const SpecInputs& in) {
  auto process = resolveProcess(in);
  if (!process) return fail(process.error());

  std::vector<SpecMount> mounts = defaultMounts();
  for (const auto& extra : in.mounts) {
    if (extra.destination.empty() || !extra.destination.starts_with('/')) {
      return fail(ErrorCode::kInvalidArgument, "mount destination {:?} is not absolute",
                  extra.destination);
    }
    std::erase_if(mounts, [&](const SpecMount& m) { return m.destination == extra.destination; });
    mounts.push_back(extra);
  }
  json::array mounts_json;
  for (const auto& m : mounts) {
    json::object mount{{"destination", m.destination}, {"type", m.type}, {"source", m.source}};
    if (!m.options.empty()) mount["options"] = toArray(m.options);
    mounts_json.push_back(std::move(mount));
  }

  json::array namespaces;
  for (const char* type : {"pid", "ipc", "uts", "mount"}) {
    namespaces.push_back(json::object{{"type", type}});
  }
  json::object network{{"type", "network"}};
  if (!in.netns_path.empty()) network["path"] = in.netns_path;
  namespaces.push_back(std::move(network));

  json::object linux_section{
      {"namespaces", std::move(namespaces)},
      // Deny every device; runc adds its default allow-list (null, zero, full, random, urandom,
      // tty, console, ptmx, pts) on top, as Docker and containerd do.
      {"resources",
       json::object{{"devices", json::array{json::object{{"allow", false}, {"access", "rwm"}}}}}},
      {"maskedPaths",
       toArray({"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"})},
      {"readonlyPaths",
       toArray({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})},
  };
  if (!in.cgroups_path.empty()) linux_section["cgroupsPath"] = in.cgroups_path;

  json::object spec{
      {"ociVersion", kOciVersion},
      {"process", processJson(*process, in.rlimits)},
      {"root", json::object{{"path", "rootfs"}, {"readonly", in.readonly_rootfs}}},
      {"mounts", std::move(mounts_json)},
      {"linux", std::move(linux_section)},
  };
  if (!in.hostname.empty()) spec["hostname"] = in.hostname;
  if (!in.annotations.empty()) {
    json::object annotations;
    for (const auto& [k, v] : in.annotations) annotations[k] = v;
    spec["annotations"] = std::move(annotations);
  }
  return json::serialize(spec);
}

Result<std::string> buildExecProcessSpec(const SpecInputs& inputs,
                                         const std::vector<std::string>& args) {
  if (args.empty()) return fail(ErrorCode::kInvalidArgument, "exec: no command");
  SpecInputs exec = inputs;
  exec.entrypoint = args;
  exec.command.clear();
  auto process = resolveProcess(exec);
  if (!process) return fail(process.error());
  return json::serialize(processJson(*process, inputs.rlimits));
}

}  // namespace ecs::runtime
