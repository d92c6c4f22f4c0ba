// URLs as the HTTP client and the SigV4 signer read them: split into parts without decoding (what
// is signed is what is sent), the Host header HTTP clients derive from them, and the origin two
// URLs must share before a credential may follow a redirect.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ecs::aws {

struct UrlParts {
  std::string scheme;    // lowercase
  std::string userinfo;  // "user:password" before an '@', as written (percent-encoded)
  std::string host;      // as written, brackets of an IPv6 literal included
  std::string port;      // empty when not written
  std::string path;      // as written; empty when the URL has none
  std::string query;     // after the '?', as written
};

// scheme://[userinfo@]host[:port][/path][?query][#fragment]. Nullopt without scheme or host.
std::optional<UrlParts> splitUrl(std::string_view url);

// Whether the URL writes no port, or its scheme's default (80 for http/ws, 443 for https/wss).
bool isDefaultPort(const UrlParts& parts);

// The port to connect to: the written one, else the scheme's default; empty for another scheme.
std::string connectPort(const UrlParts& parts);

// The Host header value for a URL as HTTP clients send it: lowercase host, IPv6 in brackets, the
// port only when it is not the scheme's default (80 for http/ws, 443 for https/wss). Empty when the
// URL has no host.
std::string hostHeader(std::string_view url);

// "scheme://host:port" of a URL, lower-cased, with the scheme's default port filled in; empty if
// the URL does not parse. Two URLs with one origin may share credentials.
std::string urlOrigin(const std::string& url);

// A host as the URL writes it, without the brackets of an IPv6 literal.
std::string withoutBrackets(std::string_view host);

// "host:port", an IPv6 host in brackets: a CONNECT request's target.
std::string authority(std::string_view host, std::string_view port);

// `reference` (a Location header) made absolute against the URL it came from.
std::string resolveUrl(std::string_view base, std::string_view reference);

}  // namespace ecs::aws
