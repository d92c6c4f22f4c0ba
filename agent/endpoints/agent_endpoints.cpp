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
  HttpServerOptions task_options;
  task_options.name = "task endpoint";
  task_options.address = options_.task_server_address;
  task_options.port = options_.task_server_port;
  task_options.threads = options_.task_server_threads;
  auto task = HttpServer::start(task_options, [this](const HttpRequest& req, HttpResponse& res) {
    task_handler_->handle(req, res);
  });
  if (!task) return fail(task.error());
  task_server_ = std::move(*task);

  if (options_.introspection) {
    HttpServerOptions o;
    o.name = "introspection";
    o.address = options_.introspection_address;
    o.port = options_.introspection_port;
    auto server = HttpServer::start(o, [this](const HttpRequest& req, HttpResponse& res) {
      introspection_handler_->handle(req, res);
    });
    if (!server) {
      stop();
      return fail(server.error());
    }
    introspection_server_ = std::move(*server);
  }
  if (options_.prometheus_metrics) {
    HttpServerOptions o;
    o.name = "metrics";
    o.address = options_.metrics_address;
    o.port = options_.metrics_port;
    auto server = HttpServer::start(o, [this](const HttpRequest& req, HttpResponse& res) {
      handleMetrics(metrics_, req, res);
    });
    if (!server) {
      stop();
      return fail(server.error());
    }
    metrics_server_ = std::move(*server);
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
