#include "agent/aws/proxy.h"

#include <boost/asio/ip/address.hpp>
#include <cstdlib>
#include <initializer_list>

#include "agent/aws/url.h"
#include "agent/common/base64.h"
#include "agent/common/text.h"

namespace ecs::aws {
namespace {

constexpr std::string_view kDefaultNoProxy = "169.254.169.254,169.254.170.2";

// The first of `names` set to a non-empty value: its name and value.
std::optional<std::pair<std::string, std::string>> firstSet(
    std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (const char* value = std::getenv(name); value != nullptr && *value != 0) {
      return std::pair<std::string, std::string>(name, value);
    }
  }
  return std::nullopt;
}

bool isLoopback(const std::string& host) {
  if (host == "localhost" || host.ends_with(".localhost")) return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

bool inIpv4Block(const std::string& host, std::string_view block) {
  const size_t slash = block.find('/');
  boost::system::error_code ec1, ec2;
  const auto address = boost::asio::ip::make_address_v4(host, ec1);
  const auto network = boost::asio::ip::make_address_v4(std::string(block.substr(0, slash)), ec2);
  if (ec1 || ec2) return false;
  const int bits = std::atoi(std::string(block.substr(slash + 1)).c_str());
  if (bits < 0 || bits > 32) return false;
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (address.to_uint() & mask) == (network.to_uint() & mask);
}

bool bypassesProxy(const std::string& host) {
  const auto set = firstSet({"NO_PROXY", "no_proxy"});
  const std::string list = set ? set->second : std::string(kDefaultNoProxy);
  for (std::string_view rest = list; !rest.empty();) {
    const size_t comma = rest.find(',');
    std::string entry = text::lowercase(text::trim(rest.substr(0, comma)));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (entry == "*") return true;
    while (entry.starts_with('.')) entry.erase(0, 1);
    if (entry.empty()) continue;
    if (entry.find('/') != std::string::npos) {
      if (inIpv4Block(host, entry)) return true;
      continue;
    }
    // "host:port" entries name the host; the port is not compared.
    if (const size_t colon = entry.rfind(':');
        colon != std::string::npos && entry.find(':') == colon) {
      entry.resize(colon);
    }
    entry = withoutBrackets(entry);
    if (host == entry || (host.size() > entry.size() && host.ends_with("." + entry))) return true;
  }
  return false;
}

}  // namespace

Result<std::optional<Proxy>> proxyFor(std::string_view scheme, std::string_view host) {
  const std::string name = text::lowercase(withoutBrackets(host));
  if (isLoopback(name) || bypassesProxy(name)) return std::optional<Proxy>();
  const bool tls = scheme == "https" || scheme == "wss";
  const auto set = tls ? firstSet({"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                   "ALL_PROXY", "all_proxy"})
                       : firstSet({"http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"});
  if (!set) return std::optional<Proxy>();
  std::string url = set->second;
  if (url.find("://") == std::string::npos) url = "http://" + url;
  std::optional<UrlParts> parts = splitUrl(url);
  if (!parts || parts->scheme != "http") {
    return fail(ErrorCode::kInvalidArgument, "{} does not name an http:// proxy", set->first);
  }
  if (!parts->port.empty() && parts->port.find_first_not_of("0123456789") != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "{} has a port that is not a number", set->first);
  }
  Proxy proxy{withoutBrackets(parts->host), parts->port.empty() ? "1080" : parts->port, ""};
  if (!parts->userinfo.empty()) {
    proxy.authorization = "Basic " + encodeBase64(text::percentDecode(parts->userinfo));
  }
  return std::optional<Proxy>(std::move(proxy));
}

}  // namespace ecs::aws
