// Checks and arithmetic shared by the v1 and v2 managers: what a task ID and a cgroups path may
// be, and how task limits become kernel values. Internal to the cgroups module.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "agent/common/result.h"
#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {

// A task ID must be one safe path component ([A-Za-z0-9_.-], not starting with '.', ≤ 255 bytes).
Result<void> checkTaskId(std::string_view task_id);
// A cgroups path ("/ecs/<taskId>[/<container>]") must be absolute and made of such names.
Result<void> checkCgroupsPath(std::string_view cgroups_path);
// No negative cpu, memory or shares.
Result<void> checkLimits(const TaskLimits& limits);

// The CFS quota for `cpu_units` (1024 = one CPU) per `period`: units * period / 1024, raised to the
// kernel's minimum of 1 ms.
int64_t cfsQuotaUs(int cpu_units, std::chrono::microseconds period);
// Container cpu shares summed for a task, clamped to the kernel's [2, 262144].
int64_t clampCpuShares(int64_t shares);

}  // namespace ecs::cgroups
