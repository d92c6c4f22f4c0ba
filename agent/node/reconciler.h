// The reconciler: releases what agents that are gone left on the host — host ports, addresses,
// network namespaces, veths, rules and volume mounts — and nothing any live agent or task owns.
// Several agent processes may share the host (`run`s beside a daemon, tests): ownership comes
// from the allocation stores and the volume state, which name each task's agent process (pid and
// start time). It creates nothing: on a host without the stores it does nothing.
//
// After a crash, a restarted agent first asks tasksOfDeadAgents(), adopts the tasks it can still
// run (each resource's recover() makes this process answer for the task's records), and only
// then calls sweepDeadAgents(): adopted tasks belong to a live process and are spared.
#pragma once

#include <string>
#include <vector>

#include "netns/host_network.h"
#include "volumes/task_volumes.h"

namespace ecs::node {

// The IDs of the tasks whose host ports, addresses or volumes an agent process that is gone
// answers for, sorted; releases and creates nothing. `volumes` may be null: the volume state is
// then read if its root exists.
std::vector<std::string> tasksOfDeadAgents(const netns::HostNetworkOptions& network,
                                           const volumes::VolumesOptions& volume_options,
                                           volumes::TaskVolumesFactory* volumes);

// `volumes` may be null: a store is then opened for the sweep if its root exists.
void sweepDeadAgents(const netns::HostNetworkOptions& network,
                     const volumes::VolumesOptions& volume_options,
                     volumes::TaskVolumesFactory* volumes);

}  // namespace ecs::node
