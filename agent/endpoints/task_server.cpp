#include "agent/endpoints/task_server.h"

#include <boost/json.hpp>
#include <charconv>
#include <unordered_map>

#include "agent/endpoints/http_util.h"

namespace ecs::endpoints {

namespace json = boost::json;

namespace {

constexpr std::string_view kThrottledBody = "You have reached maximum request limit.";

void jsonString(HttpResponse& response, int status, std::string_view message) {
  response.status = status;
  response.content_type = "application/json";
  response.body = json::serialize(json::value(json::string(message)));
}

void notFoundPage(HttpResponse& response) {
  // What Go's http.NotFound answers for a path no route matches.
  response.status = 404;
  response.content_type = "text/plain; charset=utf-8";
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.body = "404 page not found\n";
}

void credentialsError(HttpResponse& response, int status, std::string_view code,
                      std::string message) {
  json::object body;
  body["code"] = code;
  body["message"] = std::move(message);
  body["HTTPErrorCode"] = status;
  response.status = status;
  response.content_type = "application/json";
  response.body = json::serialize(body);
}

// The first path segment of `rest` and what follows it ("abc/task" -> "abc", "/task").
std::pair<std::string_view, std::string_view> firstSegment(std::string_view rest) {
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) return {rest, {}};
  return {rest.substr(0, slash), rest.substr(slash)};
}

}  // namespace

TaskServer::TaskServer(TaskServerDependencies deps, metadata::MetadataContext context,
                       std::optional<RateLimit> rate_limit)
    : deps_(deps), context_(std::move(context)) {
  if (rate_limit) limiter_.emplace(*rate_limit);
  if (deps_.metrics) {
    requests_ = &deps_.metrics->counter("ecs_endpoint_requests_total",
                                        "Requests to the agent's HTTP endpoints.",
                                        {"server", "path", "status"});
    throttled_ =
        &deps_.metrics
             ->counter("ecs_endpoint_throttled_requests_total",
                       "Requests refused with 429 by the per-client rate limit.", {"server"})
             .labels({"task"});
  }
}

metrics::Counter& TaskServer::requestCounter(std::string_view route, int status) {
  // Route labels are string literals and statuses few: remembering the series by (literal,
  // status) makes the per-request cost a shared-locked hash lookup with no allocation.
  CounterKey key{route.data(), status};
  {
    std::shared_lock lock(counters_mutex_);
    if (auto it = counters_.find(key); it != counters_.end()) return *it->second;
  }
  char buf[8];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, status);
  (void)ec;
  auto& counter = requests_->labels({"task", std::string(route), std::string(buf, end)});
  std::unique_lock lock(counters_mutex_);
  counters_.emplace(key, &counter);
  return counter;
}

void TaskServer::handle(const HttpRequest& request, HttpResponse& response) {
  if (limiter_) {
    if (auto wait = limiter_->admit(request.remote_address)) {
      response.status = 429;
      response.content_type = "text/plain; charset=utf-8";
      response.body = kThrottledBody;
      auto seconds = std::max<int64_t>(1, (wait->count() + 999) / 1000);
      response.headers.emplace_back("Retry-After", std::to_string(seconds));
      if (throttled_) throttled_->inc();
      if (requests_) requestCounter("throttled", 429).inc();
      return;
    }
  }
  auto [raw_path, query] = splitTarget(request.target);
  auto decoded = percentDecode(raw_path);
  std::string_view label = "other";
  if (!decoded) {
    response.status = 400;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "400 Bad Request";
  } else if (auto clean = cleanPath(*decoded); clean != *decoded) {
    // gorilla/mux's path cleaning: redirect to the clean path, query kept.
    response.status = 301;
    response.content_type = "text/plain; charset=utf-8";
    std::string location = clean;
    if (!query.empty()) location += "?" + std::string(query);
    response.headers.emplace_back("Location", std::move(location));
  } else {
    label = route(request, *decoded, query, response);
  }
  if (requests_) requestCounter(label, response.status).inc();
}

std::string_view TaskServer::route(const HttpRequest& request, std::string_view path,
                                   std::string_view query, HttpResponse& response) {
  if (path == "/v1/credentials") {
    credentials("V1", queryParam(query, "id"), request.remote_address, response);
    return "/v1/credentials";
  }
  if (path.starts_with("/v2/credentials")) {
    auto rest = path.substr(std::string_view("/v2/credentials").size());
    if (!rest.empty() && rest.front() != '/') {
      notFoundPage(response);
      return "other";
    }
    // "/v2/credentials/<id>": the id is everything after the slash.
    std::optional<std::string> id;
    if (rest.size() > 1) id = std::string(rest.substr(1));
    credentials("V2", std::move(id), request.remote_address, response);
    return "/v2/credentials";
  }
  if (path.starts_with("/v2/")) return metadataV2(request, path.substr(4), response);
  if (path.starts_with("/v3/")) return metadataV3V4(3, path.substr(4), response);
  if (path.starts_with("/v4/")) return metadataV3V4(4, path.substr(4), response);
  notFoundPage(response);
  return "other";
}

void TaskServer::credentials(std::string_view version, std::optional<std::string> id,
                             std::string_view caller, HttpResponse& response) {
  auto prefix = fmt::format("Credentials{}Request: ", version);
  if (!id || id->empty()) {
    return credentialsError(response, 400, "NoIdInRequest",
                            prefix + "No Credential ID in the request");
  }
  auto entry = deps_.credentials->get(*id);
  // Execution-role credentials are the agent's own, held for pulls, secrets and logs on the
  // task's behalf: no container is given them, whatever id it presents.
  if (entry && entry->role_type == credentials::RoleType::kExecution) entry.reset();
  // A caller at a task's own address (bridge, awsvpc) gets only that task's credentials, even if
  // it learned another task's id. Callers the agent cannot place (host network) are served by id,
  // as the real agent serves everyone.
  if (entry) {
    if (auto owner = deps_.directory->byIp(caller); owner && owner->arn != entry->task_arn) {
      entry.reset();
    }
  }
  if (!entry) {
    if (!deps_.directory->stateLoaded()) {
      // Before the agent has restored its tasks, "not found" would be a lie a client acts on.
      return credentialsError(response, 503, "CredentialsUninitialized",
                              prefix + "Credentials uninitialized for ID");
    }
    return credentialsError(response, 400, "InvalidIdInRequest", prefix + "Credentials not found");
  }
  if (!entry->credentials) {
    return credentialsError(response, 503, "CredentialsUninitialized",
                            prefix + "Credentials uninitialized for ID");
  }
  const auto& c = *entry->credentials;
  // Credentials that never expire (a developer's long-term keys) are still given an expiry:
  // SDK container providers require the field, and refreshing hourly costs nothing.
  auto expiration = c.expiration.value_or(
      std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()) +
      std::chrono::hours(1));
  json::object body;
  body["RoleArn"] = entry->role_arn;
  body["AccessKeyId"] = c.access_key_id;
  body["SecretAccessKey"] = c.secret_access_key;
  body["Token"] = c.session_token;
  body["Expiration"] = aws::formatExpiration(expiration);
  response.status = 200;
  response.content_type = "application/json";
  response.body = json::serialize(body);
}

std::string_view TaskServer::metadataV2(const HttpRequest& request, std::string_view rest,
                                        HttpResponse& response) {
  auto [what, tail] = firstSegment(rest);
  bool metadata = what == "metadata" || what == "metadataWithTags";
  bool stats = what == "stats";
  if (!metadata && !stats) {
    notFoundPage(response);
    return "other";
  }
  std::string_view label = stats ? "/v2/stats" : "/v2/metadata";
  // "", "/" or "/<dockerId>"; metadataWithTags has no per-container form.
  std::string_view container_id = tail.size() > 1 ? tail.substr(1) : std::string_view();
  if (container_id.find('/') != std::string_view::npos ||
      (what == "metadataWithTags" && !container_id.empty())) {
    notFoundPage(response);
    return "other";
  }
  auto task = deps_.directory->byIp(request.remote_address);
  if (!task) {
    int status = deps_.directory->stateLoaded() ? 400 : 503;
    jsonString(response, status,
               fmt::format("Unable to get task arn from request: unable to associate '{}' with "
                           "task",
                           request.remote_address));
    return label;
  }
  const engine::ContainerSnapshot* container = nullptr;
  if (!container_id.empty()) {
    for (const auto& c : task->containers) {
      if (c.runtime_id == container_id) container = &c;
    }
    if (!container) {
      jsonString(response, 400, fmt::format("Unable to find container '{}' in task", container_id));
      return label;
    }
  }
  response.status = 200;
  response.content_type = "application/json";
  if (metadata) {
    if (container) {
      response.body = json::serialize(metadata::containerV2(*task, *container, context_));
    } else {
      auto body = metadata::taskV2(*task, context_);
      if (what == "metadataWithTags") {
        body["TaskTags"] = json::object();
        body["ContainerInstanceTags"] = json::object();
      }
      response.body = json::serialize(body);
    }
    return label;
  }
  if (container) {
    auto s = deps_.stats ? deps_.stats->containerStats(container->runtime_id, false) : std::nullopt;
    response.body = s ? json::serialize(*s) : "{}";
  } else {
    response.body = deps_.stats ? json::serialize(deps_.stats->taskStats(*task, false)) : "{}";
  }
  return label;
}

std::string_view TaskServer::metadataV3V4(int version, std::string_view rest,
                                          HttpResponse& response) {
  auto [endpoint_id, tail] = firstSegment(rest);
  bool v4 = version == 4;
  enum class Kind { kContainer, kTask, kTaskWithTags, kStats, kTaskStats };
  Kind kind;
  std::string_view label;
  if (tail.empty()) {
    kind = Kind::kContainer;
    label = v4 ? "/v4/<id>" : "/v3/<id>";
  } else if (tail == "/task") {
    kind = Kind::kTask;
    label = v4 ? "/v4/<id>/task" : "/v3/<id>/task";
  } else if (tail == "/taskWithTags") {
    kind = Kind::kTaskWithTags;
    label = v4 ? "/v4/<id>/taskWithTags" : "/v3/<id>/taskWithTags";
  } else if (tail == "/stats") {
    kind = Kind::kStats;
    label = v4 ? "/v4/<id>/stats" : "/v3/<id>/stats";
  } else if (tail == "/task/stats") {
    kind = Kind::kTaskStats;
    label = v4 ? "/v4/<id>/task/stats" : "/v3/<id>/task/stats";
  } else {
    notFoundPage(response);
    return "other";
  }
  if (endpoint_id.empty()) {
    notFoundPage(response);
    return "other";
  }

  bool task_level = kind == Kind::kTask || kind == Kind::kTaskWithTags;
  bool stats = kind == Kind::kStats || kind == Kind::kTaskStats;
  auto ref = deps_.directory->byEndpoint(endpoint_id);
  const engine::ContainerSnapshot* container = ref ? ref->container() : nullptr;
  if (!ref || (!task_level && kind != Kind::kTaskStats && !container)) {
    // v4: 404 for an unknown id; v3: 500 for metadata, 400 for stats (the real agent's codes).
    int status = v4 ? 404 : (stats ? 400 : 500);
    if (!deps_.directory->stateLoaded()) status = 503;
    std::string what = stats ? (kind == Kind::kTaskStats ? "task stats" : "container stats")
                             : (task_level ? "task metadata" : "container metadata");
    std::string lookup = task_level || kind == Kind::kTaskStats
                             ? fmt::format(
                                   "unable to get task ARN from request: unable to get "
                                   "task Arn from v3 endpoint ID: {}",
                                   endpoint_id)
                             : fmt::format(
                                   "unable to get container ID from request: unable to "
                                   "get docker ID from v3 endpoint ID: {}",
                                   endpoint_id);
    jsonString(response, status, fmt::format("V{} {} handler: {}", version, what, lookup));
    return label;
  }

  const auto& task = ref->task;
  response.status = 200;
  response.content_type = "application/json";
  switch (kind) {
    case Kind::kContainer: {
      auto key = fmt::format("v{}c/{}", version, ref->container_name);
      response.body = *deps_.directory->cachedBody(task, key, [&] {
        return json::serialize(v4 ? metadata::containerV4(*task, *container, context_)
                                  : metadata::containerV3(*task, *container, context_));
      });
      break;
    }
    case Kind::kTask:
    case Kind::kTaskWithTags: {
      bool tags = kind == Kind::kTaskWithTags;
      auto key = fmt::format("v{}t{}", version, tags ? "+tags" : "");
      response.body = *deps_.directory->cachedBody(task, key, [&] {
        auto body = v4 ? metadata::taskV4(*task, context_) : metadata::taskV3(*task, context_);
        if (tags) {
          body["TaskTags"] = json::object();
          body["ContainerInstanceTags"] = json::object();
        }
        return json::serialize(body);
      });
      break;
    }
    case Kind::kStats: {
      auto s = deps_.stats ? deps_.stats->containerStats(container->runtime_id, v4) : std::nullopt;
      response.body = s ? json::serialize(*s) : "{}";
      break;
    }
    case Kind::kTaskStats:
      response.body = deps_.stats ? json::serialize(deps_.stats->taskStats(*task, v4)) : "{}";
      break;
  }
  return label;
}

}  // namespace ecs::endpoints
