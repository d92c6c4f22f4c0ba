// Task cgroups on cgroup v2: one unified tree at the root, controllers enabled per level through
// cgroup.subtree_control. Internal to the module; callers use CgroupManager::create.
#pragma once

#include <cstdint>
#include <memory>

#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {

// cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], linearly, as systemd and runc up to
// 1.3.1 do: 1 + ((shares - 2) * 9999) / 262142 (so 1024 shares is weight 39). Shares out of range
// are clamped first; 0 means unset and stays 0.
uint64_t cpuSharesToWeight(int64_t shares);

// Uses cpu, memory and pids where the root's cgroup.controllers offers them; a limit whose
// controller is missing fails createTask.
Result<std::unique_ptr<CgroupManager>> makeCgroupV2(const CgroupOptions& options);

}  // namespace ecs::cgroups
