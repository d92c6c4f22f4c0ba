// The reconciler: releases what agents that are gone left on the host — host ports, addresses,
// network namespaces, veths, rules and volume mounts — and nothing any live agent or task owns.
// Several agent processes may share the host (`run`s beside a daemon, tests): ownership comes
// from the allocation stores, which name each owner's process (pid and start time).
#pragma once

#include "netns/task_network.h"
#include "volumes/task_volumes.h"

namespace ecs::node {

void sweepDeadAgents(netns::TaskNetworkFactory& network, volumes::TaskVolumesFactory& volumes);

}  // namespace ecs::node
