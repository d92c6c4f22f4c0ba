#include "agent/ecs/ecs_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

namespace ecs::ecsapi {
namespace {

using namespace std::chrono_literals;

aws::AwsJsonClientOptions transportOptions(const EcsClientOptions& options) {
  return aws::AwsJsonClientOptions{
      .endpoint = ecsEndpoint(options.backend_host, options.region),
      .target_prefix = std::string(kTargetPrefix),
      .scope = aws::SigV4Scope{.service = std::string(kSigningName), .region = options.region},
      .credentials = options.credentials,
      .user_agent = options.user_agent,
      .connect_timeout = options.connect_timeout,
      .attempt_timeout = options.attempt_timeout,
      .retry = options.standard_retry,
      .now = options.now,
      .random = options.random,
  };
}

// A response that does not hold what the call needs: not worth retrying.
aws::AwsError malformedResponse(std::string_view operation, const Error& error) {
  return aws::AwsError{
      .operation = std::string(operation), .message = error.message, .http_status = 200};
}

}  // namespace

std::string ecsEndpoint(std::string_view backend_host, std::string_view region) {
  if (!backend_host.empty()) return aws::endpointUrl(backend_host);
  const bool china = region.starts_with("cn-");
  return fmt::format("https://ecs.{}.amazonaws.com{}", region, china ? ".cn" : "");
}

aws::RetryPolicy submitStateRetryPolicy() {
  return aws::RetryPolicy{.max_attempts = 298,
                          .base = 30ms,
                          .multiplier = 2.0,
                          .cap = std::chrono::milliseconds(5min),
                          .jitter_low = 1.0,
                          .jitter_high = 59.0 / 30.0,
                          .exponential_retries = 13,
                          .flat_delay = std::chrono::milliseconds(5min)};
}

aws::RetryPolicy registrationRetryPolicy() {
  return aws::RetryPolicy{.max_attempts = std::numeric_limits<int>::max(),
                          .base = 3s,
                          .multiplier = 2.0,
                          .cap = 192s,
                          .jitter_low = 1.0,
                          .jitter_high = 1.2};
}

bool isTransientRegistrationError(const aws::AwsError& error) {
  return error.type == "ThrottlingException" || error.type == "ServerException" ||
         error.type == "LimitExceededException";
}

aws::RetryPolicy stateChangeRetryPolicy() {
  return aws::RetryPolicy{.max_attempts = std::numeric_limits<int>::max(),
                          .base = 1s,
                          .multiplier = 1.3,
                          .cap = 30s,
                          .jitter_low = 1.0,
                          .jitter_high = 1.2};
}

EcsClient::EcsClient(EcsClientOptions options)
    : options_(std::move(options)), api_(transportOptions(options_)) {
  if (!options_.steady_now) options_.steady_now = [] { return std::chrono::steady_clock::now(); };
}

aws::AwsResult<RegisteredInstance> EcsClient::registerContainerInstance(
    const RegistrationRequest& request, std::stop_token stop) {
  constexpr std::string_view kOperation = "RegisterContainerInstance";
  aws::AwsResult<json::Value> response =
      api_.call(kOperation, registerContainerInstanceBody(request), aws::CallOptions{.stop = stop});
  if (!response) return std::unexpected(std::move(response.error()));
  Result<RegisteredInstance> registered = parseRegisterContainerInstanceResponse(*response);
  if (!registered) return std::unexpected(malformedResponse(kOperation, registered.error()));
  return std::move(*registered);
}

aws::AwsResult<PollEndpoints> EcsClient::discoverPollEndpoint(
    const std::string& container_instance_arn, std::stop_token stop) {
  constexpr std::string_view kOperation = "DiscoverPollEndpoint";
  {
    std::lock_guard lock(mutex_);
    auto cached = endpoints_.find(container_instance_arn);
    if (cached != endpoints_.end() &&
        options_.steady_now() - cached->second.fetched < options_.poll_endpoint_ttl) {
      return cached->second.endpoints;
    }
  }
  aws::CallOptions call{.deadline = std::chrono::steady_clock::now() + options_.discover_timeout,
                        .stop = stop};
  aws::AwsResult<json::Value> response = api_.call(
      kOperation, discoverPollEndpointBody(options_.cluster, container_instance_arn), call);
  aws::AwsResult<PollEndpoints> endpoints;
  if (!response) {
    endpoints = std::unexpected(std::move(response.error()));
  } else if (Result<PollEndpoints> parsed = parseDiscoverPollEndpointResponse(*response); parsed) {
    endpoints = std::move(*parsed);
  } else {
    endpoints = std::unexpected(malformedResponse(kOperation, parsed.error()));
  }

  std::lock_guard lock(mutex_);
  if (endpoints) {
    endpoints_[container_instance_arn] = CachedEndpoints{*endpoints, options_.steady_now()};
    return endpoints;
  }
  auto cached = endpoints_.find(container_instance_arn);
  if (cached == endpoints_.end() || stop.stop_requested()) return endpoints;
  spdlog::warn("{}; using the endpoints discovered before", endpoints.error().asError().message);
  return cached->second.endpoints;
}

aws::AwsResult<void> EcsClient::submitTaskStateChange(const TaskStateChange& change,
                                                      std::stop_token stop) {
  return submit("SubmitTaskStateChange", submitTaskStateChangeBody(change, options_.cluster), stop);
}

aws::AwsResult<void> EcsClient::submitTaskStateChange(const TaskAttachmentStateChange& change,
                                                      std::stop_token stop) {
  return submit("SubmitTaskStateChange", submitTaskStateChangeBody(change, options_.cluster), stop);
}

aws::AwsResult<void> EcsClient::submitContainerStateChange(
    const StandaloneContainerStateChange& change, std::stop_token stop) {
  return submit("SubmitContainerStateChange",
                submitContainerStateChangeBody(change, options_.cluster), stop);
}

aws::AwsResult<void> EcsClient::submitAttachmentStateChanges(
    const std::vector<AttachmentStateChange>& changes, std::stop_token stop) {
  return submit("SubmitAttachmentStateChanges",
                submitAttachmentStateChangesBody(changes, options_.cluster), stop);
}

aws::AwsResult<void> EcsClient::submit(std::string_view operation, const json::Object& body,
                                       std::stop_token stop) {
  aws::AwsResult<json::Value> response = api_.call(
      operation, body, aws::CallOptions{.retry = options_.submit_state_retry, .stop = stop});
  if (!response) return std::unexpected(std::move(response.error()));
  return {};
}

}  // namespace ecs::ecsapi
