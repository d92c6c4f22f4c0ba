#include "cgroups/task_limits.h"

#include <algorithm>

#include "cgroups/cgroupfs.h"

namespace ecs::cgroups {

Result<void> checkTaskId(std::string_view task_id) {
  if (cgroupfs::isSafeName(task_id)) return {};
  return fail(ErrorCode::kInvalidArgument,
              "task ID {:?} is not a single safe path component ([A-Za-z0-9_.-], not starting "
              "with '.', at most 255 bytes)",
              task_id);
}

Result<void> checkCgroupsPath(std::string_view cgroups_path) {
  const auto invalid = [&] {
    return fail(ErrorCode::kInvalidArgument,
                "cgroups path {:?} is not an absolute path of safe names", cgroups_path);
  };
  if (!cgroups_path.starts_with('/')) return invalid();
  auto rest = cgroups_path.substr(1);
  while (true) {
    const auto slash = rest.find('/');
    if (!cgroupfs::isSafeName(rest.substr(0, slash))) return invalid();
    if (slash == std::string_view::npos) return {};
    rest = rest.substr(slash + 1);
  }
}

Result<void> checkLimits(const TaskLimits& limits) {
  if (limits.cpu_units && *limits.cpu_units < 0) {
    return fail(ErrorCode::kInvalidArgument, "task cpu {} is negative", *limits.cpu_units);
  }
  if (limits.memory_bytes && *limits.memory_bytes < 0) {
    return fail(ErrorCode::kInvalidArgument, "task memory {} is negative", *limits.memory_bytes);
  }
  if (limits.container_cpu_shares < 0) {
    return fail(ErrorCode::kInvalidArgument, "container cpu shares {} are negative",
                limits.container_cpu_shares);
  }
  return {};
}

int64_t cfsQuotaUs(int cpu_units, std::chrono::microseconds period) {
  constexpr int64_t kMinCfsQuotaUs = 1000;
  return std::max(kMinCfsQuotaUs, int64_t{cpu_units} * period.count() / 1024);
}

int64_t clampCpuShares(int64_t shares) {
  return std::clamp<int64_t>(shares, 2, 262144);
}

}  // namespace ecs::cgroups
