// Netlink: a small rtnetlink (NETLINK_ROUTE) client for what task networking needs — bridges,
// veth pairs whose peer is born inside the task's namespace, addresses, routes — without libnl
// and without exec'ing `ip` (a task network costs a handful of syscalls, not a dozen processes).
//
// A Netlink talks to the namespace its socket was created in: open() for the caller's, openIn()
// for another one (the socket is made on a thread that joined it). Not thread-safe: one per
// caller. Errors name the request and the kernel's reason (with its extended ack message when
// it gives one); EEXIST is kAlreadyExists and ENODEV/ENOENT kNotFound, so callers can be
// idempotent.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::netns {

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;   // IFLA_INFO_KIND: "bridge", "veth", ... ("" for loopback, physical)
  std::string alias;  // IFLA_IFALIAS: the agent tags its host-side veths with their owner
  int master = 0;     // ifindex of the bridge this link is a port of
  bool up = false;
  int mtu = 0;
};

struct Route {
  enum class Type { kUnicast, kUnreachable };
  Type type = Type::kUnicast;
  std::string destination = "0.0.0.0";  // IPv4
  int prefix_length = 0;                // 0: the default route
  std::string gateway;                  // empty: none (on-link or unreachable)
  int output_index = 0;                 // 0: chosen by the kernel from the gateway
};

class Netlink {
 public:
  // A socket in the calling thread's network namespace.
  static Result<Netlink> open();
  // A socket in the namespace at `netns_path`; the calling thread does not move.
  static Result<Netlink> openIn(const std::string& netns_path);

  Netlink(Netlink&& other) noexcept;
  Netlink& operator=(Netlink&& other) noexcept;
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;
  ~Netlink();

  // nullopt when no link has that name.
  Result<std::optional<LinkInfo>> findLink(const std::string& name);
  Result<std::vector<LinkInfo>> listLinks();

  // A bridge named `name` (kFailedPrecondition if a link of another kind has the name).
  // Idempotent. A fixed MAC keeps the bridge from taking its lowest port's address, which would
  // change it with every task.
  Result<void> createBridge(const std::string& name, int mtu, const std::array<uint8_t, 6>& mac);
  // A veth pair: `host_name` here, its peer `peer_name` created directly in the namespace
  // `peer_netns_fd` refers to (so it never appears in this one). kAlreadyExists if either name
  // is taken.
  Result<void> createVethPair(const std::string& host_name, const std::string& peer_name,
                              int peer_netns_fd, int mtu);
  // One RTM_NEWLINK on an existing link: master (0: leave), alias ("": leave), up.
  Result<void> configureLink(int index, int master_index, const std::string& alias, bool up);
  // The bridge port's hairpin mode, so a container can reach itself through its host port.
  Result<void> setHairpin(int index, bool on);
  // Idempotent for the same address.
  Result<void> addAddress(int index, const std::string& ipv4, int prefix_length);
  // Idempotent for the same route.
  Result<void> addRoute(const Route& route);
  // Idempotent: no such link is success.
  Result<void> deleteLink(const std::string& name);

 private:
  explicit Netlink(int fd);
  // Sends one request and waits for its ack (or, with NLM_F_DUMP, collects every reply).
  Result<void> request(std::vector<char>& message, const std::string& what,
                       std::vector<std::vector<char>>* replies = nullptr);

  int fd_ = -1;
  uint32_t seq_ = 0;
};

// Writes `value` to /proc/sys/<key> (key "net/ipv4/ip_forward").
Result<void> writeSysctl(const std::string& key, const std::string& value);
Result<std::string> readSysctl(const std::string& key);

}  // namespace ecs::netns
