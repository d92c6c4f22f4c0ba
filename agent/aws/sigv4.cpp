#include "agent/aws/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <span>

#include "agent/aws/url.h"
#include "agent/common/text.h"

namespace ecs::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

// Headers proxies and HTTP libraries may rewrite on the way (botocore leaves them out too).
constexpr std::string_view kUnsignedHeaders[] = {"user-agent", "expect", "x-amzn-trace-id"};
// Headers the signer makes; a caller's copies (from an earlier attempt) are dropped.
constexpr std::string_view kSignerHeaders[] = {"authorization", "x-amz-date",
                                               "x-amz-security-token", "x-amz-content-sha256"};

std::string hex(const unsigned char* bytes, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xf];
  }
  return out;
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

bool isUnreserved(unsigned char c) {
  return text::isAlpha(static_cast<char>(c)) || text::isDigit(static_cast<char>(c)) || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

// RFC 3986 §5.2.4, and no empty segments (AWS wants repeated slashes gone), as botocore does.
std::string normalizePath(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    start = end + 1;
  }
  std::string out = path.front() == '/' ? "/" : "";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out += '/';
    out += segments[i];
  }
  if (path.back() == '/' && !segments.empty()) out += '/';
  return out;
}

std::string canonicalQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (start <= query.size() && !query.empty()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(start, end - start);
    if (!pair.empty()) {
      size_t equals = pair.find('=');
      std::string_view name = pair.substr(0, equals);
      std::string_view value =
          equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
      pairs.emplace_back(uriEncode(text::percentDecode(name, true)),
                         uriEncode(text::percentDecode(value, true)));
    }
    start = end + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Trimmed, each inner run of whitespace one space.
std::string canonicalHeaderValue(std::string_view value) {
  std::string out;
  bool pending_space = false;
  for (char c : value) {
    if (isSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

bool listed(std::string_view name, std::span<const std::string_view> names) {
  return std::ranges::find(names, name) != names.end();
}

std::string amzDate(std::chrono::system_clock::time_point time) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
  return buffer;
}

}  // namespace

std::string sha256Hex(std::string_view data) {
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), bytes, &size, EVP_sha256(), nullptr);
  return hex(bytes, size);
}

std::string uriEncode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (isUnreserved(c) || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::string encodeQuery(const QueryParameters& parameters) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(parameters.size());
  for (const auto& [name, value] : parameters)
    encoded.emplace_back(uriEncode(name), uriEncode(value));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

Result<SigV4Signature> signV4(const SigV4Request& request, const SigV4Scope& scope,
                              const Credentials& credentials,
                              std::chrono::system_clock::time_point time) {
  std::optional<UrlParts> url = splitUrl(request.url);
  if (!url) return fail(ErrorCode::kInvalidArgument, "sign: URL has no scheme or host");
  if (credentials.access_key_id.empty() || credentials.secret_access_key.empty()) {
    return fail(ErrorCode::kInvalidArgument, "sign: credentials have no access key");
  }
  SigV4Signature out;
  const std::string date_time = amzDate(time);
  const std::string date = date_time.substr(0, 8);
  out.headers.add("X-Amz-Date", date_time);
  if (!credentials.session_token.empty()) {
    out.headers.add("X-Amz-Security-Token", credentials.session_token);
  }
  if (scope.content_sha256_header) out.headers.add("x-amz-content-sha256", request.payload_sha256);

  // Lowercase name -> values in the order sent.
  std::map<std::string, std::vector<std::string>> signed_headers;
  for (const auto& [name, value] : request.headers.fields()) {
    std::string lower = text::lowercase(name);
    if (listed(lower, kUnsignedHeaders) || listed(lower, kSignerHeaders)) continue;
    signed_headers[lower].push_back(canonicalHeaderValue(value));
  }
  if (!signed_headers.contains("host")) signed_headers["host"].push_back(hostHeader(request.url));
  for (const auto& [name, value] : out.headers.fields()) {
    signed_headers[text::lowercase(name)].push_back(value);
  }

  std::string canonical_headers, signed_names;
  for (const auto& [name, values] : signed_headers) {
    canonical_headers += name + ":";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) canonical_headers += ',';
      canonical_headers += values[i];
    }
    canonical_headers += '\n';
    if (!signed_names.empty()) signed_names += ';';
    signed_names += name;
  }

  out.canonical_request = request.method + "\n" + uriEncode(normalizePath(url->path), true) + "\n" +
                          canonicalQuery(url->query) + "\n" + canonical_headers + "\n" +
                          signed_names + "\n" + request.payload_sha256;
  const std::string credential_scope =
      date + "/" + scope.region + "/" + scope.service + "/aws4_request";
  out.string_to_sign = std::string(kAlgorithm) + "\n" + date_time + "\n" + credential_scope + "\n" +
                       sha256Hex(out.canonical_request);

  std::string key = hmac("AWS4" + credentials.secret_access_key, date);
  key = hmac(key, scope.region);
  key = hmac(key, scope.service);
  key = hmac(key, "aws4_request");
  std::string signature = hmac(key, out.string_to_sign);
  out.signature = hex(reinterpret_cast<const unsigned char*>(signature.data()), signature.size());
  out.headers.add(
      "Authorization",
      fmt::format("{} Credential={}/{}, SignedHeaders={}, Signature={}", kAlgorithm,
                  credentials.access_key_id, credential_scope, signed_names, out.signature));
  return out;
}

Result<void> signHttpRequest(HttpRequest& request, const SigV4Scope& scope,
                             const Credentials& credentials,
                             std::chrono::system_clock::time_point time) {
  for (std::string_view name : kSignerHeaders) request.headers.remove(name);
  SigV4Request signing{.method = request.method,
                       .url = request.url,
                       .headers = request.headers,
                       .payload_sha256 = sha256Hex(request.body)};
  Result<SigV4Signature> signature = signV4(signing, scope, credentials, time);
  if (!signature) return fail(signature.error());
  for (const auto& [name, value] : signature->headers.fields()) request.headers.add(name, value);
  return {};
}

}  // namespace ecs::aws
