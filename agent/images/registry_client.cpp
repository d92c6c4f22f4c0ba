#include "agent/images/registry_client.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "agent/aws/http_client.h"
#include "agent/common/text.h"
#include "agent/images/digest.h"

namespace ecs::images {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxManifestBytes = 4 << 20;  // containerd refuses larger manifests too
constexpr size_t kMaxTokenBytes = 1 << 20;
constexpr size_t kMaxErrorBodyBytes = 64 << 10;  // enough for any registry error document
constexpr int kMaxRedirects = 5;
// Docker's minimum: a token response without expires_in is good for 60 s.
constexpr std::chrono::seconds kDefaultTokenLifetime{60};
// Renew a cached token this long before it expires, so it does not lapse in flight.
constexpr std::chrono::seconds kTokenExpiryMargin{5};

constexpr std::array<const char*, 4> kAcceptedManifestTypes{
    kMediaTypeOciIndex, kMediaTypeOciManifest, kMediaTypeDockerList, kMediaTypeDockerManifest};

bool isAcceptedManifestType(std::string_view media_type) {
  return std::find(kAcceptedManifestTypes.begin(), kAcceptedManifestTypes.end(), media_type) !=
         kAcceptedManifestTypes.end();
}

// "host:port" -> "host", "[::1]:5000" -> "::1"
std::string_view bareHost(std::string_view host_port) {
  if (host_port.starts_with('[')) {
    return host_port.substr(1, host_port.find(']') - 1);
  }
  return host_port.substr(0, host_port.find(':'));
}

// localhost, 127.0.0.0/8 or ::1: registries Docker talks plain HTTP to without being told.
bool isLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// Registry errors: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown",...}]}
struct RegistryError {
  std::string code;
  std::string message;
};

std::vector<RegistryError> parseRegistryErrors(std::string_view body) {
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(body, ec);
  const boost::json::object* object = ec ? nullptr : root.if_object();
  const boost::json::value* errors = object ? object->if_contains("errors") : nullptr;
  if (errors == nullptr || !errors->is_array()) return {};
  std::vector<RegistryError> out;
  for (const boost::json::value& entry : errors->get_array()) {
    const boost::json::object* fields = entry.if_object();
    if (fields == nullptr) continue;
    RegistryError error;
    if (auto* code = fields->if_contains("code"); code && code->is_string()) {
      error.code = code->get_string();
    }
    if (auto* message = fields->if_contains("message"); message && message->is_string()) {
      error.message = message->get_string();
    }
    out.push_back(std::move(error));
  }
  return out;
}

std::string_view reasonPhrase(long status) {
  switch (status) {
    case 400:
      return "bad request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 416:
      return "range not satisfiable";
    case 429:
      return "too many requests";
    case 500:
      return "internal server error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return "unexpected HTTP status";
  }
}

// ---- requests --------------------------------------------------------------------------------

// One request to a registry or its token service, as the redirect loop carries it from hop to hop.
struct Exchange {
  aws::HttpRequest http;  // without Authorization
  // Authorization header value, empty for none. Dropped when a redirect leaves the origin: a
  // blob redirect to S3 or a CDN must not carry the registry's credentials (and S3 rejects it).
  std::string authorization;
};

// A request that failed without a response, worded for `peer` ("registry host:port" or "token
// service <realm> of registry host"); never with the URL, which may be pre-signed.
Error transportError(const aws::HttpError& error, std::string_view peer, size_t max_body) {
  const std::string& detail = error.cause.message;
  switch (error.failure) {
    case aws::HttpFailure::kConnect:
      return Error{ErrorCode::kUnavailable, fmt::format("cannot reach {}: {}", peer, detail)};
    case aws::HttpFailure::kBroken:
      return Error{ErrorCode::kUnavailable,
                   fmt::format("connection to {} broke: {}", peer, detail)};
    case aws::HttpFailure::kTimedOut:
      return Error{ErrorCode::kUnavailable, fmt::format("{} timed out: {}", peer, detail)};
    case aws::HttpFailure::kDeadline:
    case aws::HttpFailure::kCancelled:
      return Error{ErrorCode::kUnavailable, fmt::format("request to {} stopped: {}", peer, detail)};
    case aws::HttpFailure::kTooLarge:
      return Error{ErrorCode::kFailedPrecondition,
                   fmt::format("{} sent more than {} bytes", peer, max_body)};
    case aws::HttpFailure::kSink:
      return error.cause;
    case aws::HttpFailure::kOther:
      break;
  }
  return Error{ErrorCode::kUnavailable, fmt::format("request to {} failed: {}", peer, detail)};
}

// "<peer> refused the configured credentials (401: why)", or for an anonymous caller
// "<peer> refused anonymous access (401: why) and no credentials are configured for <registry>".
std::string refusal(std::string_view peer, long status, std::string_view why, bool had_credentials,
                    std::string_view registry) {
  std::string detail = why.empty() ? std::to_string(status) : fmt::format("{}: {}", status, why);
  if (had_credentials) {
    return fmt::format("{} refused the configured credentials ({})", peer, detail);
  }
  return fmt::format("{} refused anonymous access ({}) and no credentials are configured for {}",
                     peer, detail, registry);
}

}  // namespace

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    }
  }
  return out;
}

struct RegistryClient::Impl {
  struct Token {
    std::string value;
    Clock::time_point expires;
  };

  RegistryOptions options;
  aws::HttpClient http;
  std::mutex mu;
  std::map<std::pair<std::string, std::string>, Token> tokens;  // (host, scope); by mu
  std::set<std::string> basic_hosts;  // registries that asked for Basic auth; by mu

  explicit Impl(RegistryOptions registry_options)
      : options(std::move(registry_options)),
        http(aws::HttpClientOptions{.user_agent = options.user_agent}) {}

  std::optional<BasicCredentials> credentialsFor(const ImageReference& image) const {
    if (!options.credentials) return std::nullopt;
    return options.credentials->lookup(image);
  }

  // A GET with the registry's timeouts, stopping when `control` says so.
  aws::HttpRequest newRequest(std::string url, const PullControl& control) const {
    aws::HttpRequest request;
    request.url = std::move(url);
    request.connect_timeout = options.connect_timeout;
    request.inactivity_timeout = options.inactivity_timeout;
    request.deadline = control.deadline;
    request.cancelled = control.cancelled;
    request.max_body = kMaxErrorBodyBytes;
    return request;
  }

  // One request/response; no redirects. Fails only when no HTTP response was had. `peer`
  // names who we are talking to in messages: "registry host:port" or "token service <realm>".
  Result<aws::HttpResponse> performOnce(const Exchange& exchange, const std::string& peer) {
    const aws::HttpRequest* request = &exchange.http;
    aws::HttpRequest authorized;
    if (!exchange.authorization.empty()) {
      authorized = exchange.http;
      authorized.headers.set("Authorization", exchange.authorization);
      request = &authorized;
    }
    auto response = http.perform(*request);
    if (!response) return fail(transportError(response.error(), peer, request->max_body));
    return std::move(*response);
  }

  // Follows redirects itself to decide what the next hop may see: Authorization only while the
  // origin stays the same.
  Result<aws::HttpResponse> perform(Exchange exchange, const std::string& peer) {
    const std::string origin = aws::urlOrigin(exchange.http.url);
    for (int redirects = 0;; ++redirects) {
      Result<aws::HttpResponse> response = performOnce(exchange, peer);
      if (!response || response->status / 100 != 3 || response->redirect_url.empty()) {
        return response;
      }
      if (redirects == kMaxRedirects) {
        return fail(ErrorCode::kUnavailable, "{} redirected more than {} times", peer,
                    kMaxRedirects);
      }
      // Redirect URLs are often pre-signed: log where they lead, not what they say.
      bool same_origin = aws::urlOrigin(response->redirect_url) == origin;
      spdlog::debug("{}: redirected to {}", peer, same_origin ? "the same origin" : "another host");
      if (!same_origin) exchange.authorization.clear();
      exchange.http.url = response->redirect_url;
    }
  }

  std::string cachedAuthorization(const ImageReference& image, const std::string& scope) {
    const std::string host = image.registryHost();
    std::lock_guard lock(mu);
    if (auto it = tokens.find({host, scope});
        it != tokens.end() && Clock::now() + kTokenExpiryMargin < it->second.expires) {
      return "Bearer " + it->second.value;
    }
    if (basic_hosts.contains(host)) {
      if (auto credentials = credentialsFor(image)) return basicAuthorization(*credentials);
    }
    return {};
  }

  // Bearer: ask the realm for a token for service+scope, with Basic credentials if we have
  // some (the token service decides what an anonymous caller may do).
  Result<std::string> fetchToken(const ImageReference& image, const AuthChallenge& challenge,
                                 const std::string& default_scope,
                                 const std::optional<BasicCredentials>& credentials,
                                 const PullControl& control) {
    const std::string host = image.registryHost();
    if (challenge.realm.empty()) {
      return fail(ErrorCode::kUnauthorized, "registry {} sent a Bearer challenge without a realm",
                  host);
    }
    const std::string scope = challenge.scope.empty() ? default_scope : challenge.scope;
    std::string url =
        challenge.realm + (challenge.realm.find('?') == std::string::npos ? "?" : "&");
    if (!challenge.service.empty()) url += "service=" + percentEncode(challenge.service) + "&";
    url += "scope=" + percentEncode(scope);
    Exchange exchange{newRequest(std::move(url), control), {}};
    exchange.http.max_body = kMaxTokenBytes;
    if (credentials) exchange.authorization = basicAuthorization(*credentials);

    const std::string peer = fmt::format("token service {} of registry {}", challenge.realm, host);
    Result<aws::HttpResponse> response = perform(std::move(exchange), peer);
    if (!response) return fail(response.error());
    if (response->status == 401 || response->status == 403) {
      return fail(ErrorCode::kUnauthorized, "{}",
                  refusal(peer, response->status, registryMessage(*response),
                          credentials.has_value(), host));
    }
    if (response->status != 200) {
      return fail(response->status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kUnauthorized,
                  "{} answered {} ({})", peer, reasonPhrase(response->status), response->status);
    }

    boost::system::error_code ec;
    boost::json::value root = boost::json::parse(response->body, ec);
    const boost::json::object* object = ec ? nullptr : root.if_object();
    std::string token;
    std::chrono::seconds lifetime = kDefaultTokenLifetime;
    if (object != nullptr) {
      for (const char* key : {"token", "access_token"}) {
        if (auto* value = object->if_contains(key); value && value->is_string() && token.empty()) {
          token = value->get_string();
        }
      }
      if (auto* value = object->if_contains("expires_in"); value && value->is_number()) {
        auto seconds = value->to_number<double>(ec);
        if (!ec && seconds > 0) lifetime = std::chrono::seconds(static_cast<int64_t>(seconds));
      }
    }
    if (token.empty()) {
      return fail(ErrorCode::kUnauthorized, "token service {} for registry {} sent no token",
                  challenge.realm, host);
    }
    spdlog::debug("registry {}: got a token for {} valid {} s", host, scope, lifetime.count());
    std::lock_guard lock(mu);
    tokens[{host, scope}] = Token{token, Clock::now() + lifetime};
    return "Bearer " + token;
  }

  // Answers a 401 challenge: the Authorization header value to retry with.
  Result<std::string> authorize(const ImageReference& image, const aws::HttpResponse& response,
                                const std::string& default_scope, const PullControl& control) {
    const std::string host = image.registryHost();
    // Prefer Bearer when a registry offers several schemes.
    std::optional<AuthChallenge> challenge;
    for (const std::string& header : response.headers.getAll("WWW-Authenticate")) {
      auto parsed = AuthChallenge::parse(header);
      if (parsed && (!challenge || parsed->scheme == "bearer")) challenge = parsed;
    }
    if (!challenge) {
      return fail(ErrorCode::kUnauthorized,
                  "registry {} answered 401 without a usable WWW-Authenticate challenge", host);
    }
    std::optional<BasicCredentials> credentials = credentialsFor(image);
    if (challenge->scheme == "basic") {
      if (!credentials) {
        return fail(ErrorCode::kUnauthorized,
                    "registry {} requires authentication (Basic) and no credentials are "
                    "configured for it",
                    host);
      }
      std::lock_guard lock(mu);
      basic_hosts.insert(host);
      return basicAuthorization(*credentials);
    }
    if (challenge->scheme == "bearer") {
      return fetchToken(image, *challenge, default_scope, credentials, control);
    }
    return fail(ErrorCode::kUnauthorized,
                "registry {} asks for authentication scheme \"{}\", which is not supported", host,
                challenge->scheme);
  }

  // GET with authentication: sends what worked before, answers one 401 challenge, and turns a
  // refusal after that into kUnauthorized. Other statuses are the caller's to judge.
  Result<aws::HttpResponse> get(const ImageReference& image, Exchange exchange,
                                const PullControl& control) {
    const std::string host = image.registryHost();
    const std::string peer = "registry " + host;
    const std::string scope = "repository:" + image.repository + ":pull";
    exchange.authorization = cachedAuthorization(image, scope);
    Result<aws::HttpResponse> response = perform(exchange, peer);
    if (!response || response->status != 401) return response;

    Result<std::string> authorization = authorize(image, *response, scope, control);
    if (!authorization) return fail(authorization.error());
    exchange.authorization = std::move(*authorization);
    response = perform(std::move(exchange), peer);
    if (response && (response->status == 401 || response->status == 403)) {
      return fail(ErrorCode::kUnauthorized, "{}",
                  refusal(peer, response->status, registryMessage(*response),
                          credentialsFor(image).has_value(), host));
    }
    return response;
  }

  // The registry's own words when the body holds a registry error document; else empty.
  static std::string registryMessage(const aws::HttpResponse& response) {
    std::string out;
    for (const RegistryError& error : parseRegistryErrors(response.body)) {
      if (!out.empty()) out += "; ";
      out += error.message.empty() ? text::lowercase(error.code) : error.message;
    }
    return out;
  }

  // A non-success status as an Error: "manifest unknown (404) from registry host".
  static Error statusError(const aws::HttpResponse& response, const std::string& host) {
    std::vector<RegistryError> errors = parseRegistryErrors(response.body);
    ErrorCode code = ErrorCode::kUnknown;
    if (response.status == 404) {
      code = ErrorCode::kNotFound;
    } else if (response.status == 401 || response.status == 403) {
      code = ErrorCode::kUnauthorized;
    } else if (response.status == 408 || response.status == 429 || response.status >= 500) {
      code = ErrorCode::kUnavailable;
    }
    for (const RegistryError& error : errors) {
      if (error.code == "MANIFEST_UNKNOWN" || error.code == "NAME_UNKNOWN" ||
          error.code == "BLOB_UNKNOWN") {
        code = ErrorCode::kNotFound;
      }
    }
    std::string cause = registryMessage(response);
    if (cause.empty()) cause = reasonPhrase(response.status);
    return Error{code, fmt::format("{} ({}) from registry {}", cause, response.status, host)};
  }
};

RegistryClient::RegistryClient(RegistryOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

RegistryClient::~RegistryClient() = default;

std::string RegistryClient::baseUrl(const ImageReference& image) const {
  const std::string host = text::lowercase(image.registryHost());
  const std::string bare(bareHost(host));
  bool plain_http = isLoopbackHost(bare);
  for (const std::string& entry : impl_->options.insecure_registries) {
    std::string_view name = entry;
    for (std::string_view scheme : {"http://", "https://"}) {
      if (name.starts_with(scheme)) name.remove_prefix(scheme.size());
    }
    while (name.ends_with('/')) name.remove_suffix(1);
    const std::string wanted = text::lowercase(name);
    if (wanted == host || wanted == bare) plain_http = true;
  }
  return (plain_http ? "http://" : "https://") + image.registryHost();
}

Result<FetchedManifest> RegistryClient::fetchManifest(const ImageReference& image,
                                                      const std::string& reference,
                                                      const PullControl& control) {
  const std::string host = image.registryHost();
  std::string context = "pull " + image.str();
  if (reference != image.manifestReference()) context += ": manifest " + reference;
  const bool by_digest = reference.find(':') != std::string::npos;
  if (by_digest) {
    if (auto valid = validateDigest(reference); !valid) return fail(valid.error().wrap(context));
  } else if (reference.empty() || !std::all_of(reference.begin(), reference.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
             })) {
    return fail(ErrorCode::kInvalidArgument, "{}: \"{}\" is neither a tag nor a digest", context,
                reference);
  }

  Exchange exchange{
      impl_->newRequest(baseUrl(image) + "/v2/" + image.repository + "/manifests/" + reference,
                        control),
      {}};
  // All four types, always: given only Docker types a registry 404s an OCI manifest, and given
  // none it converts a schema 2 manifest to schema 1 (a different digest).
  std::string accept;
  for (const char* type : kAcceptedManifestTypes) {
    accept += type;
    accept += type == kAcceptedManifestTypes.back() ? "" : ", ";
  }
  exchange.http.headers.add("Accept", std::move(accept));
  exchange.http.max_body = kMaxManifestBytes;

  Result<aws::HttpResponse> response = impl_->get(image, std::move(exchange), control);
  if (!response) return fail(response.error().wrap(context));
  if (response->status != 200) return fail(Impl::statusError(*response, host).wrap(context));

  // Content-Type names the manifest's type; if it is generic, the body's mediaType does.
  std::string content_type = response->headers.get("Content-Type");
  std::string media_type(
      text::trimLine(std::string_view(content_type).substr(0, content_type.find(';'))));
  if (!isAcceptedManifestType(media_type)) {
    boost::system::error_code ec;
    boost::json::value root = boost::json::parse(response->body, ec);
    const boost::json::object* object = ec ? nullptr : root.if_object();
    const boost::json::value* field = object ? object->if_contains("mediaType") : nullptr;
    if (field != nullptr && field->is_string() && isAcceptedManifestType(field->get_string())) {
      media_type = field->get_string();
    } else {
      return fail(ErrorCode::kFailedPrecondition,
                  "{}: registry {} sent a manifest of unsupported type \"{}\" (want an OCI or "
                  "Docker schema 2 manifest or index)",
                  context, host, media_type);
    }
  }

  const std::string& body = response->body;
  std::string digest = sha256Digest(body);
  if (by_digest) {
    if (std::string actual = digestLike(reference, body); actual != reference) {
      return fail(ErrorCode::kDataLoss, "{}: registry {} sent a manifest whose digest is {}",
                  context, host, actual);
    }
    digest = reference;
  }
  if (std::string claimed = response->headers.get("Docker-Content-Digest"); !claimed.empty()) {
    // A digest algorithm we cannot compute is not evidence of corruption: skip the check.
    if (std::string actual = digestLike(claimed, body); !actual.empty() && actual != claimed) {
      return fail(ErrorCode::kDataLoss,
                  "{}: registry {} sent a manifest whose digest {} is not the {} its "
                  "Docker-Content-Digest header claims",
                  context, host, actual, claimed);
    }
  }
  return FetchedManifest{
      runtime::Descriptor{media_type, digest, static_cast<int64_t>(body.size()), {}},
      std::move(response->body)};
}

Result<void> RegistryClient::fetchBlob(const ImageReference& image, const runtime::Descriptor& blob,
                                       int64_t offset, const BlobSink& sink,
                                       const PullControl& control) {
  const std::string host = image.registryHost();
  const std::string context = fmt::format("pull {}: blob {}", image.str(), blob.digest);
  if (auto valid = validateDigest(blob.digest); !valid) return fail(valid.error().wrap(context));
  if (offset < 0 || (blob.size > 0 && offset > blob.size)) {
    return fail(ErrorCode::kInvalidArgument, "{}: offset {} is outside the blob's {} bytes",
                context, offset, blob.size);
  }
  if (blob.size > 0 && offset == blob.size) return {};  // already complete

  Exchange exchange{
      impl_->newRequest(baseUrl(image) + "/v2/" + image.repository + "/blobs/" + blob.digest,
                        control),
      {}};
  if (offset > 0) exchange.http.headers.add("Range", fmt::format("bytes={}-", offset));
  const int64_t max_stream = blob.size > 0 ? blob.size - offset : -1;
  int64_t skipped = 0;   // of the first `offset` bytes, when the server ignored Range
  int64_t streamed = 0;  // given to `sink`
  exchange.http.sink = [&](const aws::HttpResponse& head, std::string_view chunk) -> Result<void> {
    if (head.status == 200 && skipped < offset) {  // 200, not 206: the whole blob is coming
      auto skip = std::min<int64_t>(offset - skipped, static_cast<int64_t>(chunk.size()));
      skipped += skip;
      chunk.remove_prefix(static_cast<size_t>(skip));
    }
    if (max_stream >= 0 && streamed + static_cast<int64_t>(chunk.size()) > max_stream) {
      return fail(ErrorCode::kDataLoss, "registry {} sent more bytes than the blob's size", host);
    }
    if (chunk.empty()) return {};
    if (auto written = sink(chunk); !written) return written;
    streamed += static_cast<int64_t>(chunk.size());
    return {};
  };

  Result<aws::HttpResponse> response = impl_->get(image, std::move(exchange), control);
  if (!response) return fail(response.error().wrap(context));
  if (response->status != 200 && response->status != 206) {
    return fail(Impl::statusError(*response, host).wrap(context));
  }
  // A body without Content-Length that ends early (the connection closed) looks complete.
  if (blob.size > 0 && offset + streamed != blob.size) {
    return fail(ErrorCode::kUnavailable, "{}: registry {} ended the transfer after {} of {} bytes",
                context, host, offset + streamed, blob.size);
  }
  return {};
}

}  // namespace ecs::images
