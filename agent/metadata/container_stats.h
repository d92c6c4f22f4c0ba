// One container's usage as read from its cgroup (v1 hierarchies or v2 unified) and the host's
// /proc, and the Docker StatsJSON built from two such samples. Internal to the metadata module:
// StatsSampler reads, the endpoints get JSON.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/common/result.h"
#include "agent/metadata/stats_sampler.h"

namespace ecs::metadata::stats {

struct CpuSample {
  uint64_t total_ns = 0;
  std::vector<uint64_t> percpu_ns;  // v1 only (cpuacct.usage_percpu)
  uint64_t kernel_ns = 0;
  uint64_t user_ns = 0;
  uint64_t system_ns = 0;  // the host's, from /proc/stat, as Docker's system_cpu_usage
  uint32_t online_cpus = 0;
  uint64_t periods = 0, throttled_periods = 0, throttled_ns = 0;
};

struct MemorySample {
  uint64_t usage = 0;
  uint64_t max_usage = 0;  // v1 only (Docker reports none on v2)
  uint64_t failcnt = 0;    // v1 only
  uint64_t limit = 0;      // capped at the host's memory, as Docker does
  std::vector<std::pair<std::string, uint64_t>> stats;  // memory.stat, in file order
};

struct BlkioEntry {
  uint64_t major = 0, minor = 0;
  std::string op;
  uint64_t value = 0;
};

struct Sample {
  std::chrono::system_clock::time_point read;
  CpuSample cpu;
  MemorySample memory;
  std::vector<BlkioEntry> io_service_bytes;
  std::vector<BlkioEntry> io_serviced;
  uint64_t pids_current = 0;
  uint64_t pids_limit = 0;            // 0: no limit
  std::optional<NetDevMap> networks;  // none: host mode, or no namespace to read
};

// Where a host keeps its cgroups: v2 when `root` is a unified mount (cgroup.controllers there),
// otherwise v1 with one directory per controller (cpu, cpuacct, memory, blkio, pids — the usual
// mount points or their symlinks to co-mounted hierarchies).
struct CgroupLayout {
  bool v2 = false;
  std::string root;
  static CgroupLayout detect(const std::string& root);
};

// The host-wide part of a sample, read once per tick: /proc/stat and /proc/meminfo.
struct HostSample {
  uint64_t system_cpu_ns = 0;
  uint32_t online_cpus = 0;
  uint64_t mem_total = 0;
};
Result<HostSample> readHost(const std::string& proc_root);

// The cgroup part of a sample for the cgroup at `cgroup_path` (relative to each hierarchy's
// root). kNotFound when the cgroup does not exist (the container is gone); a missing control
// file is a zero.
Result<Sample> readCgroup(const CgroupLayout& layout, const std::string& cgroup_path,
                          const HostSample& host);

// Docker's StatsJSON from the current sample and the one before (precpu_stats / preread; zeros
// when there is none, as Docker's first frame has), v4 with network_rate_stats.
boost::json::object toJson(const Sample& current, const Sample* previous, const std::string& id,
                           bool v4);

}  // namespace ecs::metadata::stats
