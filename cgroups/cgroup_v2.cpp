#include "cgroups/cgroup_v2.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "cgroups/cgroupfs.h"
#include "cgroups/task_limits.h"

namespace ecs::cgroups {
namespace {

// The controllers a task cgroup uses, in the order they are enabled.
constexpr std::string_view kWanted[] = {"cpu", "memory", "pids"};

std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = text.find_first_not_of(" \t\n", pos)) != std::string_view::npos) {
    const auto end = text.find_first_of(" \t\n", pos);
    out.emplace_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

bool contains(const std::vector<std::string>& items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

class CgroupV2 final : public CgroupManager {
 public:
  CgroupV2(CgroupOptions options, std::vector<std::string> available, bool cgroupfs)
      : options_(std::move(options)), available_(std::move(available)), cgroupfs_(cgroupfs) {}

  Version version() const override { return Version::kV2; }

  Result<void> init() override {
    if (auto ok = enableControllers(options_.root); !ok) return ok;
    const auto parent = parentDir();
    if (auto made = cgroupfs::makeDirectory(parent, "create agent cgroup"); !made) {
      return fail(made.error());
    }
    return enableControllers(parent);
  }

  Result<void> createTask(const std::string& task_id, const TaskLimits& limits) override {
    if (auto ok = checkTaskId(task_id); !ok) return ok;
    if (auto ok = checkLimits(limits); !ok) return ok;
    if (auto ok = init(); !ok) return ok;
    const auto dir = taskDir(task_id);
    if (auto made = cgroupfs::makeDirectory(dir, "create task cgroup"); !made) {
      return fail(made.error());
    }
    // The containers' cgroups below get the same controllers.
    if (auto ok = enableControllers(dir); !ok) return ok;

    if (limits.cpu_units && *limits.cpu_units > 0) {
      const int64_t period = options_.cpu_period.count();
      const int64_t quota = cfsQuotaUs(*limits.cpu_units, options_.cpu_period);
      if (auto ok = write("cpu", dir + "/cpu.max", fmt::format("{} {}", quota, period)); !ok) {
        return ok;
      }
    } else if (limits.container_cpu_shares > 0) {
      const auto weight = cpuSharesToWeight(limits.container_cpu_shares);
      if (auto ok = write("cpu", dir + "/cpu.weight", std::to_string(weight)); !ok) return ok;
    }
    if (limits.memory_bytes && *limits.memory_bytes > 0) {
      const auto value = std::to_string(*limits.memory_bytes);
      if (auto ok = write("memory", dir + "/memory.max", value); !ok) return ok;
    }
    if (options_.pids_limit > 0) {
      const auto value = std::to_string(options_.pids_limit);
      if (auto ok = write("pids", dir + "/pids.max", value); !ok) return ok;
    }
    return {};
  }

  Result<void> removeTask(const std::string& task_id) override {
    if (auto ok = checkTaskId(task_id); !ok) return ok;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    return cgroupfs::removeCgroup(taskDir(task_id), !cgroupfs_, deadline);
  }

  std::string containerCgroupsPath(const std::string& task_id,
                                   const std::string& container_id) const override {
    return fmt::format("/{}/{}/{}", options_.parent, task_id, container_id);
  }

  Result<CgroupStats> stats(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    const auto dir = options_.root + cgroups_path;
    if (!cgroupfs::isDirectory(dir)) {
      return fail(ErrorCode::kNotFound, "cgroup {} not found in {}", cgroups_path, options_.root);
    }

    CgroupStats stats;
    auto current = cgroupfs::readCounter(dir + "/memory.current");
    auto peak = cgroupfs::readCounter(dir + "/memory.peak");  // Linux 5.19+
    auto pids = cgroupfs::readCounter(dir + "/pids.current");
    for (const auto* r : {&current, &peak, &pids}) {
      if (!*r) return fail(r->error());
    }
    stats.memory_usage_bytes = *current;
    stats.memory_max_usage_bytes = *peak;
    stats.pids_current = *pids;

    auto max = cgroupfs::readOptionalFile(dir + "/memory.max");
    auto memory_stat = cgroupfs::readOptionalFile(dir + "/memory.stat");
    auto cpu_stat = cgroupfs::readOptionalFile(dir + "/cpu.stat");
    auto events = cgroupfs::readOptionalFile(dir + "/memory.events");
    for (const auto* r : {&max, &memory_stat, &cpu_stat, &events}) {
      if (!*r) return fail(r->error());
    }
    const auto limit = words(*max);
    if (limit.empty() || limit.front() == "max") {
      stats.memory_limit_bytes = UINT64_MAX;
    } else if (auto value = cgroupfs::parseUint(limit.front())) {
      stats.memory_limit_bytes = *value;
    } else {
      return fail(ErrorCode::kInternal, "parse {}/memory.max: {:?}", dir, *max);
    }
    stats.memory_cache_bytes = cgroupfs::keyedValue(*memory_stat, "file").value_or(0);
    stats.cpu_usage_ns = cgroupfs::keyedValue(*cpu_stat, "usage_usec").value_or(0) * 1000;
    stats.cpu_user_ns = cgroupfs::keyedValue(*cpu_stat, "user_usec").value_or(0) * 1000;
    stats.cpu_system_ns = cgroupfs::keyedValue(*cpu_stat, "system_usec").value_or(0) * 1000;
    stats.oom_kills = cgroupfs::keyedValue(*events, "oom_kill").value_or(0);
    return stats;
  }

  Result<std::vector<std::string>> listTasks() const override {
    return cgroupfs::subdirectories(parentDir());
  }

  Result<CgroupLimits> limits(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    const auto dir = options_.root + cgroups_path;
    if (!cgroupfs::isDirectory(dir)) {
      return fail(ErrorCode::kNotFound, "cgroup {} not found in {}", cgroups_path, options_.root);
    }

    CgroupLimits limits;
    // cpu.max: "<quota|max> <period>".
    auto cpu_max = cgroupfs::readOptionalFile(dir + "/cpu.max");
    if (!cpu_max) return fail(cpu_max.error());
    if (const auto fields = words(*cpu_max); !fields.empty()) {
      const auto quota = fields[0] == "max" ? std::optional(CgroupLimits::kUnlimited)
                                            : cgroupfs::parseUint(fields[0]);
      const auto period =
          fields.size() == 2 ? cgroupfs::parseUint(fields[1]) : std::optional<uint64_t>();
      if (!quota || !period) {
        return fail(ErrorCode::kInternal, "parse {}/cpu.max: {:?}", dir, *cpu_max);
      }
      limits.cpu_quota_us = *quota;
      limits.cpu_period_us = *period;
    }
    auto weight = cgroupfs::readCounter(dir + "/cpu.weight");
    auto memory = cgroupfs::readLimit(dir + "/memory.max");
    auto pids = cgroupfs::readLimit(dir + "/pids.max");
    for (const auto* r : {&weight, &memory, &pids}) {
      if (!*r) return fail(r->error());
    }
    limits.cpu_weight = *weight;
    limits.memory_limit_bytes = *memory;
    limits.pids_limit = *pids;
    return limits;
  }

  Result<std::vector<CgroupDirectory>> directories(const std::string& cgroups_path) const override {
    if (auto ok = checkCgroupsPath(cgroups_path); !ok) return fail(ok.error());
    return std::vector<CgroupDirectory>{{options_.root + cgroups_path, available_}};
  }

 private:
  std::string parentDir() const { return options_.root + "/" + options_.parent; }
  std::string taskDir(const std::string& task_id) const { return parentDir() + "/" + task_id; }

  // Enables the wanted, available controllers for the children of `dir` that are not yet enabled.
  Result<void> enableControllers(const std::string& dir) const {
    const auto path = dir + "/cgroup.subtree_control";
    auto current = cgroupfs::readOptionalFile(path);
    if (!current) return fail(current.error());
    std::vector<std::string> enabled;
    for (auto& word : words(*current)) {
      enabled.push_back(word.starts_with('+') ? word.substr(1) : std::move(word));
    }
    std::string change;
    for (const auto controller : kWanted) {
      if (!contains(available_, controller) || contains(enabled, controller)) continue;
      change += fmt::format("{}+{}", change.empty() ? "" : " ", controller);
    }
    if (change.empty()) return {};
    return cgroupfs::writeFile(path, change, !cgroupfs_);
  }

  // Writes a limit file of `controller`, which must be available.
  Result<void> write(std::string_view controller, const std::string& path,
                     const std::string& value) const {
    if (!contains(available_, controller)) {
      return fail(ErrorCode::kFailedPrecondition,
                  "write {} to {}: the {} controller is not available in {}/cgroup.controllers",
                  value, path, controller, options_.root);
    }
    return cgroupfs::writeFile(path, value, !cgroupfs_);
  }

  CgroupOptions options_;
  std::vector<std::string> available_;  // of kWanted, those in the root's cgroup.controllers
  bool cgroupfs_;
};

}  // namespace

uint64_t cpuSharesToWeight(int64_t shares) {
  if (shares <= 0) return 0;
  const auto clamped = static_cast<uint64_t>(clampCpuShares(shares));
  return 1 + ((clamped - 2) * 9999) / 262142;
}

Result<std::unique_ptr<CgroupManager>> makeCgroupV2(const CgroupOptions& options) {
  auto controllers = cgroupfs::readFile(options.root + "/cgroup.controllers");
  if (!controllers) return fail(controllers.error().wrap("cgroup v2"));
  const auto offered = words(*controllers);
  std::vector<std::string> available;
  for (const auto controller : kWanted) {
    if (contains(offered, controller)) {
      available.emplace_back(controller);
    } else {
      spdlog::warn("cgroup v2: {} controller not available in {}/cgroup.controllers", controller,
                   options.root);
    }
  }
  if (options.pids_limit > 0 && !contains(available, "pids")) {
    return fail(ErrorCode::kFailedPrecondition,
                "cgroup v2: a task pids limit is set but the pids controller is not available "
                "in {}/cgroup.controllers",
                options.root);
  }
  return std::make_unique<CgroupV2>(options, std::move(available),
                                    cgroupfs::isCgroupFs(options.root));
}

}  // namespace ecs::cgroups
