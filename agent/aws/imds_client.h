// ImdsClient: the EC2 Instance Metadata Service, IMDSv2 only.
//
// Gives the agent its region, Availability Zone and instance ID when it runs on EC2, and the
// instance role's credentials as the last link of the credential chain. A session token is fetched
// with PUT /latest/api/token and reused until shortly before its TTL ends; every GET carries it.
// Timeouts are short (1 s connect, 2 s per request, one retry) because off EC2 nothing answers and
// the agent must not hang at start. Proxies are never used: IMDS is link-local.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "agent/aws/credentials.h"
#include "agent/aws/http_client.h"
#include "agent/common/result.h"

namespace ecs::aws {

struct ImdsOptions {
  std::string endpoint;                     // "http://169.254.169.254" unless overridden
  std::chrono::milliseconds timeout{2000};  // per request; connect is capped at 1 s
};

// Thread-safe: one instance can serve many callers; the token is shared.
class ImdsClient {
 public:
  explicit ImdsClient(ImdsOptions options);
  ImdsClient(const ImdsClient&) = delete;
  ImdsClient& operator=(const ImdsClient&) = delete;

  // AWS_EC2_METADATA_SERVICE_ENDPOINT, else AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6
  // (http://[fd00:ec2::254]), else http://169.254.169.254.
  static ImdsOptions optionsFromEnvironment(
      const std::function<std::optional<std::string>(const std::string&)>& getenv);

  // The body of a metadata path, e.g. "/latest/meta-data/placement/availability-zone".
  // 404 is kNotFound; unreachable, timed out or 5xx is kUnavailable.
  Result<std::string> get(std::string_view path);
  Result<std::string> region();
  Result<std::string> availabilityZone();
  Result<std::string> instanceId();
  Result<Credentials> roleCredentials();  // iam/security-credentials/<first role>

 private:
  Result<std::string> token();
  void forgetToken();
  HttpRequest newRequest(std::string method, std::string url) const;
  Result<HttpResponse> exchange(const HttpRequest& request);

  ImdsOptions options_;
  HttpClient http_;
  std::mutex mutex_;  // guards the token
  std::string token_;
  std::chrono::steady_clock::time_point token_expires_{};
};

}  // namespace ecs::aws
