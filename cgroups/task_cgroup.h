// Task-level cgroups: the parent cgroup that holds a task's containers and carries the task's
// `cpu` and `memory` limits (the real agent's task cgroup, `/ecs/<taskId>`), on cgroup v1 and v2.
//
// Containers are placed in it by giving runc `linux.cgroupsPath = containerCgroupsPath(...)`.
// Paths are cgroupfs-style on both versions (containerd's runc shim drives cgroupfs here, not
// systemd), so the same `/ecs/<taskId>/<container>` names work on v1 and v2.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::cgroups {

enum class Version { kV1, kV2 };

struct CgroupOptions {
  std::string root = "/sys/fs/cgroup";  // ECS_CGROUP_PATH
  std::string parent = "ecs";           // agent's top-level cgroup under each controller (one name)
  std::chrono::microseconds cpu_period{100000};  // ECS_CGROUP_CPU_PERIOD, within [1 ms, 1 s]
  int64_t pids_limit = 0;                        // ECS_TASK_PIDS_LIMIT (0: none)
};

struct TaskLimits {
  std::optional<int> cpu_units;         // task cpu: CFS quota = units/1024 * period
  std::optional<int64_t> memory_bytes;  // task memory: hard limit
  int64_t container_cpu_shares = 0;     // without task cpu: Σ max(container cpu, 2), ≤ 262144
};

// Usage of one cgroup (a task's or a container's), in the units the kernel reports.
struct CgroupStats {
  uint64_t memory_usage_bytes = 0;
  uint64_t memory_max_usage_bytes = 0;  // v1 max_usage_in_bytes; v2 memory.peak (0 before 5.19)
  uint64_t memory_limit_bytes = 0;      // "max"/unlimited: UINT64_MAX
  uint64_t memory_cache_bytes = 0;      // v1 stat "total_cache" (or "cache"), v2 stat "file"
  uint64_t cpu_usage_ns = 0;            // total
  uint64_t cpu_user_ns = 0;
  uint64_t cpu_system_ns = 0;
  uint64_t pids_current = 0;
  // OOM kills in this cgroup and below: v2 memory.events oom_kill; v1 memory.oom_control
  // oom_kill summed over the subtree (v1 counts a kill only in the victim's own cgroup).
  uint64_t oom_kills = 0;
};

// The limits a cgroup carries now, as the kernel reports them: for checks and diagnostics (the
// agent sets limits through createTask). A limit that is off, or whose control file is missing
// (its controller is not mounted or not enabled there), reads as kUnlimited.
struct CgroupLimits {
  static constexpr uint64_t kUnlimited = UINT64_MAX;
  uint64_t cpu_quota_us = kUnlimited;        // v1 cpu.cfs_quota_us, v2 cpu.max (first field)
  uint64_t cpu_period_us = 0;                // v1 cpu.cfs_period_us, v2 cpu.max (second field)
  uint64_t cpu_shares = 0;                   // v1 cpu.shares; 0 on v2
  uint64_t cpu_weight = 0;                   // v2 cpu.weight; 0 on v1
  uint64_t memory_limit_bytes = kUnlimited;  // v1 memory.limit_in_bytes, v2 memory.max
  uint64_t pids_limit = kUnlimited;          // pids.max
};

// One directory that holds a cgroup on this host, and the controllers whose files it has.
struct CgroupDirectory {
  std::string path;                      // e.g. /sys/fs/cgroup/memory/ecs/<taskId>/<container>
  std::vector<std::string> controllers;  // v1: its hierarchy's ("cpu", "cpuacct", "name=systemd",
                                         // none for a hybrid cgroup2 mount); v2: cpu, memory and
                                         // pids, those the root offers
};

// Holds no mutable state after create(): calls for different tasks may run concurrently. The
// methods do blocking file I/O (removeTask may wait ~1 s), so run them off the engine's strand.
class CgroupManager {
 public:
  // Detects the version from `root`: a cgroup2 mount (cgroup.controllers at the root) is v2,
  // otherwise v1 with one hierarchy per controller (cpu,cpuacct / memory / pids ...), found in
  // /proc/self/mountinfo, or from the directory names when `root` is a plain tree (tests).
  // v1 needs cpu and memory; pids only when options.pids_limit is set.
  static Result<std::unique_ptr<CgroupManager>> create(const CgroupOptions& options);
  virtual ~CgroupManager() = default;

  virtual Version version() const = 0;
  // Creates the agent's parent cgroup where missing (v2: enables cpu, memory, pids for children).
  virtual Result<void> init() = 0;
  // Creates `/<parent>/<taskId>` with the limits (and the parent, as init does). Idempotent: an
  // existing cgroup gets the limits. kInvalidArgument for a task ID that is not one safe path
  // component ([A-Za-z0-9_.-], not starting with '.'). On failure, what was made stays for
  // removeTask. Task cpu is a CFS quota of at least 1 ms (the kernel's minimum).
  virtual Result<void> createTask(const std::string& task_id, const TaskLimits& limits) = 0;
  // Removes the task's cgroup and any (empty) container cgroups left in it, deepest first, in
  // every hierarchy (v1: also blkio, devices, freezer ..., where runc leaves `/<parent>/<taskId>`
  // behind). Missing: fine. A cgroup still busy after ~1 s of retries (live processes) is a
  // kFailedPrecondition error naming it; the other hierarchies are still cleaned.
  virtual Result<void> removeTask(const std::string& task_id) = 0;
  // The OCI `linux.cgroupsPath` for a container of the task: "/<parent>/<taskId>/<name>".
  virtual std::string containerCgroupsPath(const std::string& task_id,
                                           const std::string& container_id) const = 0;
  // Usage of a cgroup given by the path above (or "/<parent>/<taskId>" for the whole task).
  // kNotFound if the cgroup does not exist; counters whose files are missing are 0.
  virtual Result<CgroupStats> stats(const std::string& cgroups_path) const = 0;
  // Task IDs with a cgroup under the parent (for the leak sweeper); v1: in any hierarchy.
  virtual Result<std::vector<std::string>> listTasks() const = 0;
  // The limits of a cgroup given by a path as for stats(). kNotFound if the cgroup does not
  // exist; kInternal naming the file if a value does not parse.
  virtual Result<CgroupLimits> limits(const std::string& cgroups_path) const = 0;
  // Where a cgroups path (as for stats()) lives on this host, whether or not it exists yet: v1 one
  // directory in every hierarchy under the root, as runc creates a container's cgroup in all of
  // them; v2 the one directory. For placing a process the way runc does (each directory's
  // cgroup.procs) and for tools that inspect a task; kInvalidArgument for a malformed path.
  virtual Result<std::vector<CgroupDirectory>> directories(
      const std::string& cgroups_path) const = 0;
};

}  // namespace ecs::cgroups
