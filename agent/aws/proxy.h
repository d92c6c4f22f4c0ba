// The HTTP proxy the environment names for one of the agent's own connections (ECS API,
// registries, AWS services, the ACS and TCS websockets), read as the real ECS agent reads it:
//
//   https and wss: HTTPS_PROXY or https_proxy, else HTTP_PROXY or http_proxy (the ECS guide sets
//                  only HTTP_PROXY in /etc/ecs/ecs.config), else ALL_PROXY or all_proxy;
//   http and ws:   http_proxy or HTTP_PROXY, else ALL_PROXY or all_proxy;
//   NO_PROXY or no_proxy: hosts that go direct ("*", or a comma-separated list of names, each
//                  covering its subdomains, addresses and IPv4 CIDR blocks). When neither is set,
//                  169.254.169.254 and 169.254.170.2 go direct, as the real agent arranges.
//
// localhost and loopback addresses are never proxied. Only http:// proxies are spoken to (a
// proxy URL without a scheme is taken as one); credentials in the proxy URL become a
// Proxy-Authorization: Basic header.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace ecs::aws {

struct Proxy {
  std::string host;           // without IPv6 brackets
  std::string port;           // 1080 when the proxy URL names none, as curl assumes
  std::string authorization;  // "Basic ..." when the proxy URL carries user:password; else empty
};

// Nullopt: connect directly. kInvalidArgument when the variable that applies is not a usable
// http:// proxy URL (named in the message, its value not: it may hold a password).
Result<std::optional<Proxy>> proxyFor(std::string_view scheme, std::string_view host);

}  // namespace ecs::aws
