#include "agent/endpoints/agent_endpoints.h"

namespace ecs::endpoints {

AgentEndpoints::AgentEndpoints(EndpointsOptions options, credentials::CredentialsStore& credentials,
                               metadata::StatsSampler* stats)
    : options_(std::move(options)), credentials_(credentials), stats_(stats) {
  task_handler_ = std::make_unique<TaskServer>(
      TaskServerDependencies{&directory_, &credentials_, stats_, &metrics_}, options_.context,
      options_.rate_limit);
  introspection_handler_ = std::make_unique<IntrospectionServer>(
      directory_, options_.context, options_.introspection_options, &metrics_);
  registerAgentMetrics(metrics_, directory_);
  registerConnectionMetrics();
  pulls_ = &metrics_.counter("ecs_container_image_pulls_total",
                             "Container images pulled for tasks (one per container).");
  pull_duration_ =
      &metrics_
           .histogram("ecs_task_pull_duration_seconds", "Time each task spent pulling its images.",
                      {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
           .get();
}

AgentEndpoints::~AgentEndpoints() {
  stop();
}

Result<void> AgentEndpoints::start() {
  // Starts one server into `slot`; on failure stops those already started.
  auto start = [this](std::unique_ptr<HttpServer>& slot, const char* name,
                      const std::string& address, uint16_t port, int threads,
                      HttpHandler handler) -> Result<void> {
    HttpServerOptions o;
    o.name = name;
    o.address = address;
    o.port = port;
    o.threads = threads;
    o.fd_reserve = options_.fd_reserve;
    if (&slot == &task_server_) {
      o.max_connections_per_client = options_.task_server_max_connections_per_client;
      o.max_connections = options_.task_server_max_connections;
    } else {
      o.max_connections_per_client = kLoopbackServerConnections;
      o.max_connections = kLoopbackServerConnections;
    }
    auto server = HttpServer::start(o, std::move(handler));
    if (!server) {
      stop();
      return fail(server.error());
    }
    slot = std::move(*server);
    return {};
  };
  if (auto started = start(
          task_server_, "task endpoint", options_.task_server_address, options_.task_server_port,
          options_.task_server_threads,
          [this](const HttpRequest& req, HttpResponse& res) { task_handler_->handle(req, res); });
      !started) {
    return started;
  }
  if (options_.introspection) {
    if (auto started = start(introspection_server_, "introspection", options_.introspection_address,
                             options_.introspection_port, 1,
                             [this](const HttpRequest& req, HttpResponse& res) {
                               introspection_handler_->handle(req, res);
                             });
        !started) {
      return started;
    }
  }
  if (options_.prometheus_metrics) {
    if (auto started =
            start(metrics_server_, "metrics", options_.metrics_address, options_.metrics_port, 1,
                  [this](const HttpRequest& req, HttpResponse& res) {
                    handleMetrics(metrics_, req, res);
                  });
        !started) {
      return started;
    }
  }
  return {};
}

void AgentEndpoints::stop() {
  if (task_server_) task_server_->stop();
  if (introspection_server_) introspection_server_->stop();
  if (metrics_server_) metrics_server_->stop();
}

void AgentEndpoints::update(const engine::TaskSnapshotPtr& task) {
  if (!task) return;
  directory_.update(task);
  if (stats_) stats_->update(task);
  std::lock_guard lock(pulls_mutex_);
  if (task->removed) {
    pulls_counted_.erase(task->arn);
    return;
  }
  if (task->pull_started_at && task->pull_stopped_at && !pulls_counted_.contains(task->arn)) {
    pulls_counted_.insert(task->arn);
    pull_duration_->observe(
        std::chrono::duration<double>(*task->pull_stopped_at - *task->pull_started_at).count());
    for (const auto& c : task->containers) {
      if (!c.image_id.empty()) pulls_->get().inc();
    }
  }
}

void AgentEndpoints::registerConnectionMetrics() {
  auto& open =
      metrics_.gauge("ecs_endpoint_connections", "Connections open, by server.", {"server"});
  auto& refused = metrics_.counter(
      "ecs_endpoint_connections_refused_total",
      "Connections reset at once because their client or the server was at its cap.", {"server"});
  auto& errors =
      metrics_.counter("ecs_endpoint_accept_errors_total",
                       "Failed accept() calls (out of descriptors or memory).", {"server"});
  metrics_.addCollector([this, &open, &refused, &errors] {
    auto collect = [&](const std::unique_ptr<HttpServer>& server, const std::string& name) {
      if (!server) return;
      auto c = server->counters();
      open.labels({name}).set(static_cast<double>(c.open));
      // The servers count; the registry's counters follow them.
      auto& r = refused.labels({name});
      r.inc(static_cast<double>(c.refused) - r.value());
      auto& e = errors.labels({name});
      e.inc(static_cast<double>(c.accept_errors) - e.value());
    };
    collect(task_server_, "task");
    collect(introspection_server_, "introspection");
    collect(metrics_server_, "metrics");
  });
}

HttpServerCounters AgentEndpoints::taskServerCounters() const {
  return task_server_ ? task_server_->counters() : HttpServerCounters{};
}

uint16_t AgentEndpoints::taskServerPort() const {
  return task_server_ ? task_server_->port() : 0;
}
uint16_t AgentEndpoints::introspectionPort() const {
  return introspection_server_ ? introspection_server_->port() : 0;
}
uint16_t AgentEndpoints::metricsPort() const {
  return metrics_server_ ? metrics_server_->port() : 0;
}

}  // namespace ecs::endpoints
