#include "cgroups/cgroup_v1.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

#include "cgroups/cgroupfs.h"
#include "cgroups/task_limits.h"

namespace ecs::cgroups {
namespace {

namespace stdfs = std::filesystem;

// The controllers that carry a task's limits and usage.
constexpr std::string_view kManaged[] = {"cpu", "cpuacct", "memory", "pids"};

// Mount options of cgroup v1 that are not controllers.
constexpr std::string_view kNotControllers[] = {
    "rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods", "none"};

// The kernel shows an unlimited v1 memory limit as PAGE_COUNTER_MAX pages, LONG_MAX rounded down
// to the page size (9223372036854771712 with 4 KiB pages); anything from there up is "unlimited".
constexpr uint64_t kV1Unlimited = std::numeric_limits<int64_t>::max() - 65535;

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> parts;
  while (true) {
    const auto pos = text.find(sep);
    parts.emplace_back(text.substr(0, pos));
    if (pos == std::string_view::npos) return parts;
    text = text.substr(pos + 1);
  }
}

// Mount points in mountinfo escape space, tab, newline and backslash as \ooo.
std::string unescapeOctal(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() &&
        std::all_of(text.begin() + i + 1, text.begin() + i + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 +
                                      (text[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::vector<std::string> controllersFromOptions(std::string_view super_options) {
  std::vector<std::string> controllers;
  for (auto& option : split(super_options, ',')) {
    const bool skip = std::find(std::begin(kNotControllers), std::end(kNotControllers), option) !=
                      std::end(kNotControllers);
    const bool named = option.starts_with("name=");
    if (skip || (!named && option.find('=') != std::string::npos)) continue;
    controllers.push_back(std::move(option));
  }
  return controllers;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

uint64_t ticksToNs(uint64_t ticks) {
  static const uint64_t hz = [] {
    const long value = ::sysconf(_SC_CLK_TCK);
    return value > 0 ? static_cast<uint64_t>(value) : 100;
  }();
  constexpr uint64_t kNsPerSecond = 1000000000;
  return ticks / hz * kNsPerSecond + ticks % hz * kNsPerSecond / hz;
}

class CgroupV1 final : public CgroupManager {
 public:
  CgroupV1(CgroupOptions options, std::vector<V1Hierarchy> hierarchies)
      : options_(std::move(options)), hierarchies_(std::move(hierarchies)) {}

  Version version() const override { return Version::kV1; }

  Result<void> init() override {
    for (const auto* h : managed()) {
      const auto dir = h->path + "/" + options_.parent;
      if (auto made = cgroupfs::makeDirectory(dir, "create agent cgroup"); !made) {
        return fail(made.error());
      }
      if (h->has("memory")) useHierarchy(dir);
    }
    return {};
  }

  Result<void> createTask(const std::string& task_id, const TaskLimits& limits) override {
    if (auto ok = checkTaskId(task_id); !ok) return ok;
    if (auto ok = checkLimits(limits); !ok) return ok;
    if (auto ok = init(); !ok) return ok;
    for (const auto* h : managed()) {
      const auto dir = taskDir(*h, task_id);
      if (auto made = cgroupfs::makeDirectory(dir, "create task cgroup"); !made) {
        return fail(made.error());
      }
      if (h->has("memory")) useHierarchy(dir);
    }

    const auto cpu = taskDir(*find("cpu"), task_id);
    const bool fake = !find("cpu")->cgroupfs;
    if (limits.cpu_units && *limits.cpu_units > 0) {
      const int64_t period = options_.cpu_period.count();
      const int64_t quota = cfsQuotaUs(*limits.cpu_units, options_.cpu_period);
      if (auto ok = write(cpu + "/cpu.cfs_period_us", period, fake); !ok) return ok;
      if (auto ok = write(cpu + "/cpu.cfs_quota_us", quota, fake); !ok) return ok;
    } else if (limits.container_cpu_shares > 0) {
      const int64_t shares = clampCpuShares(limits.container_cpu_shares);
      if (auto ok = write(cpu + "/cpu.shares", shares, fake); !ok) return ok;
    }

    const auto* memory = find("memory");
    if (limits.memory_bytes && *limits.memory_bytes > 0) {
      const auto path = taskDir(*memory, task_id) + "/memory.limit_in_bytes";
      if (auto ok = write(path, *limits.memory_bytes, !memory->cgroupfs); !ok) return ok;
    }

    if (options_.pids_limit > 0) {
      const auto* pids = find("pids");
      const auto path = taskDir(*pids, task_id) + "/pids.max";
      if (auto ok = write(path, options_.pids_limit, !pids->cgroupfs); !ok) return ok;
    }
    return {};
  }

  Result<void> removeTask(const std::string& task_id) override {
    if (auto ok = checkTaskId(task_id); !ok) return ok;
    const auto deadline = std::chrono::steady_clock::now() + kRemoveWait;
    Result<void> result;
    for (const auto& h : hierarchies_) {
      auto removed = cgroupfs::removeCgroup(taskDir(h, task_id), !h.cgroupfs, deadline);
      if (!removed && result) result = removed;  // keep going: remove what can be removed
    }
    return result;
  }

  std::string containerCgroupsPath(const std::string& task_id,
                                   const std::string& container_id) const override {
    return fmt::format("/{}/{}/{}", options_.parent, task_id, container_id);
  }

  Result<CgroupStats> stats(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    CgroupStats stats;
    bool found = false;

    if (const auto dir = existing("memory", cgroups_path)) {
      found = true;
      auto usage = cgroupfs::readCounter(*dir + "/memory.usage_in_bytes");
      auto max_usage = cgroupfs::readCounter(*dir + "/memory.max_usage_in_bytes");
      auto limit = cgroupfs::readCounter(*dir + "/memory.limit_in_bytes");
      auto stat = cgroupfs::readOptionalFile(*dir + "/memory.stat");
      auto oom_kills = subtreeOomKills(*dir);
      for (const auto* r : {&usage, &max_usage, &limit}) {
        if (!*r) return fail(r->error());
      }
      if (!stat) return fail(stat.error());
      if (!oom_kills) return fail(oom_kills.error());
      stats.memory_usage_bytes = *usage;
      stats.memory_max_usage_bytes = *max_usage;
      stats.memory_limit_bytes = *limit >= kV1Unlimited ? UINT64_MAX : *limit;
      // total_cache counts the container cgroups below a task's; cache alone does not.
      stats.memory_cache_bytes = cgroupfs::keyedValue(*stat, "total_cache")
                                     .value_or(cgroupfs::keyedValue(*stat, "cache").value_or(0));
      stats.oom_kills = *oom_kills;
    }

    if (const auto dir = existing("cpuacct", cgroups_path)) {
      found = true;
      auto usage = cgroupfs::readCounter(*dir + "/cpuacct.usage");
      if (!usage) return fail(usage.error());
      auto stat = cgroupfs::readOptionalFile(*dir + "/cpuacct.stat");
      if (!stat) return fail(stat.error());
      stats.cpu_usage_ns = *usage;
      // cpuacct.stat counts USER_HZ ticks.
      stats.cpu_user_ns = ticksToNs(cgroupfs::keyedValue(*stat, "user").value_or(0));
      stats.cpu_system_ns = ticksToNs(cgroupfs::keyedValue(*stat, "system").value_or(0));
    }

    if (const auto dir = existing("pids", cgroups_path)) {
      found = true;
      auto current = cgroupfs::readCounter(*dir + "/pids.current");
      if (!current) return fail(current.error());
      stats.pids_current = *current;
    }

    if (!found && !existing("cpu", cgroups_path)) {
      return fail(ErrorCode::kNotFound, "cgroup {} not found in {}/{{memory,cpu,cpuacct,pids}}",
                  cgroups_path, options_.root);
    }
    return stats;
  }

  Result<std::vector<std::string>> listTasks() const override {
    std::set<std::string> tasks;
    for (const auto& h : hierarchies_) {
      auto names = cgroupfs::subdirectories(h.path + "/" + options_.parent);
      if (!names) return fail(names.error());
      tasks.insert(names->begin(), names->end());
    }
    return std::vector<std::string>(tasks.begin(), tasks.end());
  }

  Result<CgroupLimits> limits(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    CgroupLimits limits;
    bool found = false;

    if (const auto dir = existing("cpu", cgroups_path)) {
      found = true;
      auto quota = cgroupfs::readLimit(*dir + "/cpu.cfs_quota_us");
      auto period = cgroupfs::readCounter(*dir + "/cpu.cfs_period_us");
      auto shares = cgroupfs::readCounter(*dir + "/cpu.shares");
      if (!quota) return fail(quota.error());
      for (const auto* r : {&period, &shares}) {
        if (!*r) return fail(r->error());
      }
      limits.cpu_quota_us = *quota;
      limits.cpu_period_us = *period;
      limits.cpu_shares = *shares;
    }

    if (const auto dir = existing("memory", cgroups_path)) {
      found = true;
      auto memory = cgroupfs::readLimit(*dir + "/memory.limit_in_bytes");
      if (!memory) return fail(memory.error());
      limits.memory_limit_bytes = *memory >= kV1Unlimited ? CgroupLimits::kUnlimited : *memory;
    }

    if (const auto dir = existing("pids", cgroups_path)) {
      found = true;
      auto pids = cgroupfs::readLimit(*dir + "/pids.max");
      if (!pids) return fail(pids.error());
      limits.pids_limit = *pids;
    }

    if (!found) {
      return fail(ErrorCode::kNotFound, "cgroup {} not found in {}/{{cpu,memory,pids}}",
                  cgroups_path, options_.root);
    }
    return limits;
  }

  Result<std::vector<CgroupDirectory>> directories(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    std::vector<CgroupDirectory> out;
    for (const auto& h : hierarchies_) out.push_back({h.path + cgroups_path, h.controllers});
    return out;
  }

 private:
  static constexpr auto kRemoveWait = std::chrono::seconds(1);

  const V1Hierarchy* find(std::string_view controller) const {
    for (const auto& h : hierarchies_) {
      if (h.has(controller)) return &h;
    }
    return nullptr;
  }

  // The hierarchies carrying cpu, cpuacct, memory or pids, each once.
  std::vector<const V1Hierarchy*> managed() const {
    std::vector<const V1Hierarchy*> out;
    for (const auto controller : kManaged) {
      const auto* h = find(controller);
      if (h != nullptr && std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
    }
    return out;
  }

  std::string taskDir(const V1Hierarchy& h, const std::string& task_id) const {
    return h.path + "/" + options_.parent + "/" + task_id;
  }

  // The directory of `cgroups_path` in the hierarchy of `controller`, if both exist.
  std::optional<std::string> existing(std::string_view controller,
                                      const std::string& cgroups_path) const {
    const auto* h = find(controller);
    if (h == nullptr) return std::nullopt;
    auto dir = h->path + cgroups_path;
    if (!cgroupfs::isDirectory(dir)) return std::nullopt;
    return dir;
  }

  // v1 counts an OOM kill only in the victim's own cgroup (a container's), even when the task's
  // limit was the one hit; v2 counts it up the tree. Summing the subtree gives v2's meaning.
  static Result<uint64_t> subtreeOomKills(const std::string& dir) {
    auto oom = cgroupfs::readOptionalFile(dir + "/memory.oom_control");
    if (!oom) return fail(oom.error());
    uint64_t kills = cgroupfs::keyedValue(*oom, "oom_kill").value_or(0);
    auto children = cgroupfs::subdirectories(dir);
    if (!children) return fail(children.error());
    for (const auto& child : *children) {
      auto below = subtreeOomKills(dir + "/" + child);
      if (!below) return fail(below.error());
      kills += *below;
    }
    return kills;
  }

  static Result<void> write(const std::string& path, int64_t value, bool create) {
    return cgroupfs::writeFile(path, std::to_string(value), create);
  }

  // Memory of the cgroups below counts against this one's limit. Always on (and read-only) since
  // Linux 6.x; older kernels refuse the write once children exist, so a failure only warns.
  static void useHierarchy(const std::string& dir) {
    const auto path = dir + "/memory.use_hierarchy";
    auto current = cgroupfs::readFileIfExists(path);
    if (!current || !*current || cgroupfs::parseUint(**current) == 1) return;
    if (auto ok = cgroupfs::writeFile(path, "1", false); !ok) {
      spdlog::warn("{}; container memory may not count against the task limit", ok.error().message);
    }
  }

  CgroupOptions options_;
  std::vector<V1Hierarchy> hierarchies_;
};

}  // namespace

bool V1Hierarchy::has(std::string_view controller) const {
  return std::find(controllers.begin(), controllers.end(), controller) != controllers.end();
}

std::vector<V1Hierarchy> parseV1Mounts(std::string_view mountinfo, const std::string& root) {
  std::vector<V1Hierarchy> out;
  for (const auto& line : split(mountinfo, '\n')) {
    const auto fields = split(line, ' ');
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    const auto dash = std::find(fields.begin() + std::min<size_t>(fields.size(), 6), fields.end(),
                                std::string("-"));
    if (fields.size() < 7 || fields.end() - dash < 4) continue;
    const auto& fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    const auto mount_point = unescapeOctal(fields[4]);
    if (stdfs::path(mount_point).parent_path() != stdfs::path(root)) continue;
    const bool seen = std::any_of(out.begin(), out.end(),
                                  [&](const V1Hierarchy& h) { return h.path == mount_point; });
    if (seen) continue;
    V1Hierarchy h{mount_point, {}, true};
    if (fstype == "cgroup") h.controllers = controllersFromOptions(*(dash + 3));
    out.push_back(std::move(h));
  }
  return out;
}

Result<std::vector<V1Hierarchy>> discoverV1Hierarchies(const std::string& root) {
  std::error_code ec;
  const auto canonical = stdfs::canonical(root, ec);
  if (ec) {
    return fail(ErrorCode::kFailedPrecondition, "cgroup root {}: {}", root, ec.message());
  }

  auto mountinfo = cgroupfs::readFile("/proc/self/mountinfo");
  if (mountinfo) {
    auto mounts = parseV1Mounts(*mountinfo, canonical.string());
    if (!mounts.empty()) return mounts;
  } else {
    spdlog::warn("{}; taking the cgroup hierarchies from the directories in {}",
                 mountinfo.error().message, root);
  }

  // Not a mount point of cgroup filesystems: a tree laid out like one (tests, or a copy).
  std::vector<V1Hierarchy> out;
  stdfs::directory_iterator it(canonical, ec);
  for (; !ec && it != stdfs::directory_iterator(); it.increment(ec)) {
    std::error_code entry_ec;
    const auto target = stdfs::canonical(it->path(), entry_ec);
    if (entry_ec || !stdfs::is_directory(target, entry_ec)) continue;
    const bool seen = std::any_of(out.begin(), out.end(),
                                  [&](const V1Hierarchy& h) { return h.path == target.string(); });
    if (seen) continue;
    const auto name = target.filename().string();
    V1Hierarchy h{target.string(), {}, cgroupfs::isCgroupFs(target.string())};
    if (name == "systemd") {
      h.controllers = {"name=systemd"};
    } else if (name != "unified") {
      h.controllers = split(name, ',');
    }
    out.push_back(std::move(h));
  }
  if (ec) return fail(ErrorCode::kFailedPrecondition, "list {}: {}", root, ec.message());
  std::sort(out.begin(), out.end(),
            [](const V1Hierarchy& a, const V1Hierarchy& b) { return a.path < b.path; });
  return out;
}

Result<std::unique_ptr<CgroupManager>> makeCgroupV1(const CgroupOptions& options,
                                                    std::vector<V1Hierarchy> hierarchies) {
  const auto has = [&](std::string_view controller) {
    return std::any_of(hierarchies.begin(), hierarchies.end(),
                       [&](const V1Hierarchy& h) { return h.has(controller); });
  };
  for (const auto controller : {"cpu", "memory"}) {
    if (!has(controller)) {
      return fail(ErrorCode::kFailedPrecondition, "cgroup v1: no {} hierarchy under {}", controller,
                  options.root);
    }
  }
  if (options.pids_limit > 0 && !has("pids")) {
    return fail(ErrorCode::kFailedPrecondition,
                "cgroup v1: a task pids limit is set but there is no pids hierarchy under {}",
                options.root);
  }
  for (const auto controller : {"cpuacct", "pids"}) {
    if (!has(controller)) {
      spdlog::warn("cgroup v1: no {} hierarchy under {}; its task stats will be 0", controller,
                   options.root);
    }
  }
  for (const auto& h : hierarchies) {
    spdlog::debug("cgroup v1 hierarchy {} ({})", h.path, joined(h.controllers));
  }
  return std::make_unique<CgroupV1>(options, std::move(hierarchies));
}

}  // namespace ecs::cgroups
