#include "netns/bridge_network.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "netns/host_network.h"
#include "netns/netlink.h"
#include "netns/network_names.h"

namespace ecs::netns {
namespace {

constexpr const char* kImdsAddress = "169.254.169.254";

// A locally administered unicast MAC derived from the bridge's name: stable across agent
// restarts, different for different bridges.
std::array<uint8_t, 6> bridgeMac(const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  std::array<uint8_t, 6> mac{0x02};
  for (size_t i = 1; i < mac.size(); ++i) mac[i] = static_cast<uint8_t>(hash >> (8 * i));
  return mac;
}

Result<int> linkIndex(Netlink& netlink, const std::string& name) {
  auto link = netlink.findLink(name);
  if (!link) return fail(link.error());
  if (!*link) return fail(ErrorCode::kNotFound, "no link named {}", name);
  return (*link)->index;
}

}  // namespace

BridgeNetwork::BridgeNetwork(BridgeNetworkOptions options, std::unique_ptr<Ipam> ipam)
    : options_(std::move(options)), ipam_(std::move(ipam)) {}

Result<std::unique_ptr<BridgeNetwork>> BridgeNetwork::create(BridgeNetworkOptions options) {
  if (options.bridge_name.empty() || options.bridge_name.size() > 15) {
    return fail(ErrorCode::kInvalidArgument, "bridge name '{}' must be 1-15 characters",
                options.bridge_name);
  }
  if (options.state_dir.empty()) {
    return fail(ErrorCode::kInvalidArgument, "the network state directory is not set");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.state_dir, ec);
  if (ec) {
    return fail(ErrorCode::kInternal, "create {}: {}", options.state_dir, ec.message());
  }
  auto ipam =
      Ipam::open({.state_path = options.state_dir + "/ipam.json", .subnet = options.subnet});
  if (!ipam) return fail(ipam.error().wrap("open the IPAM store"));
  std::unique_ptr<BridgeNetwork> network(new BridgeNetwork(std::move(options), std::move(*ipam)));
  if (auto ensured = network->ensure(); !ensured) return fail(ensured.error());
  return network;
}

Result<void> BridgeNetwork::ensure() {
  const std::string& bridge = options_.bridge_name;
  auto context = [&](const Error& error) {
    return fail(error.wrap(fmt::format("set up bridge {}", bridge)));
  };
  auto netlink = Netlink::open();
  if (!netlink) return context(netlink.error());
  if (auto made = netlink->createBridge(bridge, options_.mtu, bridgeMac(bridge)); !made) {
    return context(made.error());
  }
  auto index = linkIndex(*netlink, bridge);
  if (!index) return context(index.error());
  if (auto added = netlink->addAddress(*index, ipam_->gateway(), ipam_->prefixLength()); !added) {
    return context(added.error());
  }
  if (auto up = netlink->configureLink(*index, 0, "", true); !up) return context(up.error());
  // route_localnet on the bridge only: 169.254.170.2 is DNATed to 127.0.0.1, and the 127.0.0.1
  // port mapping leaves by the bridge; the ECS-INPUT guard keeps the rest of loopback private.
  for (const auto& [key, value] : {std::pair<std::string, std::string>{"net/ipv4/ip_forward", "1"},
                                   {fmt::format("net/ipv4/conf/{}/route_localnet", bridge), "1"}}) {
    if (auto written = writeSysctl(key, value); !written) return context(written.error());
  }
  if (auto base = Iptables::replaceTagged(kBaseTag, baseRules()); !base) {
    return context(base.error());
  }
  const BridgeRuleOptions rule_options{.bridge = bridge,
                                       .subnet = ipam_->subnet(),
                                       .endpoint_port = options_.endpoint_port,
                                       .host_network_endpoint = options_.host_network_endpoint};
  if (auto rules = Iptables::replaceTagged(bridgeTag(bridge), bridgeRules(rule_options)); !rules) {
    return context(rules.error());
  }
  return {};
}

Result<TaskInterface> BridgeNetwork::attach(const std::string& task_id, int slot,
                                            const std::string& key, const std::string& netns_path) {
  if (auto valid = validateTaskId(task_id); !valid) return fail(valid.error());
  if (slot < 0 || slot > kMaxSlot) {
    return fail(ErrorCode::kInvalidArgument, "interface slot {} out of range", slot);
  }
  auto address = ipam_->allocate(task_id, key);
  if (!address) return fail(address.error());
  const std::string veth = vethName(task_id, slot);
  auto context = [&](const Error& error) {
    return fail(
        error.wrap(fmt::format("attach {} to bridge {}", netns_path, options_.bridge_name)));
  };

  auto netlink = Netlink::open();
  if (!netlink) return context(netlink.error());
  auto bridge = linkIndex(*netlink, options_.bridge_name);
  if (!bridge) return context(bridge.error());
  const int netns_fd = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0) {
    return context(
        Error{ErrorCode::kNotFound, fmt::format("open {}: {}", netns_path, std::strerror(errno))});
  }
  auto created = netlink->createVethPair(veth, "eth0", netns_fd, options_.mtu);
  if (!created && created.error().code == ErrorCode::kAlreadyExists) {
    // A veth of this slot outlived an earlier attempt (the agent died mid-attach): its namespace
    // is gone or being replaced, so the link is stale.
    if (auto deleted = netlink->deleteLink(veth); deleted) {
      created = netlink->createVethPair(veth, "eth0", netns_fd, options_.mtu);
    }
  }
  ::close(netns_fd);
  if (!created) return context(created.error());

  auto configure = [&]() -> Result<void> {
    auto index = linkIndex(*netlink, veth);
    if (!index) return fail(index.error());
    if (auto set = netlink->configureLink(*index, *bridge, vethAlias(task_id, slot), true); !set) {
      return set;
    }
    if (auto hairpin = netlink->setHairpin(*index, true); !hairpin) return hairpin;
    return configureInside(netns_path, *address);
  };
  if (auto configured = configure(); !configured) {
    // Deleting the host side takes the peer in the namespace with it. One left behind goes with
    // the task's cleanup (detach deletes it by name) or the next sweep.
    if (auto deleted = netlink->deleteLink(veth); !deleted) {
      spdlog::warn("attach {}: {}", netns_path, deleted.error().message);
    }
    return context(configured.error());
  }
  return TaskInterface{.ip_address = *address,
                       .subnet = ipam_->subnet(),
                       .gateway = ipam_->gateway(),
                       .prefix_length = ipam_->prefixLength(),
                       .host_link = veth};
}

Result<void> BridgeNetwork::configureInside(const std::string& netns_path,
                                            const std::string& ip_address) {
  auto inside = Netlink::openIn(netns_path);
  if (!inside) return fail(inside.error());
  auto lo = linkIndex(*inside, "lo");
  if (!lo) return fail(lo.error());
  if (auto up = inside->configureLink(*lo, 0, "", true); !up) return up;
  auto eth0 = linkIndex(*inside, "eth0");
  if (!eth0) return fail(eth0.error());
  if (auto added = inside->addAddress(*eth0, ip_address, ipam_->prefixLength()); !added) {
    return added;
  }
  if (auto up = inside->configureLink(*eth0, 0, "", true); !up) return up;
  if (auto route = inside->addRoute({.gateway = ipam_->gateway(), .output_index = *eth0}); !route) {
    return route;
  }
  if (options_.block_imds) {
    // An unreachable route answers connect() at once with EHOSTUNREACH: nothing leaves the
    // namespace, and the task is not left waiting for a timeout.
    if (auto route = inside->addRoute(
            {.type = Route::Type::kUnreachable, .destination = kImdsAddress, .prefix_length = 32});
        !route) {
      return route;
    }
  }
  return {};
}

Result<void> BridgeNetwork::detach(const std::string& task_id, int slot) {
  auto netlink = Netlink::open();
  if (!netlink) return fail(netlink.error());
  // Deleting the host side removes the pair at once; left to the namespace's teardown it would go
  // later, from a kernel worker, and `ip link` would still show it for a while.
  return netlink->deleteLink(vethName(task_id, slot));
}

void BridgeNetwork::release(const std::string& task_id) {
  ipam_->release(task_id);
}

Result<TaskInterface> BridgeNetwork::reattach(const std::string& task_id, int slot,
                                              const std::string& key,
                                              const std::string& netns_path) {
  if (auto valid = validateTaskId(task_id); !valid) return fail(valid.error());
  if (slot < 0 || slot > kMaxSlot) {
    return fail(ErrorCode::kInvalidArgument, "interface slot {} out of range", slot);
  }
  auto addresses = ipam_->addresses(task_id);
  if (!addresses) return fail(addresses.error());
  auto address = addresses->find(key);
  if (address == addresses->end()) {
    return fail(ErrorCode::kNotFound, "no address of task {} for {} is recorded in {}/ipam.json",
                task_id, key, options_.state_dir);
  }
  std::error_code ec;
  if (!std::filesystem::exists(netns_path, ec)) {
    return fail(ErrorCode::kNotFound, "network namespace {} is gone", netns_path);
  }
  auto netlink = Netlink::open();
  if (!netlink) return fail(netlink.error());
  auto bridge = linkIndex(*netlink, options_.bridge_name);
  if (!bridge) return fail(bridge.error().wrap("bridge"));
  const std::string veth = vethName(task_id, slot);
  auto link = netlink->findLink(veth);
  if (!link) return fail(link.error());
  if (!*link || (*link)->kind != "veth") {
    return fail(ErrorCode::kNotFound, "veth {} of {} is gone", veth, netns_path);
  }
  if ((*link)->master != *bridge) {
    return fail(ErrorCode::kNotFound, "veth {} of {} is no longer a port of bridge {}", veth,
                netns_path, options_.bridge_name);
  }
  auto inside = Netlink::openIn(netns_path);
  if (!inside) return fail(inside.error());
  auto eth0 = inside->findLink("eth0");
  if (!eth0) return fail(eth0.error());
  if (!*eth0) return fail(ErrorCode::kNotFound, "{} has no eth0", netns_path);
  return TaskInterface{.ip_address = address->second,
                       .subnet = ipam_->subnet(),
                       .gateway = ipam_->gateway(),
                       .prefix_length = ipam_->prefixLength(),
                       .host_link = veth};
}

Result<void> BridgeNetwork::adopt(const std::string& task_id) {
  return ipam_->adopt(task_id);
}

Result<void> BridgeNetwork::addPortForwards(const std::string& task_id,
                                            const std::vector<PortForward>& forwards) {
  if (auto valid = validateTaskId(task_id); !valid) return fail(valid.error());
  return Iptables::replaceTagged(taskTag(task_id), portForwardRules(task_id, forwards));
}

Result<void> BridgeNetwork::removePortForwards(const std::string& task_id) {
  return Iptables::deleteTagged(taskTag(task_id));
}

Result<void> BridgeNetwork::remove() {
  return removeBridge(options_.bridge_name);
}

}  // namespace ecs::netns
