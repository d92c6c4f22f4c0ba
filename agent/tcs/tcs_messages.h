// The telemetry (TCS) requests the agent publishes, as pure functions: the CloudWatch-style stats
// sets computed from a container's usage samples, and the JSON envelopes of PublishMetricsRequest,
// PublishHealthRequest and PublishInstanceStatusRequest, split into chunks the service accepts.
// Nothing here touches the network, a clock or the kernel: TcsSession supplies the samples, ids and
// times, and signs and sends what comes back.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/engine/task_snapshot.h"
#include "agent/metadata/stats_sampler.h"

namespace ecs::tcs {

using SystemTime = std::chrono::system_clock::time_point;

// CWStatsSet: min, max, count and sum of the samples since the last publish.
struct CwStatsSet {
  double min = 0;
  double max = 0;
  double sum = 0;
  std::uint64_t sample_count = 0;
};

struct ContainerStatsSets {
  CwStatsSet cpu;               // percent of the whole host (all CPUs together make 100)
  CwStatsSet memory;            // MiB held (usage less reclaimable cache)
  std::uint64_t last_tick = 0;  // the newest sample used: pass as `after` next time
};

// The sets over `samples` (oldest first) newer than tick `after`. A CPU value needs the sample
// before it: 100 × Δ(cpu ns / online CPUs) / Δ(monotonic ns). Memory is (usage − cache) / 1 MiB,
// rounded down. nullopt unless there are at least two samples and at least one new CPU value
// (the service needs both sets).
std::optional<ContainerStatsSets> containerStatsSets(
    const std::vector<metadata::UsageSample>& samples, std::uint64_t after);

// --- PublishMetricsRequest -----------------------------------------------------------------------

struct ContainerMetric {
  std::string container_name;
  CwStatsSet cpu;
  CwStatsSet memory;
};

struct TaskMetric {
  std::string task_arn;
  std::string cluster_arn;
  std::string family;
  std::string version;  // the revision, as a string
  std::vector<ContainerMetric> containers;
};

struct RequestIdentity {
  std::string cluster;             // as configured
  std::string container_instance;  // the container instance ARN
};

struct ChunkLimits {
  std::size_t max_tasks = 10;           // the model's bound on taskMetrics and tasks
  std::size_t max_bytes = 1024 * 1024;  // one serialized envelope
};

// The envelopes of one publish, in order: all share `message_id`; `instance_metrics` (when given)
// goes only in the first, `fin` is true only on the last. No tasks makes one idle request
// (idle:true, fin:true). A task too large for max_bytes on its own goes alone in its chunk.
std::vector<std::string> metricsRequests(
    const RequestIdentity& identity, const std::string& message_id,
    const std::vector<TaskMetric>& tasks, SystemTime now,
    const std::optional<boost::json::object>& instance_metrics = std::nullopt,
    ChunkLimits limits = {});

// --- PublishHealthRequest ------------------------------------------------------------------------

struct ContainerHealth {
  std::string container_name;
  engine::HealthStatus status = engine::HealthStatus::kUnknown;
  SystemTime since;
  std::string message;  // empty: left out
};

struct TaskHealth {
  std::string task_arn;
  std::string cluster_arn;
  std::string family;
  std::string version;
  std::vector<ContainerHealth> containers;
};

// Chunks of at most limits.max_tasks tasks sharing `message_id`, fin on the last; none for no
// tasks.
std::vector<std::string> healthRequests(const RequestIdentity& identity,
                                        const std::string& message_id,
                                        const std::vector<TaskHealth>& tasks, SystemTime now,
                                        ChunkLimits limits = {});

// --- PublishInstanceStatusRequest ----------------------------------------------------------------

enum class InstanceStatusValue { kOk, kImpaired, kInsufficientData, kInitializing };
std::string_view toString(InstanceStatusValue status);

struct InstanceStatus {
  std::string type;  // "ContainerRuntime", "Agent"
  InstanceStatusValue status = InstanceStatusValue::kOk;
  std::string reason;  // empty: left out
  SystemTime last_updated;
  SystemTime last_status_change;
};

std::string instanceStatusRequest(const RequestIdentity& identity, const std::string& request_id,
                                  const std::vector<InstanceStatus>& statuses, SystemTime now);

// --- wire helpers --------------------------------------------------------------------------------

// Epoch seconds with a millisecond fraction, as a JSON number (1700000000.123).
boost::json::value timestampJson(SystemTime time);

}  // namespace ecs::tcs
