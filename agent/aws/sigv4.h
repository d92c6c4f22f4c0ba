// AWS Signature Version 4: the Authorization header (and its companions) that every AWS API call
// and the ECS websocket upgrades (ACS, TCS) carry.
//
// A signature covers the method, the path and query exactly as sent, the headers, and the body's
// SHA-256, so a URL must not change after it is signed: build queries with encodeQuery(), which
// produces the canonical form (keys sorted, RFC 3986 escapes, a space as %20) the signer uses, and
// send that string. (A query in another form is signed the way the service will read it:
// escapes decoded, '+' taken for a space, then re-encoded and sorted.) The canonicalisation follows
// botocore's SigV4Auth (the reference the tests compare against): dot segments and repeated slashes
// are dropped from the path, which is then percent-encoded once more; header values are trimmed,
// inner runs of spaces collapsed.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/aws/credentials.h"
#include "agent/aws/http_client.h"
#include "agent/aws/url.h"
#include "agent/common/result.h"

namespace ecs::aws {

// Who the signature is for.
struct SigV4Scope {
  std::string service;  // signing name: "ecs" for the ECS API, ACS and TCS alike
  std::string region;   // "us-east-1"
  // Add (and sign) x-amz-content-sha256 with the payload hash. S3 wants it; ECS does not.
  bool content_sha256_header = false;
};

// A request as it will go on the wire.
struct SigV4Request {
  std::string method = "GET";
  // Absolute URL, path and query already percent-encoded as they will be sent. Its host gives the
  // Host header, unless `headers` holds one (then that one is signed).
  std::string url;
  // Every header sent with the request is signed, but for User-Agent, Expect and X-Amzn-Trace-Id
  // (which proxies and HTTP libraries rewrite) and any Authorization, X-Amz-Date or
  // X-Amz-Security-Token, which the signer makes itself.
  HttpHeaders headers;
  std::string payload_sha256;  // lowercase hex; sha256Hex("") for no body
};

// The headers to send along with the request's own: X-Amz-Date, X-Amz-Security-Token (with
// session credentials), x-amz-content-sha256 (when the scope asks), Authorization — in that order.
// The intermediate strings are kept for tests and for debugging a signature a service rejects.
struct SigV4Signature {
  HttpHeaders headers;
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // hex
};

// Signs `request` at `time` (the X-Amz-Date; AWS rejects signatures more than five minutes off its
// clock). kInvalidArgument for a URL without scheme and host, or credentials without a key.
Result<SigV4Signature> signV4(const SigV4Request& request, const SigV4Scope& scope,
                              const Credentials& credentials,
                              std::chrono::system_clock::time_point time);

// Signs an HttpRequest in place: hashes its body, signs its method, URL and headers, and adds the
// signature's headers (replacing any from an earlier attempt).
Result<void> signHttpRequest(HttpRequest& request, const SigV4Scope& scope,
                             const Credentials& credentials,
                             std::chrono::system_clock::time_point time);

// Lowercase hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

// RFC 3986 percent-encoding: every byte but A-Z a-z 0-9 - _ . ~ becomes %XX (uppercase hex); a
// space is %20, '+' is %2B, UTF-8 is escaped byte by byte. With `keep_slash`, '/' stays.
std::string uriEncode(std::string_view text, bool keep_slash = false);

// "k1=v1&k2=v2": each name and value uriEncode()d, sorted by encoded name then value. This is the
// canonical query SigV4 signs, so a URL built as `path + "?" + encodeQuery(...)` is sent exactly as
// signed.
using QueryParameters = std::vector<std::pair<std::string, std::string>>;
std::string encodeQuery(const QueryParameters& parameters);

}  // namespace ecs::aws
