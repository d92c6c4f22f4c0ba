// Task cgroups on cgroup v1: one hierarchy per controller (or per group of co-mounted controllers)
// under the root, e.g. /sys/fs/cgroup/{cpu,cpuacct,memory,pids,...}. Internal to the module;
// callers use CgroupManager::create.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {

// One mounted hierarchy directly under the root.
struct V1Hierarchy {
  std::string path;                      // its mount point, e.g. /sys/fs/cgroup/cpu,cpuacct
  std::vector<std::string> controllers;  // "cpu", "cpuacct"; "name=systemd"; none for cgroup2
  bool cgroupfs = true;                  // false for a plain directory tree (tests)

  bool has(std::string_view controller) const;
};

// The cgroup and cgroup2 mounts whose mount point is a direct child of `root` (already canonical),
// from the text of /proc/self/mountinfo, in mount order.
std::vector<V1Hierarchy> parseV1Mounts(std::string_view mountinfo, const std::string& root);

// The hierarchies under `root`: from /proc/self/mountinfo when cgroup filesystems are mounted
// there, otherwise from the directories in `root`, whose names list their controllers
// ("cpu,cpuacct"); symlinks (cpu -> cpu,cpuacct) are followed and counted once.
Result<std::vector<V1Hierarchy>> discoverV1Hierarchies(const std::string& root);

// Needs the cpu and memory controllers; cpuacct and pids are used when mounted (pids is required
// when options.pids_limit is set).
//
// Limits go to the hierarchies of cpu, cpuacct, memory and pids. Removal and listing cover every
// hierarchy under the root, because runc creates a container's cgroup path in all of them
// (blkio, devices, freezer, name=systemd, the hybrid cgroup2 mount ...) and, when the container
// is deleted, removes only the container's own directory, not `/<parent>/<taskId>` above it.
Result<std::unique_ptr<CgroupManager>> makeCgroupV1(const CgroupOptions& options,
                                                    std::vector<V1Hierarchy> hierarchies);

}  // namespace ecs::cgroups
