// Wiring from Config to the task resources the engine drives for every task: the network
// (netns/) and the volumes (volumes/), in that order of creation.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/config/config.h"
#include "agent/engine/task_resource.h"
#include "netns/task_network.h"
#include "volumes/task_volumes.h"

namespace ecs::cli {

struct TaskResources {
  std::unique_ptr<netns::TaskNetworkFactory> network;
  std::unique_ptr<volumes::TaskVolumesFactory> volumes;

  std::vector<engine::TaskResourceFactory*> factories() const;
};

netns::TaskNetworkOptions networkOptions(const config::Config& config);

// Sets up the bridge and the stores, and releases what agents that are gone left behind
// (their host ports, addresses, namespaces, rules and mounts). Several `run` processes may share
// the host: only what belongs to a dead process is swept, never another live task's.
Result<TaskResources> makeTaskResources(const config::Config& config);

}  // namespace ecs::cli
