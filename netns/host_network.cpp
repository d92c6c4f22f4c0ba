#include "netns/host_network.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "netns/host_port_allocator.h"
#include "netns/ipam.h"
#include "netns/iptables.h"
#include "netns/netlink.h"
#include "netns/network_names.h"
#include "netns/network_namespace.h"

namespace ecs::netns {
namespace {

// Whether namespace `netns` is one of a live task's: ecs-<id> or ecs-<id>-<digits>.
bool isLive(const std::set<std::string>& live, const std::string& netns) {
  for (const auto& id : live) {
    if (netns == taskNamespaceName(id)) return true;
    const std::string prefix = taskNamespaceName(id) + "-";
    if (netns.starts_with(prefix)) {
      const std::string rest = netns.substr(prefix.size());
      if (!rest.empty() &&
          std::ranges::all_of(rest, [](unsigned char c) { return std::isdigit(c); }))
        return true;
    }
  }
  return false;
}

// The stores under `state_dir` that exist; none is created.
struct ExistingStores {
  std::unique_ptr<OwnerStore> ipam;
  std::unique_ptr<OwnerStore> host_ports;

  explicit ExistingStores(const std::string& state_dir)
      : ipam(openIpamOwners(state_dir + "/ipam.json")),
        host_ports(openHostPortOwners(state_dir + "/host_ports.json")) {}
  std::vector<OwnerStore*> all() const { return {ipam.get(), host_ports.get()}; }
};

}  // namespace

std::vector<std::string> sweepTaskNetworks(const std::set<std::string>& live,
                                           const std::vector<OwnerStore*>& stores) {
  std::set<std::string> swept;
  for (const auto& netns : listNamespaces(std::string(kNamespacePrefix))) {
    if (isLive(live, netns)) continue;
    if (auto removed = removeNamespace(netns); !removed) {
      spdlog::warn("sweep: {}", removed.error().message);
    }
    if (auto task = taskOfNamespace(netns)) swept.insert(*task);
  }
  if (auto netlink = Netlink::open(); netlink) {
    std::set<std::string> live_prefixes;
    for (const auto& id : live) live_prefixes.insert(vethName(id, 0).substr(0, 12));
    auto links = netlink->listLinks();
    if (!links) spdlog::warn("sweep: {}", links.error().message);
    for (const auto& link : links ? *links : std::vector<LinkInfo>{}) {
      if (!link.name.starts_with(kVethPrefix) || link.kind != "veth") continue;
      const auto owner = taskOfVethAlias(link.alias);
      if (owner ? live.contains(*owner) : live_prefixes.contains(link.name.substr(0, 12))) continue;
      if (auto deleted = netlink->deleteLink(link.name); !deleted) {
        spdlog::warn("sweep: {}", deleted.error().message);
      }
      if (owner) swept.insert(*owner);
    }
  } else {
    spdlog::warn("sweep: {}", netlink.error().message);
  }
  if (auto rules = Iptables::snapshot(); rules) {
    for (const auto& id : rules->tagsWithPrefix(kTaskTagPrefix)) {
      if (live.contains(id)) continue;
      if (auto deleted = Iptables::deleteTagged(taskTag(id)); !deleted) {
        spdlog::warn("sweep: {}", deleted.error().message);
      }
      swept.insert(id);
    }
  } else {
    spdlog::warn("sweep: {}", rules.error().message);
  }
  for (OwnerStore* store : stores) {
    if (store == nullptr) continue;
    for (const auto& owner : store->owners()) {
      if (live.contains(owner)) continue;
      store->release(owner);
      swept.insert(owner);
    }
  }
  for (const auto& id : swept) spdlog::info("sweep: removed the network leftovers of task {}", id);
  return {swept.begin(), swept.end()};
}

std::vector<std::string> deadAgentTasks(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  std::set<std::string> dead;
  for (OwnerStore* store : stores.all()) {
    if (store == nullptr) continue;
    for (auto& id : store->deadOwners()) dead.insert(id);
  }
  return {dead.begin(), dead.end()};
}

std::vector<std::string> sweepDeadAgents(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  std::set<std::string> dead;
  for (OwnerStore* store : stores.all()) {
    if (store == nullptr) continue;
    for (auto& id : store->sweepDead()) dead.insert(id);
  }
  if (dead.empty()) return {};
  std::set<std::string> live;
  for (const auto& name : listNamespaces(std::string(kNamespacePrefix))) {
    if (auto task = taskOfNamespace(name)) live.insert(*task);
  }
  for (OwnerStore* store : stores.all()) {
    if (store == nullptr) continue;
    for (const auto& id : store->owners()) live.insert(id);
  }
  for (const auto& id : dead) live.erase(id);
  sweepTaskNetworks(live, stores.all());
  return {dead.begin(), dead.end()};
}

Result<void> teardownHostNetwork(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  sweepTaskNetworks({}, stores.all());
  return removeBridge(options.bridge_name);
}

Result<void> removeBridge(const std::string& bridge_name) {
  auto netlink = Netlink::open();
  if (!netlink) return fail(netlink.error());
  auto link = netlink->findLink(bridge_name);
  if (!link) return fail(link.error());
  if (*link && (*link)->kind != "bridge") {
    return fail(ErrorCode::kFailedPrecondition, "{} is a {} link, not a bridge: left alone",
                bridge_name, (*link)->kind.empty() ? "physical" : (*link)->kind);
  }
  if (auto rules = Iptables::deleteTagged(bridgeTag(bridge_name)); !rules) return rules;
  if (auto chains = Iptables::removeChainsIfUnused(kBaseTag); !chains) return chains;
  if (!*link) return {};
  return netlink->deleteLink(bridge_name);
}

}  // namespace ecs::netns
