// StatsSampler: Docker-stats-shaped container stats (cpu_stats, precpu_stats, memory_stats,
// blkio_stats, networks, pids_stats) read from the containers' cgroups and network namespaces,
// for every running container, from ONE timer — not a stream per container (the real agent
// burned a core on 150 containers that way). Each tick reads every container once on the
// sampler's own worker thread and keeps the last two samples; readers (the metadata endpoints)
// get the published JSON under a mutex and never touch the kernel.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_snapshot.h"

namespace ecs::metadata {

// One interface's counters, as /proc/net/dev has them.
struct NetDevCounters {
  uint64_t rx_bytes = 0, rx_packets = 0, rx_errors = 0, rx_dropped = 0;
  uint64_t tx_bytes = 0, tx_packets = 0, tx_errors = 0, tx_dropped = 0;
};
using NetDevMap = std::map<std::string, NetDevCounters>;

// The interfaces of the text of /proc/net/dev (loopback included; callers drop it).
NetDevMap parseProcNetDev(std::string_view text);

// Reads /proc/net/dev inside the network namespace at `netns_path` (a /run/netns path): enters it
// with setns(2) on the calling thread, reads /proc/thread-self/net/dev, and goes back. The snapshot
// has no pid to read /proc/<pid>/net/dev through, so the sampler's own thread does this.
Result<NetDevMap> readNetDevInNetns(const std::string& netns_path);

// Reads an interface table for a namespace path; tests inject a fake.
using NetDevReader = std::function<Result<NetDevMap>(const std::string& netns_path)>;

// The raw numbers behind one container's CloudWatch-style usage (what the telemetry session
// publishes), from one tick. `tick` increases with every tick of the sampler, so a reader can tell
// which samples it has already used.
struct UsageSample {
  uint64_t tick = 0;
  std::chrono::steady_clock::time_point read;  // monotonic: CPU rates divide by its deltas
  uint64_t cpu_usage_ns = 0;                   // cumulative, all CPUs
  uint32_t online_cpus = 0;                    // the host's
  uint64_t memory_usage_bytes = 0;
  // What the kernel can reclaim without the container noticing: memory.stat's `cache` on v1,
  // `inactive_file` on v2. Usage minus this is the memory the container holds.
  uint64_t memory_cache_bytes = 0;
};

struct StatsSamplerOptions {
  // v1 hierarchies under it (cpu,cpuacct / memory / blkio / pids), or v2 unified.
  std::string cgroup_root = "/sys/fs/cgroup";
  std::chrono::milliseconds interval{1000};
  // Usage samples kept per container for usageSamples() (the oldest dropped first).
  size_t usage_history = 80;
  // Where stat and meminfo are read (system_cpu_usage, online_cpus, the memory limit's cap).
  std::string proc_root = "/proc";
  // Empty: readNetDevInNetns.
  NetDevReader net_dev_reader;
};

class StatsSampler {
 public:
  // Reads on a worker thread of its own, publishes under a mutex.
  StatsSampler(boost::asio::io_context& io, StatsSamplerOptions options);
  ~StatsSampler();
  StatsSampler(const StatsSampler&) = delete;
  StatsSampler& operator=(const StatsSampler&) = delete;

  // Thread-safe; running containers are sampled, removed tasks forgotten.
  void update(const engine::TaskSnapshotPtr& task);
  void start();
  void stop();
  // Docker StatsJSON (v3) / with network_rate_stats (v4); nullopt when not sampled yet.
  std::optional<boost::json::object> containerStats(std::string_view runtime_id, bool v4) const;
  // runtime_id -> stats object ({} for a container without stats), for /task/stats.
  boost::json::object taskStats(const engine::TaskSnapshot& task, bool v4) const;

  // The container's last usage_history usage samples, oldest first; empty when it has none.
  // Thread-safe.
  std::vector<UsageSample> usageSamples(std::string_view runtime_id) const;

  // One tick on the calling thread, now (what the worker does every interval). For tests, and
  // for a caller that wants fresh numbers without waiting; the default network reader enters
  // namespaces on the calling thread for the moment of the read.
  void sampleOnce();
  // How long the last tick took and how many containers it read, for the agent's own metrics.
  std::chrono::microseconds lastTickDuration() const;  // wall time
  std::chrono::microseconds lastTickCpuTime() const;   // the reading thread's cpu time
  size_t lastTickContainers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::metadata
