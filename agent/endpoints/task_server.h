// TaskServer: the request handler of the task endpoint server (127.0.0.1:51679, reached from
// containers as 169.254.170.2:80) — credentials v1/v2 and task metadata v2/v3/v4 — with the
// real agent's paths, status codes and error bodies (docs/compatibility.md), a per-client rate
// limit, and request counters. Handlers read the TaskDirectory, the
// CredentialsStore and the StatsSampler only; none of them blocks or logs per request.
#pragma once

#include <memory>
#include <optional>
#include <shared_mutex>
#include <unordered_map>

#include "agent/credentials/credentials_store.h"
#include "agent/endpoints/http_server.h"
#include "agent/endpoints/rate_limiter.h"
#include "agent/endpoints/task_directory.h"
#include "agent/metadata/stats_sampler.h"
#include "agent/metadata/task_metadata.h"
#include "agent/metrics/metrics_registry.h"

namespace ecs::endpoints {

struct TaskServerDependencies {
  TaskDirectory* directory = nullptr;
  credentials::CredentialsStore* credentials = nullptr;
  const metadata::StatsSampler* stats = nullptr;  // null: stats routes answer as "not sampled"
  metrics::MetricsRegistry* metrics = nullptr;    // null: no request counters
};

class TaskServer {
 public:
  // `rate_limit` nullopt: no limit (benchmarks).
  TaskServer(TaskServerDependencies deps, metadata::MetadataContext context,
             std::optional<RateLimit> rate_limit);

  void handle(const HttpRequest& request, HttpResponse& response);

 private:
  // Returns the route label for metrics ("/v4/<id>/task"), after filling `response`.
  std::string_view route(const HttpRequest& request, std::string_view path, std::string_view query,
                         HttpResponse& response);
  // `caller`: the peer's address, to tell which task asks.
  void credentials(std::string_view version, std::optional<std::string> id, std::string_view caller,
                   HttpResponse& response);
  std::string_view metadataV2(const HttpRequest& request, std::string_view rest,
                              HttpResponse& response);
  std::string_view metadataV3V4(int version, std::string_view rest, HttpResponse& response);
  metrics::Counter& requestCounter(std::string_view route, int status);

  TaskServerDependencies deps_;
  metadata::MetadataContext context_;
  std::optional<RateLimiter> limiter_;
  metrics::Family<metrics::Counter>* requests_ = nullptr;
  struct CounterKey {
    const char* route;
    int status;
    bool operator==(const CounterKey&) const = default;
  };
  struct CounterKeyHash {
    size_t operator()(const CounterKey& k) const {
      return std::hash<const void*>()(k.route) ^ static_cast<size_t>(k.status);
    }
  };
  std::shared_mutex counters_mutex_;
  std::unordered_map<CounterKey, metrics::Counter*, CounterKeyHash> counters_;
  metrics::Counter* throttled_ = nullptr;
};

}  // namespace ecs::endpoints
