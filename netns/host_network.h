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
  std::string state_dir;  // <ECS_DATADIR>/netns: ipam.json, host_ports.json, namespaces.json
};

// What one agent owns is what its state directory records: a task's namespaces, addresses and
// host ports are recorded (namespaces.json, ipam.json, host_ports.json) before they are made and
// released after they are gone. Everything here acts on recorded tasks only, so agents with
// different data directories and bridges on one host never touch each other's tasks.

// Every task any of `stores` records (null entries are skipped).
std::set<std::string> recordedTasks(const std::vector<OwnerStore*>& stores);

// Removes the namespaces, veths and ecs-task: rules of `tasks`, then releases what those tasks
// hold in `stores` (null entries are skipped). Returns the task IDs it cleaned up after. Logs
// what it could not remove and carries on.
std::vector<std::string> sweepTaskNetworks(const std::set<std::string>& tasks,
                                           const std::vector<OwnerStore*>& stores);

// The task IDs of the state directory whose agent process is gone — what sweepDeadAgents()
// would free — freeing nothing and creating no store. A restarted agent asks this before any
// sweep; the tasks it adopts (TaskResource::recover(), which makes this process answer for their
// records) are then no longer any dead agent's, and the sweep spares them.
std::vector<std::string> deadAgentTasks(const HostNetworkOptions& options);

// Removes the network of every task of the state directory whose agent process is gone, then
// frees its records. Returns those task IDs, so that their other resources can go too.
std::vector<std::string> sweepDeadAgents(const HostNetworkOptions& options);

// The network of every task the state directory records (sweepTaskNetworks), then removeBridge.
// None of this data directory's tasks may be running; other agents' are left alone. On a host
// with none of it, succeeds and changes nothing.
Result<void> teardownHostNetwork(const HostNetworkOptions& options);

// The bridge's rules, the ECS- chains when no other bridge's rules are left, and the bridge.
// What is not there is skipped; a link of that name that is not a bridge is left alone (error).
Result<void> removeBridge(const std::string& bridge_name);

}  // namespace ecs::netns
