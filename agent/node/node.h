// Node: the composition root. From one Config it builds every long-lived part of the agent —
// the containerd client, registry client and puller (behind the engine's runtime and image
// interfaces), the task cgroup manager, the task resource factories (directory, cgroup, network,
// volumes, endpoints), the credentials store, stats sampler and HTTP endpoints, and the engine —
// in dependency order, and tears them down in reverse. `run` and the daemon are thin front ends
// over it: they differ only in where tasks come from and where state changes go.
#pragma once

#include <boost/asio.hpp>
#include <memory>
#include <string>

#include "agent/common/result.h"
#include "agent/config/config.h"
#include "agent/credentials/credentials_source.h"
#include "agent/credentials/credentials_store.h"
#include "agent/endpoints/agent_endpoints.h"
#include "agent/endpoints/endpoints_resource.h"
#include "agent/engine/task_directory.h"
#include "agent/engine/task_engine.h"
#include "agent/images/image_cleanup.h"
#include "agent/images/image_puller.h"
#include "agent/images/registry_client.h"
#include "agent/metadata/stats_sampler.h"
#include "agent/node/containerd_runtime.h"
#include "agent/runtime/containerd_client.h"
#include "cgroups/task_cgroup_resource.h"
#include "netns/host_network.h"
#include "netns/task_network.h"
#include "volumes/task_volumes.h"

namespace ecs::node {

struct NodeOptions {
  // Serve the host's own credentials for task roles (`run` only, with ECS_RUN_HOST_CREDENTIALS);
  // the daemon serves only what the cluster sent for each task.
  bool host_credentials = false;
  // Local environmentFiles from anywhere when ECS_ENVIRONMENT_FILES_DIR is unset (`run`: the task
  // definition is the operator's own); the daemon's tasks come from the cluster.
  bool environment_files_anywhere = false;
  // The daemon's registration: shown by introspection and the metadata endpoints.
  std::string container_instance_arn;
  std::string availability_zone;  // "" keeps the configured one
  // The daemon's housekeeping, off for `run` (which removes its one task at once and leaves
  // images alone): wait ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION before removing a stopped task's
  // containers, and delete unused images (ECS_IMAGE_CLEANUP_*, unless ECS_DISABLE_IMAGE_CLEANUP
  // or ECS_IMAGE_PULL_BEHAVIOR=prefer-cached).
  bool task_cleanup_wait = false;
  bool image_cleanup = false;
  // With image_cleanup: where the cleaner keeps when each image was last used, so its
  // least-recently-used order survives a restart (the daemon's state store; must outlive the
  // Node). Null: memory only.
  images::ImageUsageRecords* image_usage_records = nullptr;
  // The daemon first adopts the tasks an earlier process of its own left running, then sweeps
  // (sweep()): what it adopts must not be swept as a dead agent's leftovers.
  bool defer_sweep = false;
};

// The containerd connection and the image puller: what `images` needs, without tasks.
struct ImageServices {
  std::unique_ptr<runtime::ContainerdClient> containerd;
  std::unique_ptr<images::RegistryClient> registry;
  std::unique_ptr<images::ImagePuller> puller;
};
Result<ImageServices> connectImageServices(const config::Config& config);

// The agent's containers in its containerd namespace (with their task documents): what the
// daemon takes over from containerd alone when its state store is lost.
Result<std::vector<runtime::ContainerRecord>> listAgentContainers(const config::Config& config);

metadata::MetadataContext metadataContext(const config::Config& config);
netns::HostNetworkOptions hostNetworkOptions(const config::Config& config);
netns::TaskNetworkOptions networkOptions(const config::Config& config);
volumes::VolumesOptions volumesOptions(const config::Config& config);

class Node {
 public:
  // Connects to containerd, sets up the bridge and stores, sweeps what dead agents left, starts
  // the endpoints (a taken port is a warning: tasks still run, without them), and builds the
  // engine on `io`, sending state changes to `outbox`.
  static Result<std::unique_ptr<Node>> create(const config::Config& config,
                                              boost::asio::io_context& io,
                                              engine::StateChangeOutbox& outbox,
                                              NodeOptions options = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  engine::TaskEngine& engine() { return *engine_; }
  const metadata::MetadataContext& context() const { return context_; }
  credentials::CredentialsStore& credentials() { return credentials_; }
  endpoints::AgentEndpoints& endpoints() { return *servers_; }
  images::ImagePuller& puller() { return *images_.puller; }
  metadata::StatsSampler& stats() { return *stats_; }

  // Releases what agents that are gone left on the host (create() does it at once unless
  // defer_sweep).
  void sweep();

  // Stops the image cleaner, the endpoints and the stats sampler, then waits for the engine's
  // pools.
  void stop();

 private:
  Node() = default;

  metadata::MetadataContext context_;
  ImageServices images_;
  std::unique_ptr<ContainerdRuntime> runtime_;
  std::unique_ptr<PullerImageSource> image_source_;
  std::unique_ptr<cgroups::CgroupManager> cgroups_;
  engine::TaskDirectoryFactory directory_;
  std::unique_ptr<cgroups::TaskCgroupFactory> cgroup_resources_;
  std::unique_ptr<netns::TaskNetworkFactory> network_;
  std::unique_ptr<volumes::TaskVolumesFactory> volumes_;
  credentials::CredentialsStore credentials_;
  std::unique_ptr<credentials::CredentialsSource> host_credentials_;
  std::unique_ptr<metadata::StatsSampler> stats_;
  std::unique_ptr<endpoints::AgentEndpoints> servers_;
  std::unique_ptr<endpoints::EndpointsResourceFactory> endpoint_resources_;
  std::unique_ptr<engine::TaskEngine> engine_;
  std::unique_ptr<images::ContainerdImageStore> image_store_;  // with image_cleanup
  std::unique_ptr<images::ImageCleaner> image_cleaner_;
  bool stopped_ = false;
  config::Config config_;
};

}  // namespace ecs::node
