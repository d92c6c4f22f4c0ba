// `ecs-node-agent daemon` and `ecs-node-agent status`.
#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>

#include "agent/aws/http_client.h"
#include "agent/cli/commands.h"
#include "agent/daemon/daemon.h"

namespace ecs::cli {

int daemonCommand(const config::Config& config, const Args& args) {
  if (!args.empty()) {
    fmt::print(stderr, "usage: ecs-node-agent daemon\n");
    return 2;
  }
  daemon::DaemonOptions options;
  options.version = ECS_NODE_AGENT_VERSION;
  options.commit = "ecs-node-agent";
  return daemon::runDaemon(config, options);
}

namespace {

Result<boost::json::value> getJson(aws::HttpClient& http, const std::string& url) {
  aws::HttpRequest request;
  request.url = url;
  request.timeout = std::chrono::seconds(5);
  auto response = http.perform(request);
  if (!response) return fail(response.error().asError());
  if (response->status != 200) {
    return fail(ErrorCode::kUnavailable, "{}: HTTP {}", url, response->status);
  }
  boost::system::error_code ec;
  auto value = boost::json::parse(response->body, ec);
  if (ec) return fail(ErrorCode::kDataLoss, "{}: not JSON", url);
  return value;
}

std::string text(const boost::json::value& v, std::string_view key) {
  if (!v.is_object()) return "";
  auto* field = v.as_object().if_contains(key);
  return field && field->is_string() ? std::string(field->as_string()) : "";
}

}  // namespace

int statusCommand(const config::Config& config, const Args& args) {
  bool json = args.size() == 1 && args[0] == "--json";
  if (!args.empty() && !json) {
    fmt::print(stderr, "usage: ecs-node-agent status [--json]\n");
    return 2;
  }
  aws::HttpClient http;
  auto base = fmt::format("http://127.0.0.1:{}", config.introspection_port);
  auto metadata = getJson(http, base + "/v1/metadata");
  if (!metadata) {
    fmt::print(stderr, "the agent does not answer: {}\n", metadata.error().message);
    return 1;
  }
  auto tasks = getJson(http, base + "/v1/tasks");
  if (!tasks) {
    fmt::print(stderr, "the agent does not answer: {}\n", tasks.error().message);
    return 1;
  }
  if (json) {
    fmt::print("{}\n", boost::json::serialize(
                           boost::json::object{{"metadata", *metadata}, {"tasks", *tasks}}));
    return 0;
  }
  fmt::print("cluster:            {}\n", text(*metadata, "Cluster"));
  auto arn = text(*metadata, "ContainerInstanceArn");
  fmt::print("container instance: {}\n", arn.empty() ? "(not registered)" : arn);
  fmt::print("version:            {}\n", text(*metadata, "Version"));
  const boost::json::array* list = nullptr;
  if (tasks->is_object()) {
    if (auto* t = tasks->as_object().if_contains("Tasks"); t && t->is_array())
      list = &t->as_array();
  }
  fmt::print("tasks:              {}\n", list ? list->size() : 0);
  if (list) {
    for (const auto& task : *list) {
      fmt::print("  {}  {}:{}  known {}  desired {}\n", text(task, "Arn"), text(task, "Family"),
                 text(task, "Version"), text(task, "KnownStatus"), text(task, "DesiredStatus"));
    }
  }
  return 0;
}

}  // namespace ecs::cli
