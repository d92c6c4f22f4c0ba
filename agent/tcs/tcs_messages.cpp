#include "agent/tcs/tcs_messages.h"

#include <algorithm>
#include <cmath>

namespace ecs::tcs {

namespace json = boost::json;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

void add(CwStatsSet& set, double value) {
  if (set.sample_count == 0) {
    set.min = set.max = value;
  } else {
    set.min = std::min(set.min, value);
    set.max = std::max(set.max, value);
  }
  set.sum += value;
  ++set.sample_count;
}

json::object statsSetJson(const CwStatsSet& set) {
  return json::object{
      {"min", set.min}, {"max", set.max}, {"sampleCount", set.sample_count}, {"sum", set.sum}};
}

json::object taskMetricJson(const TaskMetric& task) {
  json::array containers;
  for (const auto& c : task.containers) {
    containers.push_back(json::object{{"containerName", c.container_name},
                                      {"cpuStatsSet", statsSetJson(c.cpu)},
                                      {"memoryStatsSet", statsSetJson(c.memory)}});
  }
  return json::object{{"taskArn", task.task_arn},
                      {"clusterArn", task.cluster_arn},
                      {"taskDefinitionFamily", task.family},
                      {"taskDefinitionVersion", task.version},
                      {"containerMetrics", std::move(containers)}};
}

std::string envelope(std::string_view type, json::object message) {
  return json::serialize(json::object{{"type", type}, {"message", std::move(message)}});
}

std::string metricsChunk(const RequestIdentity& identity, const std::string& message_id,
                         const json::array& tasks, bool idle, bool fin, SystemTime now,
                         const json::object* instance_metrics) {
  json::object message{{"metadata", json::object{{"cluster", identity.cluster},
                                                 {"containerInstance", identity.container_instance},
                                                 {"messageId", message_id},
                                                 {"idle", idle},
                                                 {"fin", fin}}}};
  if (instance_metrics != nullptr) message["instanceMetrics"] = *instance_metrics;
  if (!idle) message["taskMetrics"] = tasks;
  message["timestamp"] = timestampJson(now);
  return envelope("PublishMetricsRequest", std::move(message));
}

std::string_view healthString(engine::HealthStatus status) {
  switch (status) {
    case engine::HealthStatus::kHealthy:
      return "HEALTHY";
    case engine::HealthStatus::kUnhealthy:
      return "UNHEALTHY";
    case engine::HealthStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

json::object taskHealthJson(const TaskHealth& task) {
  json::array containers;
  for (const auto& c : task.containers) {
    json::object container{{"containerName", c.container_name},
                           {"healthStatus", healthString(c.status)},
                           {"statusSince", timestampJson(c.since)}};
    if (!c.message.empty()) container["statusMessage"] = c.message;
    containers.push_back(std::move(container));
  }
  return json::object{{"taskArn", task.task_arn},
                      {"clusterArn", task.cluster_arn},
                      {"taskDefinitionFamily", task.family},
                      {"taskDefinitionVersion", task.version},
                      {"containers", std::move(containers)}};
}

}  // namespace

json::value timestampJson(SystemTime time) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
  return json::value(static_cast<double>(ms) / 1000.0);
}

std::optional<ContainerStatsSets> containerStatsSets(
    const std::vector<metadata::UsageSample>& samples, std::uint64_t after) {
  if (samples.size() < 2) return std::nullopt;
  ContainerStatsSets out;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    if (s.tick <= after) continue;
    out.last_tick = std::max(out.last_tick, s.tick);
    std::uint64_t held = s.memory_usage_bytes > s.memory_cache_bytes
                             ? s.memory_usage_bytes - s.memory_cache_bytes
                             : 0;
    add(out.memory, static_cast<double>(held / kMiB));
    if (i == 0) continue;
    const auto& p = samples[i - 1];
    auto wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s.read - p.read).count();
    // A counter that went backwards belongs to another cgroup (a restarted container).
    if (wall_ns <= 0 || s.cpu_usage_ns < p.cpu_usage_ns) continue;
    double cpus = static_cast<double>(std::max<std::uint32_t>(s.online_cpus, 1));
    double used = static_cast<double>(s.cpu_usage_ns - p.cpu_usage_ns) / cpus;
    add(out.cpu, 100.0 * used / static_cast<double>(wall_ns));
  }
  if (out.cpu.sample_count == 0) return std::nullopt;
  return out;
}

std::vector<std::string> metricsRequests(const RequestIdentity& identity,
                                         const std::string& message_id,
                                         const std::vector<TaskMetric>& tasks, SystemTime now,
                                         const std::optional<json::object>& instance_metrics,
                                         ChunkLimits limits) {
  const json::object* instance = instance_metrics ? &*instance_metrics : nullptr;
  if (tasks.empty()) {
    return {metricsChunk(identity, message_id, {}, true, true, now, instance)};
  }
  const std::size_t max_tasks = std::max<std::size_t>(limits.max_tasks, 1);
  // Chunks are sized with fin:false, the longer spelling, so the final one fits as well.
  std::vector<json::array> chunks(1);
  for (const auto& task : tasks) {
    json::value metric = taskMetricJson(task);
    auto& current = chunks.back();
    if (!current.empty()) {
      bool full = current.size() >= max_tasks;
      if (!full) {
        current.push_back(metric);
        full = metricsChunk(identity, message_id, current, false, false, now,
                            chunks.size() == 1 ? instance : nullptr)
                   .size() > limits.max_bytes;
        current.pop_back();
      }
      if (full) chunks.emplace_back();
    }
    chunks.back().push_back(std::move(metric));
  }
  std::vector<std::string> out;
  out.reserve(chunks.size());
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    out.push_back(metricsChunk(identity, message_id, chunks[i], false, i + 1 == chunks.size(), now,
                               i == 0 ? instance : nullptr));
  }
  return out;
}

std::vector<std::string> healthRequests(const RequestIdentity& identity,
                                        const std::string& message_id,
                                        const std::vector<TaskHealth>& tasks, SystemTime now,
                                        ChunkLimits limits) {
  std::vector<std::string> out;
  const std::size_t max_tasks = std::max<std::size_t>(limits.max_tasks, 1);
  for (std::size_t begin = 0; begin < tasks.size(); begin += max_tasks) {
    std::size_t end = std::min(tasks.size(), begin + max_tasks);
    json::array chunk;
    for (std::size_t i = begin; i < end; ++i) chunk.push_back(taskHealthJson(tasks[i]));
    json::object message{
        {"metadata", json::object{{"cluster", identity.cluster},
                                  {"containerInstance", identity.container_instance},
                                  {"messageId", message_id},
                                  {"fin", end == tasks.size()}}},
        {"tasks", std::move(chunk)},
        {"timestamp", timestampJson(now)}};
    out.push_back(envelope("PublishHealthRequest", std::move(message)));
  }
  return out;
}

std::string_view toString(InstanceStatusValue status) {
  switch (status) {
    case InstanceStatusValue::kOk:
      return "OK";
    case InstanceStatusValue::kImpaired:
      return "IMPAIRED";
    case InstanceStatusValue::kInsufficientData:
      return "INSUFFICIENT_DATA";
    case InstanceStatusValue::kInitializing:
      return "INITIALIZING";
  }
  return "INSUFFICIENT_DATA";
}

std::string instanceStatusRequest(const RequestIdentity& identity, const std::string& request_id,
                                  const std::vector<InstanceStatus>& statuses, SystemTime now) {
  json::array list;
  for (const auto& s : statuses) {
    json::object status{{"type", s.type}, {"status", toString(s.status)}};
    if (!s.reason.empty()) status["statusReason"] = s.reason;
    status["lastUpdated"] = timestampJson(s.last_updated);
    status["lastStatusChange"] = timestampJson(s.last_status_change);
    list.push_back(std::move(status));
  }
  json::object message{{"metadata", json::object{{"cluster", identity.cluster},
                                                 {"containerInstance", identity.container_instance},
                                                 {"requestId", request_id}}},
                       {"statuses", std::move(list)},
                       {"timestamp", timestampJson(now)}};
  return envelope("PublishInstanceStatusRequest", std::move(message));
}

}  // namespace ecs::tcs
