// IMDSv2 over the HttpClient: token PUT, then GETs carrying the token.
#include "agent/aws/imds_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>

namespace ecs::aws {
namespace {

constexpr const char* kDefaultEndpoint = "http://169.254.169.254";
constexpr const char* kDefaultEndpointIpv6 = "http://[fd00:ec2::254]";
constexpr const char* kTokenPath = "/latest/api/token";
constexpr const char* kRolesPath = "/latest/meta-data/iam/security-credentials/";
// Six hours, the longest IMDS grants; renewed a minute early so a token never expires in flight.
constexpr std::chrono::seconds kTokenTtl{21600};
constexpr std::chrono::seconds kTokenRenewMargin{60};
constexpr std::chrono::milliseconds kMaxConnectTimeout{1000};
// Metadata values are small; a peer streaming more is not IMDS.
constexpr size_t kMaxBody = 64 * 1024;
constexpr int kAttempts = 2;  // one retry

std::string firstLine(std::string_view body) {
  auto end = body.find_first_of("\r\n");
  std::string line(body.substr(0, end));
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

// Role names are [\w+=,.@-]; anything else would change the path we ask for.
bool validRoleName(std::string_view role) {
  return !role.empty() && std::ranges::all_of(role, [](unsigned char c) {
    return std::isalnum(c) ||
           std::string_view("_+=,.@-").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

std::optional<std::string> jsonString(const boost::json::object& object, std::string_view key) {
  const auto* value = object.if_contains(key);
  if (value == nullptr || !value->is_string()) return std::nullopt;
  return std::string(value->get_string());
}

}  // namespace

ImdsClient::ImdsClient(ImdsOptions options)
    : options_(std::move(options)),
      // IMDS is link-local: an HTTP(S)_PROXY from the environment must never see these requests
      // (the token and the credentials would leave the host).
      http_(HttpClientOptions{.use_proxy = false, .protocols = "http"}) {
  if (options_.endpoint.empty()) options_.endpoint = kDefaultEndpoint;
  while (options_.endpoint.ends_with('/')) options_.endpoint.pop_back();
}

ImdsOptions ImdsClient::optionsFromEnvironment(
    const std::function<std::optional<std::string>(const std::string&)>& getenv) {
  ImdsOptions options;
  auto endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  auto mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
  if (endpoint && !endpoint->empty()) {
    options.endpoint = *endpoint;
  } else if (mode && (*mode == "IPv6" || *mode == "ipv6")) {
    options.endpoint = kDefaultEndpointIpv6;
  } else {
    options.endpoint = kDefaultEndpoint;
  }
  return options;
}

Result<std::string> ImdsClient::token() {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!token_.empty() && now < token_expires_) return token_;

  const std::string url = options_.endpoint + kTokenPath;
  HttpRequest request = newRequest("PUT", url);
  request.headers.add("X-aws-ec2-metadata-token-ttl-seconds", std::to_string(kTokenTtl.count()));
  Error last;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    auto response = exchange(request);
    if (!response) {
      last = response.error();
      continue;
    }
    if (response->status == 200 && !response->body.empty()) {
      token_ = firstLine(response->body);
      token_expires_ = now + kTokenTtl - kTokenRenewMargin;
      return token_;
    }
    if (response->status >= 500) {
      last = Error{ErrorCode::kUnavailable, fmt::format("HTTP {}", response->status)};
      continue;
    }
    // 403: IMDS is turned off for this instance (or the request went through a proxy); 404/405:
    // an IMDSv1-only service. Neither changes on retry.
    return fail(response->status == 403 ? ErrorCode::kUnauthorized : ErrorCode::kFailedPrecondition,
                "IMDS {}: PUT {}: HTTP {}{}", options_.endpoint, kTokenPath, response->status,
                response->status == 403 ? " (IMDS access is disabled for this instance)"
                                        : " (no IMDSv2 here)");
  }
  return fail(last.code, "IMDS {}: PUT {}: {} ({} attempts, {} ms timeout each)", options_.endpoint,
              kTokenPath, last.message, kAttempts, options_.timeout.count());
}

HttpRequest ImdsClient::newRequest(std::string method, std::string url) const {
  HttpRequest request;
  request.method = std::move(method);
  request.url = std::move(url);
  request.connect_timeout = std::min(options_.timeout, kMaxConnectTimeout);
  request.timeout = options_.timeout;
  request.max_body = kMaxBody;
  return request;
}

// One HTTP exchange; an error only for transport failures (no HTTP status).
Result<HttpResponse> ImdsClient::exchange(const HttpRequest& request) {
  auto response = http_.perform(request);
  if (response) return std::move(*response);
  if (response.error().failure == HttpFailure::kTooLarge) {
    return fail(ErrorCode::kDataLoss, "response larger than {} bytes", kMaxBody);
  }
  return fail(ErrorCode::kUnavailable, "{}", response.error().cause.message);
}

void ImdsClient::forgetToken() {
  std::lock_guard lock(mutex_);
  token_.clear();
}

Result<std::string> ImdsClient::get(std::string_view path) {
  if (!path.starts_with('/')) {
    return fail(ErrorCode::kInvalidArgument, "IMDS path {:?} does not start with /",
                std::string(path));
  }
  const std::string url = options_.endpoint + std::string(path);
  Error last;
  bool renewed = false;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    auto session = token();
    if (!session) return fail(session.error());
    HttpRequest request = newRequest("GET", url);
    request.headers.add("X-aws-ec2-metadata-token", *session);
    auto response = exchange(request);
    if (!response) {
      last = response.error();
      continue;
    }
    switch (response->status) {
      case 200:
        return std::move(response->body);
      case 401:
        // The token expired early (IMDS restarted, clock jump): get a new one, once.
        forgetToken();
        if (renewed) break;
        renewed = true;
        --attempt;
        continue;
      case 404:
        return fail(ErrorCode::kNotFound, "IMDS {}: GET {}: not found", options_.endpoint, path);
      default:
        break;
    }
    last = Error{response->status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kUnauthorized,
                 fmt::format("HTTP {}", response->status)};
    if (response->status < 500) break;
  }
  return fail(last.code, "IMDS {}: GET {}: {}", options_.endpoint, path, last.message);
}

Result<std::string> ImdsClient::region() {
  auto value = get("/latest/meta-data/placement/region");
  if (!value) return value;
  return firstLine(*value);
}

Result<std::string> ImdsClient::availabilityZone() {
  auto value = get("/latest/meta-data/placement/availability-zone");
  if (!value) return value;
  return firstLine(*value);
}

Result<std::string> ImdsClient::instanceId() {
  auto value = get("/latest/meta-data/instance-id");
  if (!value) return value;
  return firstLine(*value);
}

Result<Credentials> ImdsClient::roleCredentials() {
  auto roles = get(kRolesPath);
  if (!roles) {
    if (roles.error().code == ErrorCode::kNotFound) {
      return fail(ErrorCode::kNotFound, "IMDS {}: no IAM role is attached to this instance",
                  options_.endpoint);
    }
    return fail(roles.error());
  }
  const std::string role = firstLine(*roles);
  if (!validRoleName(role)) {
    return fail(ErrorCode::kDataLoss, "IMDS {}: GET {}: {:?} is not a role name", options_.endpoint,
                kRolesPath, role);
  }
  const std::string path = kRolesPath + role;
  auto body = get(path);
  if (!body) return fail(body.error());

  const auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kDataLoss, "IMDS {}: GET {}: {}", options_.endpoint, path, why);
  };
  boost::system::error_code ec;
  const boost::json::value document = boost::json::parse(*body, ec);
  if (ec || !document.is_object()) return bad("not a JSON object");
  const auto& object = document.get_object();
  if (auto code = jsonString(object, "Code"); code && *code != "Success") {
    return bad(fmt::format("Code {} ({})", *code, jsonString(object, "Message").value_or("")));
  }
  auto key = jsonString(object, "AccessKeyId");
  auto secret = jsonString(object, "SecretAccessKey");
  auto session_token = jsonString(object, "Token");
  auto expiration = jsonString(object, "Expiration");
  if (!key || !secret || !session_token || !expiration || key->empty() || secret->empty()) {
    return bad("missing AccessKeyId, SecretAccessKey, Token or Expiration");
  }
  auto expires = parseExpiration(*expiration);
  if (!expires) return bad(expires.error().message);
  return Credentials{.access_key_id = std::move(*key),
                     .secret_access_key = std::move(*secret),
                     .session_token = std::move(*session_token),
                     .expiration = *expires,
                     .source = "imds:" + role};
}

}  // namespace ecs::aws
