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
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/engine/task_snapshot.h"

namespace ecs::metadata {

struct StatsSamplerOptions {
  // v1 hierarchies under it (cpu,cpuacct / memory / blkio / pids), or v2 unified.
  std::string cgroup_root = "/sys/fs/cgroup";
  std::chrono::milliseconds interval{1000};
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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::metadata
