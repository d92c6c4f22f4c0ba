// AgentEndpoints: the agent's HTTP endpoints as one unit — the task endpoint server (credentials
// and task metadata, 127.0.0.1:51679), introspection (127.0.0.1:51678) and, when enabled,
// Prometheus /metrics (51680) — with the TaskDirectory they read and the MetricsRegistry the rest
// of the agent can feed. The task endpoint server runs on threads of its own (see http_server.h);
// introspection and metrics share one more.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "agent/credentials/credentials_store.h"
#include "agent/endpoints/http_server.h"
#include "agent/endpoints/introspection.h"
#include "agent/endpoints/rate_limiter.h"
#include "agent/endpoints/task_directory.h"
#include "agent/endpoints/task_server.h"
#include "agent/metadata/stats_sampler.h"
#include "agent/metadata/task_metadata.h"
#include "agent/metrics/metrics_registry.h"

namespace ecs::endpoints {

struct EndpointsOptions {
  std::string task_server_address = "127.0.0.1";
  uint16_t task_server_port = 51679;  // 0 in tests
  int task_server_threads = 2;        // one per core of the 2-core target reaches ~50k req/s
  std::optional<RateLimit> rate_limit = RateLimit{40, 60};  // ECS_TASK_METADATA_RPS_LIMIT
  // Connections the task endpoint holds open (see http_server.h). Introspection and metrics, on
  // loopback only, hold at most kLoopbackServerConnections each.
  size_t task_server_max_connections_per_client = 64;
  size_t task_server_max_connections = 1024;
  size_t fd_reserve = 512;  // descriptors no server may take from the rest of the agent

  bool introspection = true;
  std::string introspection_address = "127.0.0.1";
  uint16_t introspection_port = 51678;

  bool prometheus_metrics = false;  // ECS_ENABLE_PROMETHEUS_METRICS
  std::string metrics_address = "127.0.0.1";
  uint16_t metrics_port = 51680;

  metadata::MetadataContext context;
  IntrospectionOptions introspection_options;
};

class AgentEndpoints {
 public:
  static constexpr size_t kLoopbackServerConnections = 64;

  // `stats` may be null (stats routes then answer {}); it is fed by update() too.
  AgentEndpoints(EndpointsOptions options, credentials::CredentialsStore& credentials,
                 metadata::StatsSampler* stats);
  ~AgentEndpoints();
  AgentEndpoints(const AgentEndpoints&) = delete;
  AgentEndpoints& operator=(const AgentEndpoints&) = delete;

  // Binds and starts every enabled server; an error names the one that failed.
  Result<void> start();
  void stop();

  // The engine's snapshot feed (TaskEngine::addSnapshotListener). Thread-safe.
  void update(const engine::TaskSnapshotPtr& task);
  // Called once the agent's state is loaded; until then lookups that miss answer 503.
  void setStateLoaded() { directory_.setStateLoaded(true); }

  TaskDirectory& directory() { return directory_; }
  metrics::MetricsRegistry& metrics() { return metrics_; }
  uint16_t taskServerPort() const;
  uint16_t introspectionPort() const;
  uint16_t metricsPort() const;
  // The task endpoint server's connection counters (zero before start()).
  HttpServerCounters taskServerCounters() const;

 private:
  void registerConnectionMetrics();

  EndpointsOptions options_;
  credentials::CredentialsStore& credentials_;
  metadata::StatsSampler* stats_;
  metrics::MetricsRegistry metrics_;
  TaskDirectory directory_;
  std::unique_ptr<TaskServer> task_handler_;
  std::unique_ptr<IntrospectionServer> introspection_handler_;
  std::unique_ptr<HttpServer> task_server_, introspection_server_, metrics_server_;

  // Pull metrics from snapshots: each task's pull phase is counted once.
  std::mutex pulls_mutex_;
  std::set<std::string> pulls_counted_;
  metrics::Family<metrics::Counter>* pulls_ = nullptr;
  metrics::Histogram* pull_duration_ = nullptr;
};

}  // namespace ecs::endpoints
