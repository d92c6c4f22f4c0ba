#include "agent/aws/aws_json_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "agent/common/stop_wait.h"
#include "agent/common/text.h"

namespace ecs::aws {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kContentType = "application/x-amz-json-1.1";

// The codes the AWS SDKs retry as throttling or as transient, and ECS's own transient ones
// (ServerException, LimitExceededException).
constexpr std::string_view kRetryableTypes[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServerError",
};

constexpr std::string_view kAuthTypes[] = {
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "SignatureDoesNotMatch", "IncompleteSignature",         "MissingAuthenticationToken",
    "ExpiredTokenException", "InvalidClientTokenId",
};

// "com.amazonaws.ecs#ClientException" and "ClientException:http://internal..." both name
// ClientException.
std::string errorCodeOf(std::string_view raw) {
  if (size_t colon = raw.find(':'); colon != std::string_view::npos) raw = raw.substr(0, colon);
  if (size_t hash = raw.rfind('#'); hash != std::string_view::npos) raw = raw.substr(hash + 1);
  return std::string(text::trim(raw));
}

double defaultRandom() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
}

// The service's error from a non-2xx response.
AwsError decodeError(std::string_view operation, const HttpResponse& response) {
  AwsError error{.operation = std::string(operation), .http_status = response.status};
  std::string type = response.headers.get("X-Amzn-ErrorType");
  Result<json::Value> body = json::parse(response.body, json::Excerpt::kHide);
  if (body && body->is_object()) {
    const json::Object& object = body->as_object();
    if (type.empty()) {
      if (const json::Value* value = object.if_contains("__type"); value && value->is_string()) {
        type = std::string(value->as_string());
      }
    }
    for (std::string_view key : {"message", "Message", "errorMessage"}) {
      if (const json::Value* value = object.if_contains(key); value && value->is_string()) {
        error.message = text::clip(std::string_view(value->as_string()));
        break;
      }
    }
  } else if (!response.body.empty()) {
    error.message = text::clip(response.body);  // a proxy's or load balancer's page
  }
  error.type = errorCodeOf(type);
  error.retryable = isRetryableAwsError(error.type, response.status);
  return error;
}

AwsError transportError(std::string_view operation, const HttpError& failure) {
  AwsError error{.operation = std::string(operation), .message = failure.cause.message};
  switch (failure.failure) {
    case HttpFailure::kConnect:
    case HttpFailure::kBroken:
    case HttpFailure::kTimedOut:
      error.retryable = true;
      break;
    case HttpFailure::kDeadline:
    case HttpFailure::kCancelled:
      error.cancelled = true;
      break;
    default:
      break;
  }
  return error;
}

AwsError cancelledError(std::string_view operation, std::string message) {
  return AwsError{
      .operation = std::string(operation), .message = std::move(message), .cancelled = true};
}

std::string readable(std::chrono::milliseconds delay) {
  if (delay < std::chrono::seconds(1)) return fmt::format("{} ms", delay.count());
  return fmt::format("{:.1f} s", static_cast<double>(delay.count()) / 1000.0);
}

}  // namespace

std::chrono::milliseconds RetryPolicy::delay(int retry, double random) const {
  if (exponential_retries > 0 && retry >= exponential_retries) return flat_delay;
  double unjittered = static_cast<double>(base.count()) * std::pow(multiplier, retry);
  unjittered = std::min(unjittered, static_cast<double>(cap.count()));
  double factor = jitter_low + (jitter_high - jitter_low) * std::clamp(random, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(unjittered * factor)));
}

RetryPolicy standardRetryPolicy() {
  return RetryPolicy{.max_attempts = 3,
                     .base = std::chrono::milliseconds(2000),
                     .multiplier = 2.0,
                     .cap = std::chrono::milliseconds(20'000),
                     .jitter_low = 0.0,
                     .jitter_high = 1.0};
}

bool isRetryableAwsError(std::string_view type, long http_status) {
  if (std::ranges::find(kRetryableTypes, type) != std::end(kRetryableTypes)) return true;
  return http_status >= 500 || http_status == 429;
}

Error AwsError::asError() const {
  ErrorCode code = ErrorCode::kInvalidArgument;
  if (retryable || cancelled || http_status == 0) {
    code = ErrorCode::kUnavailable;
  } else if (http_status / 100 == 2) {
    code = ErrorCode::kDataLoss;
  } else if (std::ranges::find(kAuthTypes, type) != std::end(kAuthTypes) || http_status == 401 ||
             http_status == 403) {
    code = ErrorCode::kUnauthorized;
  } else if (type.ends_with("NotFoundException")) {
    code = ErrorCode::kNotFound;
  }
  std::string what = type.empty() ? std::string() : type;
  if (http_status != 0) {
    what +=
        what.empty() ? fmt::format("HTTP {}", http_status) : fmt::format(" (HTTP {})", http_status);
  }
  std::string text = what.empty() ? message : message.empty() ? what : what + ": " + message;
  if (attempts > 1) text += fmt::format(" (after {} attempts)", attempts);
  return Error{code, fmt::format("{}: {}", operation, text)};
}

std::string endpointUrl(std::string_view host) {
  if (host.find("://") != std::string_view::npos) return std::string(host);
  return "https://" + std::string(host);
}

AwsJsonClient::AwsJsonClient(AwsJsonClientOptions options)
    : options_(std::move(options)), http_(HttpClientOptions{.user_agent = options_.user_agent}) {
  if (!options_.now) options_.now = [] { return std::chrono::system_clock::now(); };
  if (!options_.random) options_.random = defaultRandom;
}

AwsResult<json::Value> AwsJsonClient::call(std::string_view operation, const json::Object& body,
                                           const CallOptions& options) {
  const RetryPolicy& policy = options.retry ? *options.retry : options_.retry;
  const std::string text = boost::json::serialize(body);
  const int max_attempts = std::max(1, policy.max_attempts);
  for (int attempt = 1;; ++attempt) {
    AwsResult<json::Value> result = this->attempt(operation, text, options);
    if (result) return result;
    AwsError& error = result.error();
    if (!error.retryable || error.cancelled || attempt >= max_attempts) {
      error.attempts = attempt;
      return result;
    }
    const std::chrono::milliseconds delay = policy.delay(attempt - 1, options_.random());
    if (SteadyClock::now() + delay >= options.deadline) {
      error.attempts = attempt;
      error.cancelled = true;
      error.message += "; no time left to retry before the deadline";
      return result;
    }
    spdlog::warn("{}; retry {} of {} in {}", error.asError().message, attempt, max_attempts - 1,
                 readable(delay));
    if (!sleepFor(delay, options.stop)) {
      error.attempts = attempt;
      error.cancelled = true;
      return result;
    }
  }
}

AwsResult<json::Value> AwsJsonClient::attempt(std::string_view operation, const std::string& body,
                                              const CallOptions& options) {
  if (options.stop.stop_requested()) return std::unexpected(cancelledError(operation, "cancelled"));
  Result<Credentials> credentials =
      options_.credentials ? options_.credentials()
                           : Result<Credentials>(fail(ErrorCode::kInvalidArgument, "no source"));
  if (!credentials) {
    return std::unexpected(AwsError{
        .operation = std::string(operation),
        .message = credentials.error().wrap("credentials").message,
        .retryable = credentials.error().code == ErrorCode::kUnavailable,
    });
  }

  HttpRequest request;
  request.method = "POST";
  request.url = options_.endpoint;
  if (request.url.find('/', request.url.find("://") + 3) == std::string::npos) request.url += '/';
  request.headers.add("Content-Type", std::string(kContentType));
  request.headers.add("X-Amz-Target", options_.target_prefix + "." + std::string(operation));
  request.body = body;
  request.connect_timeout = options_.connect_timeout;
  request.timeout = options_.attempt_timeout;
  request.deadline = options.deadline;
  if (options.stop.stop_possible()) {
    request.cancelled = [stop = options.stop] { return stop.stop_requested(); };
  }
  if (Result<void> signed_ok =
          signHttpRequest(request, options_.scope, *credentials, options_.now());
      !signed_ok) {
    return std::unexpected(
        AwsError{.operation = std::string(operation), .message = signed_ok.error().message});
  }

  HttpResult<HttpResponse> response = http_.perform(request);
  if (!response) return std::unexpected(transportError(operation, response.error()));
  if (response->status / 100 != 2) return std::unexpected(decodeError(operation, *response));
  if (response->body.empty()) return json::Value(json::Object());
  Result<json::Value> parsed = json::parse(response->body, json::Excerpt::kHide);
  if (!parsed) {
    return std::unexpected(AwsError{.operation = std::string(operation),
                                    .message = parsed.error().wrap("response").message,
                                    .http_status = response->status});
  }
  return std::move(*parsed);
}

}  // namespace ecs::aws
