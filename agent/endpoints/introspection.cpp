#include "agent/endpoints/introspection.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "agent/endpoints/http_util.h"

namespace ecs::endpoints {

namespace json = boost::json;

std::string_view backendStatus(engine::ContainerStatus status) {
  switch (status) {
    case engine::ContainerStatus::kRunning:
      return "RUNNING";
    case engine::ContainerStatus::kStopped:
      return "STOPPED";
    default:
      return "PENDING";
  }
}

IntrospectionServer::IntrospectionServer(const TaskDirectory& directory,
                                         metadata::MetadataContext context,
                                         IntrospectionOptions options,
                                         metrics::MetricsRegistry* metrics)
    : directory_(directory), context_(std::move(context)), options_(std::move(options)) {
  if (metrics) {
    requests_ =
        &metrics->counter("ecs_endpoint_requests_total", "Requests to the agent's HTTP endpoints.",
                          {"server", "path", "status"});
  }
}

namespace {

// Copies the keys introspection shares with the v2 container response, in its order.
json::object introspectionContainer(const json::object& v2) {
  json::object out;
  for (std::string_view key : {"DockerId", "DockerName", "Name", "Image", "ImageID"}) {
    auto* v = v2.if_contains(key);
    out[key] = v ? *v : json::value("");
  }
  for (std::string_view key : {"CreatedAt", "StartedAt", "Ports", "Networks", "Volumes"}) {
    if (auto* v = v2.if_contains(key)) out[key] = *v;
  }
  return out;
}

const char kEmptyTaskResponse[] =
    R"({"Arn":"","DesiredStatus":"","KnownStatus":"","Family":"","Version":"","Containers":null})";

}  // namespace

void IntrospectionServer::handle(const HttpRequest& request, HttpResponse& response) {
  auto [raw_path, query] = splitTarget(request.target);
  std::string path = percentDecode(raw_path).value_or(std::string(raw_path));
  std::string_view label = "/";
  response.content_type = "application/json";
  auto task_object = [&](const engine::TaskSnapshot& task) {
    json::object t;
    t["Arn"] = task.arn;
    // The backend's view: a desired status the task has already passed is blanked.
    auto known = backendStatus(task.known);
    auto desired = backendStatus(task.desired);
    if ((known == "STOPPED" && desired != "STOPPED") ||
        (known == "RUNNING" && desired == "PENDING")) {
      desired = "";
    }
    t["DesiredStatus"] = desired;
    t["KnownStatus"] = known;
    t["Family"] = task.family;
    t["Version"] = std::to_string(task.revision);
    json::array containers;
    for (const auto& c : task.containers) {
      auto v2 = metadata::containerV2(task, c, context_);
      auto out = introspectionContainer(v2);
      if (c.restart_count > 0) out["RestartCount"] = c.restart_count;
      containers.push_back(std::move(out));
    }
    t["Containers"] = std::move(containers);
    return t;
  };

  if (path == "/v1/metadata") {
    label = "/v1/metadata";
    json::object body;
    body["Cluster"] = context_.cluster;
    body["ContainerInstanceArn"] = context_.container_instance_arn.empty()
                                       ? json::value(nullptr)
                                       : json::value(context_.container_instance_arn);
    body["Version"] = fmt::format("Amazon ECS Agent - v{} ({})", options_.version, options_.commit);
    response.status = 200;
    response.body = json::serialize(body);
  } else if (path == "/v1/tasks") {
    label = "/v1/tasks";
    auto docker_id = queryParam(query, "dockerid");
    auto task_arn = queryParam(query, "taskarn");
    if (docker_id && task_arn) {
      response.status = 400;
      response.body = kEmptyTaskResponse;
    } else if (task_arn) {
      auto task = directory_.byArn(*task_arn);
      response.status = task ? 200 : 404;
      response.body = task ? json::serialize(task_object(*task)) : kEmptyTaskResponse;
    } else if (docker_id) {
      auto ref = directory_.byContainerId(*docker_id);
      if (ref) {
        response.status = 200;
        response.body = json::serialize(task_object(*ref->task));
      } else {
        response.status = ref.error().code == ErrorCode::kInvalidArgument ? 400 : 404;
        response.body = kEmptyTaskResponse;
      }
    } else {
      json::array tasks;
      for (const auto& task : directory_.tasks()) tasks.push_back(task_object(*task));
      json::object body;
      body["Tasks"] = std::move(tasks);
      response.status = 200;
      response.body = json::serialize(body);
    }
  } else if (path == "/license") {
    label = "/license";
    response.status = 200;
    response.content_type = "text/plain; charset=utf-8";
    response.body =
        "ecs-node-agent\nLicensed under the Apache License, Version 2.0 "
        "(http://www.apache.org/licenses/LICENSE-2.0).\n";
  } else {
    response.status = 200;
    response.body = R"({"AvailableCommands":["/v1/metadata","/v1/tasks","/license"]})";
  }
  if (requests_) {
    requests_->labels({"introspection", std::string(label), std::to_string(response.status)}).inc();
  }
}

void handleMetrics(const metrics::MetricsRegistry& metrics, const HttpRequest& request,
                   HttpResponse& response) {
  auto [path, query] = splitTarget(request.target);
  if (path != "/metrics") {
    response.status = 404;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "404 page not found\n";
    return;
  }
  response.status = 200;
  response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  response.body = metrics.render();
}

namespace {

struct ProcessStats {
  double rss_bytes = 0;
  double cpu_seconds = 0;
  double threads = 0;
};

ProcessStats readProcessStats() {
  ProcessStats out;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return out;
  // Fields after the command name, which is in parentheses and may hold spaces.
  auto close = line.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream fields(line.substr(close + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // f[0] is field 3 (state): utime 14, stime 15, num_threads 20, rss 24 (pages).
  auto field = [&](size_t n) { return n - 3 < f.size() ? std::stod(f[n - 3]) : 0.0; };
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  out.cpu_seconds = (field(14) + field(15)) / ticks;
  out.threads = field(20);
  out.rss_bytes = field(24) * static_cast<double>(sysconf(_SC_PAGESIZE));
  return out;
}

}  // namespace

void registerAgentMetrics(metrics::MetricsRegistry& metrics, const TaskDirectory& directory) {
  auto& rss = metrics.gauge("ecs_agent_resident_memory_bytes", "The agent's resident set size.");
  auto& cpu = metrics.gauge("ecs_agent_cpu_seconds",
                            "CPU time (user + system) the agent has used since it started.");
  auto& threads = metrics.gauge("ecs_agent_threads", "The agent's threads.");
  auto& tasks = metrics.gauge("ecs_tasks", "Tasks by known status.", {"status"});
  auto& containers = metrics.gauge("ecs_containers", "Containers by known status.", {"status"});
  metrics.addCollector([&, &directory = directory] {
    auto p = readProcessStats();
    rss.get().set(p.rss_bytes);
    cpu.get().set(p.cpu_seconds);
    threads.get().set(p.threads);
    std::map<std::string, double> by_task, by_container;
    using S = engine::ContainerStatus;
    for (S s : {S::kNone, S::kManifestPulled, S::kPulled, S::kCreated, S::kRunning, S::kStopped}) {
      by_task[std::string(engine::toString(s))] = 0;
      by_container[std::string(engine::toString(s))] = 0;
    }
    for (const auto& task : directory.tasks()) {
      by_task[std::string(engine::toString(task->known))] += 1;
      for (const auto& c : task->containers) {
        by_container[std::string(engine::toString(c.known))] += 1;
      }
    }
    for (const auto& [status, n] : by_task) tasks.labels({status}).set(n);
    for (const auto& [status, n] : by_container) containers.labels({status}).set(n);
  });
}

}  // namespace ecs::endpoints
