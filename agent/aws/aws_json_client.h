// AwsJsonClient: calls to an AWS service speaking the JSON 1.1 protocol (ECS among them):
// `POST /` with Content-Type application/x-amz-json-1.1, X-Amz-Target <prefix>.<Operation>, a JSON
// body, SigV4-signed; the answer is JSON too, or an error named by `__type`.
//
// Each call retries what can succeed later — throttling, 5xx, a connection that failed or broke,
// a timeout — with exponential backoff and jitter per a RetryPolicy, re-signing every attempt with
// the credentials of that moment. Everything else comes back at once as an AwsError that keeps
// the service's error type, so callers branch on "ClientException" without parsing messages.
#pragma once

#include <chrono>
#include <expected>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "agent/aws/credentials.h"
#include "agent/aws/http_client.h"
#include "agent/aws/sigv4.h"
#include "agent/common/json_reader.h"
#include "agent/common/result.h"

namespace ecs::aws {

// When to try again. The delay before retry n (0 for the first) is
// min(cap, base × multiplier^n) scaled by a random factor in [jitter_low, jitter_high], or
// `flat_delay` without jitter once n reaches `exponential_retries` (if that is set).
struct RetryPolicy {
  int max_attempts = 3;  // attempts in all, the first included; 1: never retry
  std::chrono::milliseconds base{1000};
  double multiplier = 2.0;
  std::chrono::milliseconds cap{20'000};
  double jitter_low = 0.0;
  double jitter_high = 1.0;
  int exponential_retries = 0;  // 0: the backoff stays exponential
  std::chrono::milliseconds flat_delay{0};

  // The delay before retry `retry` (0-based) given a random number in [0, 1).
  std::chrono::milliseconds delay(int retry, double random) const;
};

// The AWS SDKs' standard retryer: 3 attempts, full jitter on 1 s doubling, at most 20 s.
RetryPolicy standardRetryPolicy();

// An AWS service's answer other than success, or the reason there was none.
struct AwsError {
  std::string operation;  // "RegisterContainerInstance"
  // The service's error code ("ThrottlingException", "ClientException"), from `__type` (the part
  // after '#') or the X-Amzn-ErrorType header; empty when the service did not name one.
  std::string type;
  std::string message;   // the service's message, or what went wrong on the way (clipped)
  long http_status = 0;  // 0: no response (connection failed, timed out, cancelled ...)
  // Worth trying again later: throttling, a 5xx, a transport failure, credentials unavailable.
  bool retryable = false;
  bool cancelled = false;  // the caller's stop token or deadline ended the call
  int attempts = 0;

  // "RegisterContainerInstance: ClientException (HTTP 400): Cluster not found." with an ErrorCode
  // for the kind of failure: kUnavailable (retryable), kUnauthorized (access denied, bad
  // signature), kNotFound (*NotFoundException), kInvalidArgument (other 4xx), kDataLoss (a 2xx body
  // that is not JSON).
  Error asError() const;
};

// Whether the service's error type, or an HTTP status without one, is worth retrying.
bool isRetryableAwsError(std::string_view type, long http_status);

// A value or an AwsError; like Result, not to be dropped.
template <typename T>
class [[nodiscard]] AwsResult : public std::expected<T, AwsError> {
  using Base = std::expected<T, AwsError>;

 public:
  using Base::Base;
  AwsResult() = default;
  AwsResult(Base base) : Base(std::move(base)) {}
};

// "https://" + `host` when it names no scheme (ECS_BACKEND_HOST semantics), else `host` as is.
std::string endpointUrl(std::string_view host);

// The credentials to sign the next attempt with; called once per attempt, from the calling thread.
using CredentialsSource = std::function<Result<Credentials>()>;

struct AwsJsonClientOptions {
  std::string endpoint;       // "https://ecs.us-east-1.amazonaws.com"
  std::string target_prefix;  // "AmazonEC2ContainerServiceV20141113"
  SigV4Scope scope;           // {"ecs", region}
  CredentialsSource credentials;
  std::string user_agent;
  std::chrono::milliseconds connect_timeout{40'000};  // dial 30 s + TLS handshake 10 s
  std::chrono::milliseconds attempt_timeout{42'000};  // one whole round trip
  RetryPolicy retry = standardRetryPolicy();
  // The signing clock and the jitter source; tests pass their own. Defaults: system_clock::now and
  // a per-thread uniform [0, 1) generator.
  std::function<std::chrono::system_clock::time_point()> now;
  std::function<double()> random;
};

struct CallOptions {
  std::optional<RetryPolicy> retry;  // the client's policy when unset
  // No attempt starts, and no backoff waits, past this; an attempt in flight is cut off at it.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::stop_token stop;  // ends a backoff wait at once and an attempt within about a second
};

// Thread-safe: any number of calls may run at once (the credentials source must be thread-safe).
class AwsJsonClient {
 public:
  explicit AwsJsonClient(AwsJsonClientOptions options);
  AwsJsonClient(const AwsJsonClient&) = delete;
  AwsJsonClient& operator=(const AwsJsonClient&) = delete;

  // The operation's JSON response (an empty object for an empty 2xx body).
  AwsResult<json::Value> call(std::string_view operation, const json::Object& body,
                              const CallOptions& options = {});

  const AwsJsonClientOptions& options() const { return options_; }

 private:
  AwsResult<json::Value> attempt(std::string_view operation, const std::string& body,
                                 const CallOptions& options);

  AwsJsonClientOptions options_;
  HttpClient http_;
};

}  // namespace ecs::aws
