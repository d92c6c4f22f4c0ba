// Wiring from Config to the task resources the engine drives for every task: the network
// (netns/) and the volumes (volumes/), in that order of creation.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/config/config.h"
#include "agent/credentials/credentials_source.h"
#include "agent/credentials/credentials_store.h"
#include "agent/endpoints/agent_endpoints.h"
#include "agent/endpoints/endpoints_resource.h"
#include "agent/engine/task_resource.h"
#include "agent/engine/task_snapshot.h"
#include "agent/metadata/stats_sampler.h"
#include "netns/host_network.h"
#include "netns/task_network.h"
#include "volumes/task_volumes.h"

namespace ecs::cli {

// The endpoints containers reach at 169.254.170.2 (credentials, task metadata), introspection
// and metrics, with the task resource that gives each container its credentials and metadata
// URIs. Declared before the factories that use them, so they outlive the engine's resources.
struct TaskEndpoints {
  credentials::CredentialsStore store;
  std::unique_ptr<credentials::CredentialsSource> source;  // null: no credentials for tasks
  std::unique_ptr<metadata::StatsSampler> stats;
  std::unique_ptr<endpoints::AgentEndpoints> servers;  // may have failed to start: then idle
  std::unique_ptr<endpoints::EndpointsResourceFactory> resource;

  metadata::MetadataContext context;
  // The engine's snapshot feed.
  void update(const engine::TaskSnapshotPtr& task);
  void stop();
};

metadata::MetadataContext metadataContext(const config::Config& config);

// Starts the servers on `io`'s threads' side (they run threads of their own). A port that is
// taken (another agent, or another `run`) is a warning, not an error: the tasks still run.
std::unique_ptr<TaskEndpoints> startTaskEndpoints(const config::Config& config,
                                                  boost::asio::io_context& io);

struct TaskResources {
  std::unique_ptr<netns::TaskNetworkFactory> network;
  std::unique_ptr<volumes::TaskVolumesFactory> volumes;
  TaskEndpoints* endpoints = nullptr;  // not owned; may be null

  std::vector<engine::TaskResourceFactory*> factories() const;
};

netns::HostNetworkOptions hostNetworkOptions(const config::Config& config);
netns::TaskNetworkOptions networkOptions(const config::Config& config);
volumes::VolumesOptions volumesOptions(const config::Config& config);

// Releases what agents that are gone left behind: their host ports, addresses, namespaces,
// rules, and the volumes of their tasks (through `volumes`, or a store opened for it if null
// and there is one). Creates nothing. Several `run` processes may share the host: only what
// belongs to a dead process is swept, never another live task's.
void sweepDeadAgents(const config::Config& config, volumes::TaskVolumesFactory* volumes);

// Sets up the bridge and the stores, then sweepDeadAgents.
Result<TaskResources> makeTaskResources(const config::Config& config);

}  // namespace ecs::cli
