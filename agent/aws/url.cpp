#include "agent/aws/url.h"

#include "agent/common/text.h"

namespace ecs::aws {

std::optional<UrlParts> splitUrl(std::string_view url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return std::nullopt;
  UrlParts parts;
  parts.scheme = text::lowercase(url.substr(0, scheme_end));
  std::string_view rest = url.substr(scheme_end + 3);
  if (size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  size_t authority_end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    parts.userinfo = std::string(authority.substr(0, at));
    authority = authority.substr(at + 1);
  }
  size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    parts.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
  }
  if (authority.empty()) return std::nullopt;
  parts.host = std::string(authority);
  size_t question = rest.find('?');
  parts.path = std::string(rest.substr(0, question));
  if (question != std::string_view::npos) parts.query = std::string(rest.substr(question + 1));
  return parts;
}

bool isDefaultPort(const UrlParts& parts) {
  if (parts.port.empty()) return true;
  if (parts.scheme == "http" || parts.scheme == "ws") return parts.port == "80";
  if (parts.scheme == "https" || parts.scheme == "wss") return parts.port == "443";
  return false;
}

std::string connectPort(const UrlParts& parts) {
  if (!parts.port.empty()) return parts.port;
  if (parts.scheme == "http" || parts.scheme == "ws") return "80";
  if (parts.scheme == "https" || parts.scheme == "wss") return "443";
  return {};
}

std::string hostHeader(std::string_view url) {
  std::optional<UrlParts> parts = splitUrl(url);
  if (!parts) return {};
  std::string host = text::lowercase(parts->host);
  if (!isDefaultPort(*parts)) host += ":" + parts->port;
  return host;
}

std::string urlOrigin(const std::string& url) {
  std::optional<UrlParts> parts = splitUrl(url);
  if (!parts) return {};
  std::string port = connectPort(*parts);
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) return {};
  return parts->scheme + "://" + text::lowercase(parts->host) + ":" + port;
}

std::string withoutBrackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::string(host);
}

std::string authority(std::string_view host, std::string_view port) {
  const std::string bare = withoutBrackets(host);
  return (bare.find(':') != std::string::npos ? "[" + bare + "]" : bare) + ":" + std::string(port);
}

std::string resolveUrl(std::string_view base, std::string_view reference) {
  if (reference.find("://") != std::string_view::npos) return std::string(reference);
  std::optional<UrlParts> parts = splitUrl(base);
  if (!parts) return std::string(reference);
  if (reference.starts_with("//")) return parts->scheme + ":" + std::string(reference);
  std::string authority = parts->scheme + "://" + parts->host;
  if (!parts->port.empty()) authority += ":" + parts->port;
  if (reference.starts_with("/")) return authority + std::string(reference);
  std::string path = parts->path.empty() ? "/" : parts->path;
  if (reference.starts_with("?")) return authority + path + std::string(reference);
  return authority + path.substr(0, path.rfind('/') + 1) + std::string(reference);
}

}  // namespace ecs::aws
