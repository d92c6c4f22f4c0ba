#include "netns/host_network.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "netns/host_port_allocator.h"
#include "netns/ipam.h"
#include "netns/iptables.h"
#include "netns/namespace_records.h"
#include "netns/netlink.h"
#include "netns/network_names.h"
#include "netns/network_namespace.h"

namespace ecs::netns {
namespace {

// Whether namespace `netns` is one of `tasks`': ecs-<id> or ecs-<id>-<digits>.
bool belongsTo(const std::set<std::string>& tasks, const std::string& netns) {
  const auto task = taskOfNamespace(netns);
  if (task && tasks.contains(*task)) return true;
  // taskOfNamespace reads a trailing -<digits> as a slot; an ID ending in one is whole too.
  return tasks.contains(netns.substr(kNamespacePrefix.size()));
}

// The stores under `state_dir` that exist; none is created.
struct ExistingStores {
  std::unique_ptr<OwnerStore> ipam;
  std::unique_ptr<OwnerStore> host_ports;
  std::unique_ptr<OwnerStore> namespaces;

  explicit ExistingStores(const std::string& state_dir)
      : ipam(openIpamOwners(state_dir + "/ipam.json")),
        host_ports(openHostPortOwners(state_dir + "/host_ports.json")),
        namespaces(openNamespaceOwners(state_dir + "/namespaces.json")) {}
  std::vector<OwnerStore*> all() const { return {ipam.get(), host_ports.get(), namespaces.get()}; }
};

std::set<std::string> deadOwners(const std::vector<OwnerStore*>& stores) {
  std::set<std::string> dead;
  for (OwnerStore* store : stores) {
    if (store == nullptr) continue;
    for (auto& id : store->deadOwners()) dead.insert(std::move(id));
  }
  return dead;
}

}  // namespace

std::set<std::string> recordedTasks(const std::vector<OwnerStore*>& stores) {
  std::set<std::string> tasks;
  for (OwnerStore* store : stores) {
    if (store == nullptr) continue;
    for (auto& id : store->owners()) tasks.insert(std::move(id));
  }
  return tasks;
}

std::vector<std::string> sweepTaskNetworks(const std::set<std::string>& tasks,
                                           const std::vector<OwnerStore*>& stores) {
  std::set<std::string> swept;
  if (tasks.empty()) return {};
  for (const auto& netns : listNamespaces(std::string(kNamespacePrefix))) {
    if (!belongsTo(tasks, netns)) continue;
    if (auto removed = removeNamespace(netns); !removed) {
      spdlog::warn("sweep: {}", removed.error().message);
    }
    if (auto task = taskOfNamespace(netns)) swept.insert(*task);
  }
  if (auto netlink = Netlink::open(); netlink) {
    // A veth is named after a hash of its task's ID and gets its alias when it is attached: one
    // without an alias (an attach cut short) is matched by the name alone.
    std::set<std::string> prefixes;
    for (const auto& id : tasks) prefixes.insert(vethName(id, 0).substr(0, 12));
    auto links = netlink->listLinks();
    if (!links) spdlog::warn("sweep: {}", links.error().message);
    for (const auto& link : links ? *links : std::vector<LinkInfo>{}) {
      if (!link.name.starts_with(kVethPrefix) || link.kind != "veth") continue;
      const auto owner = taskOfVethAlias(link.alias);
      if (owner ? !tasks.contains(*owner) : !prefixes.contains(link.name.substr(0, 12))) continue;
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
      if (!tasks.contains(id)) continue;
      if (auto deleted = Iptables::deleteTagged(taskTag(id)); !deleted) {
        spdlog::warn("sweep: {}", deleted.error().message);
      }
      swept.insert(id);
    }
  } else {
    spdlog::warn("sweep: {}", rules.error().message);
  }
  // Last: a task stays recorded until what it had on the host is gone.
  for (OwnerStore* store : stores) {
    if (store == nullptr) continue;
    for (const auto& owner : store->owners()) {
      if (!tasks.contains(owner)) continue;
      store->release(owner);
      swept.insert(owner);
    }
  }
  for (const auto& id : swept) spdlog::info("sweep: removed the network leftovers of task {}", id);
  return {swept.begin(), swept.end()};
}

std::vector<std::string> deadAgentTasks(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  const auto dead = deadOwners(stores.all());
  return {dead.begin(), dead.end()};
}

std::vector<std::string> sweepDeadAgents(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  std::set<std::string> dead = deadOwners(stores.all());
  if (dead.empty()) return {};
  sweepTaskNetworks(dead, stores.all());
  // What the sweep released were the dead agents' records; any a dying agent left meanwhile
  // go the same way (a record is only dropped with its task's objects).
  for (int round = 0; round < 3; ++round) {
    std::set<std::string> late;
    for (auto& id : deadOwners(stores.all())) {
      if (!dead.contains(id)) late.insert(id);
    }
    if (late.empty()) break;
    sweepTaskNetworks(late, stores.all());
    dead.insert(late.begin(), late.end());
  }
  return {dead.begin(), dead.end()};
}

Result<void> teardownHostNetwork(const HostNetworkOptions& options) {
  const ExistingStores stores(options.state_dir);
  sweepTaskNetworks(recordedTasks(stores.all()), stores.all());
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
