// Introspection: the handler of the agent's introspection server (127.0.0.1:51678) —
// /v1/metadata and /v1/tasks[?taskarn=|?dockerid=] as the real agent answers them
// (docs/compatibility.md) — and of the Prometheus /metrics server.
#pragma once

#include <string>

#include "agent/endpoints/http_server.h"
#include "agent/endpoints/task_directory.h"
#include "agent/metadata/task_metadata.h"
#include "agent/metrics/metrics_registry.h"

namespace ecs::endpoints {

struct IntrospectionOptions {
  std::string version = "0.1.0";  // "Amazon ECS Agent - v<version> (<commit>)"
  std::string commit = "ecs-node-agent";
};

class IntrospectionServer {
 public:
  IntrospectionServer(const TaskDirectory& directory, metadata::MetadataContext context,
                      IntrospectionOptions options, metrics::MetricsRegistry* metrics);
  void handle(const HttpRequest& request, HttpResponse& response);

 private:
  const TaskDirectory& directory_;
  metadata::MetadataContext context_;
  IntrospectionOptions options_;
  metrics::Family<metrics::Counter>* requests_ = nullptr;
};

// /metrics in the Prometheus text format; anything else 404.
void handleMetrics(const metrics::MetricsRegistry& metrics, const HttpRequest& request,
                   HttpResponse& response);

// Registers the agent's own gauges — RSS, CPU seconds, threads (from /proc/self) — and tasks and
// containers by known status. Collected when /metrics is read.
void registerAgentMetrics(metrics::MetricsRegistry& metrics, const TaskDirectory& directory);

// The backend form of a task status in introspection ("PENDING", "RUNNING", "STOPPED").
std::string_view backendStatus(engine::ContainerStatus status);

}  // namespace ecs::endpoints
