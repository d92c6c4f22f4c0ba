// The reconciler: releases what agents that are gone left on the host — host ports, addresses,
// network namespaces, veths, rules and volume mounts — and nothing any live agent or task owns.
// Several agent processes may share the host (`run`s beside a daemon, tests): ownership comes
// from the allocation stores, which name each owner's process (pid and start time). It creates
// nothing: on a host without the stores it does nothing.
#pragma once

#include "netns/host_network.h"
#include "volumes/task_volumes.h"

namespace ecs::node {

// `volumes` may be null: a store is then opened for the sweep if its root exists.
void sweepDeadAgents(const netns::HostNetworkOptions& network,
                     const volumes::VolumesOptions& volume_options,
                     volumes::TaskVolumesFactory* volumes);

}  // namespace ecs::node
