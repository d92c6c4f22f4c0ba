#include "agent/node/node.h"

#include <spdlog/spdlog.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>

#include "agent/aws/credentials.h"
#include "agent/common/process_identity.h"
#include "agent/node/reconciler.h"

namespace ecs::node {
namespace fs = std::filesystem;

namespace {

// This program's own path, for the shim to run its `log-writer` (resolved at start: a binary
// replaced later is still found by the path it had).
std::string selfExecutable() {
  std::error_code ec;
  auto path = fs::read_symlink("/proc/self/exe", ec);
  if (ec || !path.is_absolute()) {
    spdlog::warn("cannot resolve /proc/self/exe ({}): container output files are not capped",
                 ec ? ec.message() : path.string());
    return "";
  }
  return path.string();
}

}  // namespace

Result<ImageServices> connectImageServices(const config::Config& config) {
  ImageServices services;
  runtime::ContainerdOptions containerd_options;
  containerd_options.address = config.containerd_address;
  containerd_options.ns = config.containerd_namespace;
  containerd_options.log_writer = selfExecutable();
  containerd_options.output_limits = {config.container_log_max_size,
                                      config.container_log_max_files};
  auto containerd = runtime::ContainerdClient::connect(containerd_options);
  if (!containerd) {
    return fail(containerd.error().wrap(fmt::format(
        "connect to containerd at {} (ECS_CONTAINERD_ADDRESS)", config.containerd_address)));
  }
  services.containerd = std::move(*containerd);

  images::RegistryOptions registry_options;
  registry_options.insecure_registries = config.insecure_registries;
  registry_options.inactivity_timeout = config.image_pull_inactivity_timeout;
  if (!config.engine_auth_type.empty() || !config.engine_auth_data.empty()) {
    std::vector<std::string> warnings;
    registry_options.credentials = images::EngineAuthProvider::fromConfig(
        config.engine_auth_type, config.engine_auth_data, &warnings);
    for (const auto& warning : warnings) spdlog::warn("ECS_ENGINE_AUTH_DATA: {}", warning);
  }
  services.registry = std::make_unique<images::RegistryClient>(std::move(registry_options));
  services.puller = std::make_unique<images::ImagePuller>(*services.containerd, *services.registry);
  return services;
}

namespace {

// The leases of agent processes that are gone (killed in the middle of a pull or a create): what
// they hold would otherwise stay until they expire.
void sweepLeases(runtime::ContainerdClient& containerd) {
  auto leases = containerd.listLeasesWithLabels();
  if (!leases) {
    spdlog::warn("sweep: could not list leases: {}", leases.error().message);
    return;
  }
  size_t removed = 0;
  for (const auto& [id, labels] : *leases) {
    auto owner = labels.find(runtime::kLabelLeaseOwner);
    if (owner == labels.end()) continue;
    ProcessIdentity process;
    if (std::sscanf(owner->second.c_str(), "%d:%" SCNu64, &process.pid, &process.start_time) != 2 ||
        isAlive(process)) {
      continue;
    }
    if (auto deleted = containerd.deleteLease(id, /*sync_gc=*/false); !deleted) {
      spdlog::warn("sweep: lease {}: {}", id, deleted.error().message);
      continue;
    }
    ++removed;
  }
  if (removed > 0)
    spdlog::info("sweep: deleted {} lease(s) of agent processes that are gone", removed);
}

}  // namespace

Result<std::vector<runtime::ContainerRecord>> listAgentContainers(const config::Config& config) {
  runtime::ContainerdOptions options;
  options.address = config.containerd_address;
  options.ns = config.containerd_namespace;
  auto containerd = runtime::ContainerdClient::connect(options);
  if (!containerd) return fail(containerd.error());
  return (*containerd)->listContainers({{runtime::kLabelManagedBy, runtime::kManagedByValue}});
}

metadata::MetadataContext metadataContext(const config::Config& config) {
  metadata::MetadataContext context;
  context.cluster = config.cluster;
  context.region = config.region.empty() ? "us-east-1" : config.region;
  if (!config.disable_task_metadata_az) context.availability_zone = config.availability_zone;
  return context;
}

netns::HostNetworkOptions hostNetworkOptions(const config::Config& config) {
  return {.bridge_name = config.bridge_name,
          .state_dir = (fs::path(config.data_dir) / "netns").string()};
}

netns::TaskNetworkOptions networkOptions(const config::Config& config) {
  netns::TaskNetworkOptions options;
  options.bridge.bridge_name = config.bridge_name;
  options.bridge.subnet = config.bridge_subnet.toString();
  options.bridge.endpoint_port = config.task_endpoint_port;
  options.bridge.block_imds = config.awsvpc_block_imds;
  options.bridge.host_network_endpoint = config.task_iam_role && config.task_iam_role_network_host;
  options.bridge.state_dir = hostNetworkOptions(config).state_dir;
  if (const auto& range = config.dynamic_host_port_range) {
    options.dynamic_port_range = {range->first, range->last};
  }
  options.reserved_tcp.assign(config.reserved_ports.begin(), config.reserved_ports.end());
  options.reserved_udp.assign(config.reserved_ports_udp.begin(), config.reserved_ports_udp.end());
  if (config.enable_prometheus_metrics)
    options.reserved_tcp.push_back(config.prometheus_metrics_port);
  return options;
}

volumes::VolumesOptions volumesOptions(const config::Config& config) {
  volumes::VolumesOptions options;
  options.root = (fs::path(config.data_dir) / "volumes").string();
  options.efs_mount_command = config.efs_mount_command;
  options.region = config.region.empty() ? "us-east-1" : config.region;
  return options;
}

namespace {

engine::PullBehavior pullBehavior(config::ImagePullBehavior behavior) {
  switch (behavior) {
    case config::ImagePullBehavior::kAlways:
      return engine::PullBehavior::kAlways;
    case config::ImagePullBehavior::kOnce:
      return engine::PullBehavior::kOnce;
    case config::ImagePullBehavior::kPreferCached:
      return engine::PullBehavior::kPreferCached;
    case config::ImagePullBehavior::kDefault:
      break;
  }
  return engine::PullBehavior::kDefault;
}

std::unique_ptr<cgroups::CgroupManager> taskCgroups(const config::Config& config) {
  if (!config.task_cpu_mem_limit) return nullptr;
  cgroups::CgroupOptions options;
  options.root = config.cgroup_path;
  options.cpu_period = config.cgroup_cpu_period;
  options.pids_limit = config.task_pids_limit;
  auto manager = cgroups::CgroupManager::create(options);
  if (!manager && options.pids_limit > 0) {
    // A host without the pids controller still gets the other task limits.
    options.pids_limit = 0;
    if (auto without = cgroups::CgroupManager::create(options)) {
      spdlog::warn("task cgroups: {}; tasks run without a process limit (ECS_TASK_PIDS_LIMIT)",
                   manager.error().message);
      manager = std::move(without);
    }
  }
  if (!manager) {
    spdlog::warn("task cgroups are unavailable ({}); running without task-level limits",
                 manager.error().message);
    return nullptr;
  }
  if (auto ready = (*manager)->init(); !ready) {
    spdlog::warn("task cgroups are unavailable ({}); running without task-level limits",
                 ready.error().message);
    return nullptr;
  }
  return std::move(*manager);
}

}  // namespace

Result<std::unique_ptr<Node>> Node::create(const config::Config& config,
                                           boost::asio::io_context& io,
                                           engine::StateChangeOutbox& outbox, NodeOptions options) {
  std::unique_ptr<Node> node(new Node());
  node->context_ = metadataContext(config);
  node->context_.container_instance_arn = options.container_instance_arn;
  if (!options.availability_zone.empty() && !config.disable_task_metadata_az) {
    node->context_.availability_zone = options.availability_zone;
  }

  auto images = connectImageServices(config);
  if (!images) return fail(images.error());
  node->images_ = std::move(*images);
  node->runtime_ = std::make_unique<ContainerdRuntime>(*node->images_.containerd);
  node->image_source_ = std::make_unique<PullerImageSource>(*node->images_.puller);

  node->cgroups_ = taskCgroups(config);
  if (node->cgroups_) {
    node->cgroup_resources_ = std::make_unique<cgroups::TaskCgroupFactory>(*node->cgroups_);
  }
  auto network = netns::TaskNetworkFactory::create(networkOptions(config));
  if (!network) return fail(network.error().wrap("set up task networking"));
  node->network_ = std::move(*network);
  auto volumes = volumes::TaskVolumesFactory::create(volumesOptions(config));
  if (!volumes) return fail(volumes.error().wrap("set up task volumes"));
  node->volumes_ = std::move(*volumes);
  node->config_ = config;
  if (!options.defer_sweep) node->sweep();

  if (options.host_credentials && config.task_iam_role) {
    node->host_credentials_ =
        std::make_unique<credentials::HostCredentialsSource>(aws::makeDefaultCredentialChain());
  }
  metadata::StatsSamplerOptions stats_options;
  stats_options.cgroup_root = config.cgroup_path;
  node->stats_ = std::make_unique<metadata::StatsSampler>(io, stats_options);
  node->stats_->start();

  endpoints::EndpointsOptions endpoint_options;
  endpoint_options.task_server_port = config.task_endpoint_port;
  endpoint_options.introspection_port = config.introspection_port;
  endpoint_options.prometheus_metrics = config.enable_prometheus_metrics;
  endpoint_options.metrics_port = config.prometheus_metrics_port;
  endpoint_options.rate_limit =
      endpoints::RateLimit{static_cast<double>(config.task_metadata_rps_limit.steady),
                           static_cast<double>(config.task_metadata_rps_limit.burst)};
  endpoint_options.task_server_max_connections = config.task_endpoint_max_connections;
  endpoint_options.task_server_max_connections_per_client =
      config.task_endpoint_max_connections_per_client;
  endpoint_options.fd_reserve = config.reserved_fds;
  endpoint_options.context = node->context_;
  node->servers_ = std::make_unique<endpoints::AgentEndpoints>(endpoint_options, node->credentials_,
                                                               node->stats_.get());
  if (auto started = node->servers_->start(); !started) {
    // Nothing serves, but the directory and the resource still work: tasks get the variables a
    // task definition expects, and their credentials are still revoked at the end.
    node->servers_->stop();
    spdlog::warn(
        "task endpoints unavailable: {} (tasks still run, without credentials and "
        "metadata endpoints)",
        started.error().message);
  }
  endpoints::EndpointsResourceOptions resource_options;
  resource_options.region = node->context_.region;
  resource_options.container_metadata = config.enable_container_metadata;
  resource_options.metadata_dir = (fs::path(config.data_dir) / "metadata").string();
  resource_options.context = node->context_;
  node->endpoint_resources_ = std::make_unique<endpoints::EndpointsResourceFactory>(
      resource_options, node->credentials_, node->host_credentials_.get(),
      node->servers_->directory());
  node->servers_->setStateLoaded();

  engine::EngineDependencies deps;
  deps.runtime = node->runtime_.get();
  deps.images = node->image_source_.get();
  deps.outbox = &outbox;
  deps.resources.push_back(&node->directory_);
  if (node->cgroup_resources_) deps.resources.push_back(node->cgroup_resources_.get());
  deps.resources.push_back(node->network_.get());
  deps.resources.push_back(node->volumes_.get());
  deps.resources.push_back(node->endpoint_resources_.get());
  engine::EngineOptions engine_options;
  engine_options.default_stop_timeout = config.container_stop_timeout;
  engine_options.pull_behavior = pullBehavior(config.image_pull_behavior);
  engine_options.pull_timeout = config.image_pull_timeout;
  engine_options.data_dir = config.data_dir;
  const bool anywhere = config.environment_files_dir.empty() && options.environment_files_anywhere;
  engine_options.environment_files_dir =
      anywhere ? std::string(1, '/') : config.environment_files_dir;
  engine_options.cluster = config.cluster;
  if (options.task_cleanup_wait) engine_options.task_cleanup_wait = config.task_cleanup_wait;
  node->engine_ = std::make_unique<engine::TaskEngine>(io, std::move(deps), engine_options);
  node->engine_->addSnapshotListener(
      [servers = node->servers_.get(),
       resource = node->endpoint_resources_.get()](const engine::TaskSnapshotPtr& task) {
        servers->update(task);
        resource->onSnapshot(task);
      });

  if (options.image_cleanup && !config.image_cleanup_disabled &&
      config.image_pull_behavior != config::ImagePullBehavior::kPreferCached) {
    node->image_store_ = std::make_unique<images::ContainerdImageStore>(*node->images_.containerd);
    images::ImageCleanupOptions cleanup_options;
    cleanup_options.interval = config.image_cleanup_interval;
    cleanup_options.minimum_age = config.image_minimum_cleanup_age;
    cleanup_options.images_per_cycle = config.num_images_delete_per_cycle;
    node->image_cleaner_ = std::make_unique<images::ImageCleaner>(
        *node->image_store_, cleanup_options, options.image_usage_records);
    node->engine_->addSnapshotListener(
        [cleaner = node->image_cleaner_.get()](const engine::TaskSnapshotPtr& task) {
          cleaner->onSnapshot(task);
        });
    node->image_cleaner_->start();
  }
  return node;
}

void Node::sweep() {
  sweepDeadAgents(hostNetworkOptions(config_), volumesOptions(config_), volumes_.get());
  sweepLeases(*images_.containerd);
}

void Node::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (image_cleaner_) image_cleaner_->stop();
  servers_->stop();
  stats_->stop();
  engine_->drain();
}

Node::~Node() {
  stop();
  engine_.reset();  // before the resources and endpoints it uses
}

}  // namespace ecs::node
