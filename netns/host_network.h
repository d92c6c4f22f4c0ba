// Host-level housekeeping of task networking, from the options alone: what dead agents left, and
// the removal of everything the agent made (uninstall, tests). Nothing here creates anything — no
// bridge, chain, store or directory — so each is safe on a host where the agent never ran, and
// none needs a TaskNetworkFactory.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "netns/owner_store.h"

namespace ecs::netns {

struct HostNetworkOptions {
  std::string bridge_name = "ecs-br0";  // ECS_BRIDGE_NAME
  std::string state_dir;                // <ECS_DATADIR>/netns: ipam.json, host_ports.json
};

// Removes the `ecs-` namespaces, `ecsv` veths and `ecs-task:` rules of every task not in
// `live_task_ids`, and releases what those tasks hold in `stores` (null entries are skipped).
// Returns the task IDs it cleaned up after. Logs what it could not remove and carries on.
std::vector<std::string> sweepTaskNetworks(const std::set<std::string>& live_task_ids,
                                           const std::vector<OwnerStore*>& stores);

// The task IDs whose addresses or host ports an agent process that is gone answers for —
// what sweepDeadAgents() would free — freeing nothing and creating no store. A restarted agent
// asks this before any sweep; the tasks it adopts (TaskResource::recover(), which makes this
// process answer for their records) are then no longer any dead agent's, and the sweep spares
// them.
std::vector<std::string> deadAgentTasks(const HostNetworkOptions& options);

// Frees the addresses and host ports whose agent process is gone, then removes the network of
// every task no live agent answers for: a task is live while an agent still holds an allocation
// for it, or has its namespace (another agent still starting one makes the namespace first).
// Returns the task IDs the dead agents held, so that their other resources can go too.
std::vector<std::string> sweepDeadAgents(const HostNetworkOptions& options);

// Every task network (sweepTaskNetworks with no live task), then removeBridge. No task of this
// host may be running. On a host with none of it, succeeds and changes nothing.
Result<void> teardownHostNetwork(const HostNetworkOptions& options);

// The bridge's rules, the ECS- chains when no other bridge's rules are left, and the bridge.
// What is not there is skipped; a link of that name that is not a bridge is left alone (error).
Result<void> removeBridge(const std::string& bridge_name);

}  // namespace ecs::netns
