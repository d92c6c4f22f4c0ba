// EcsClient: the ECS API calls the agent makes — registering the instance, finding the ACS and TCS
// endpoints, and reporting task, container and attachment state — over AwsJsonClient.
//
// Two retry policies, as the ECS agent has them: registration and discovery use the SDKs'
// standard one (3 attempts); state changes use the submit-state one, which keeps trying for about
// a day, since a lost state change leaves the cluster wrong. Callers that loop on top (registration
// for an hour, each state change until it is accepted) take their backoff from the policies below.
// DiscoverPollEndpoint answers are cached per container instance for 12 hours and, when the API
// fails, an expired answer is used rather than none.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "agent/aws/aws_json_client.h"
#include "agent/ecs/ecs_api.h"

namespace ecs::ecsapi {

inline constexpr std::string_view kTargetPrefix = "AmazonEC2ContainerServiceV20141113";
inline constexpr std::string_view kSigningName = "ecs";

// The endpoint for `backend_host` (ECS_BACKEND_HOST; "https://" added when it names no scheme),
// else the region's: https://ecs.<region>.amazonaws.com (.com.cn in China).
std::string ecsEndpoint(std::string_view backend_host, std::string_view region);

// The submit-state client's: 2^n × 30–59 ms for the first 13 retries, then every 5 minutes, 298
// attempts in all — about a day.
aws::RetryPolicy submitStateRetryPolicy();
// The agent's own loop around RegisterContainerInstance: 3 s doubling to 192 s, +0–20 %; the loop
// gives up after an hour (kRegistrationRetryTime) or at an error isTransientRegistrationError
// rejects.
aws::RetryPolicy registrationRetryPolicy();
inline constexpr std::chrono::hours kRegistrationRetryTime{1};
// Whether the registration loop tries again: throttling, ServerException, LimitExceededException.
bool isTransientRegistrationError(const aws::AwsError& error);
// The per-event loop around a state change: 1 s ×1.3 up to 30 s, +0–20 %, without end. An
// InvalidParameterException on a task change drops that change instead.
aws::RetryPolicy stateChangeRetryPolicy();

struct EcsClientOptions {
  std::string cluster;  // ECS_CLUSTER; the cluster of every call that names none
  std::string region;
  std::string backend_host;  // ECS_BACKEND_HOST; empty: the regional endpoint
  std::string user_agent;
  aws::CredentialsSource credentials;
  std::chrono::milliseconds connect_timeout{40'000};    // dial 30 s + TLS handshake 10 s
  std::chrono::milliseconds attempt_timeout{42'000};    // one round trip
  std::chrono::milliseconds discover_timeout{126'000};  // a whole DiscoverPollEndpoint call
  std::chrono::hours poll_endpoint_ttl{12};
  aws::RetryPolicy standard_retry = aws::standardRetryPolicy();
  aws::RetryPolicy submit_state_retry = submitStateRetryPolicy();
  // Clocks (signing; the endpoint cache) and the jitter source; tests pass their own.
  std::function<std::chrono::system_clock::time_point()> now;
  std::function<std::chrono::steady_clock::time_point()> steady_now;
  std::function<double()> random;
};

// Thread-safe. Every call can be cancelled through its stop token (a waiting retry ends at once,
// a request in flight within about a second).
class EcsClient {
 public:
  explicit EcsClient(EcsClientOptions options);

  aws::AwsResult<RegisteredInstance> registerContainerInstance(const RegistrationRequest& request,
                                                               std::stop_token stop = {});
  // The cached endpoints when fresh; else the API's answer; else, on error, the last answer.
  aws::AwsResult<PollEndpoints> discoverPollEndpoint(const std::string& container_instance_arn,
                                                     std::stop_token stop = {});
  aws::AwsResult<void> submitTaskStateChange(const TaskStateChange& change,
                                             std::stop_token stop = {});
  aws::AwsResult<void> submitTaskStateChange(const TaskAttachmentStateChange& change,
                                             std::stop_token stop = {});
  aws::AwsResult<void> submitContainerStateChange(const StandaloneContainerStateChange& change,
                                                  std::stop_token stop = {});
  aws::AwsResult<void> submitAttachmentStateChanges(
      const std::vector<AttachmentStateChange>& changes, std::stop_token stop = {});

  const EcsClientOptions& options() const { return options_; }

 private:
  aws::AwsResult<void> submit(std::string_view operation, const json::Object& body,
                              std::stop_token stop);

  struct CachedEndpoints {
    PollEndpoints endpoints;
    std::chrono::steady_clock::time_point fetched;
  };

  EcsClientOptions options_;
  aws::AwsJsonClient api_;
  std::mutex mutex_;
  std::map<std::string, CachedEndpoints> endpoints_;  // by container instance ARN; under mutex_
};

}  // namespace ecs::ecsapi
