#include "agent/cli/task_resources.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "agent/aws/credentials.h"

namespace ecs::cli {
namespace fs = std::filesystem;

std::vector<engine::TaskResourceFactory*> TaskResources::factories() const {
  std::vector<engine::TaskResourceFactory*> out;
  if (network) out.push_back(network.get());
  if (volumes) out.push_back(volumes.get());
  if (endpoints && endpoints->resource) out.push_back(endpoints->resource.get());
  return out;
}

metadata::MetadataContext metadataContext(const config::Config& config) {
  metadata::MetadataContext context;
  context.cluster = config.cluster;
  context.region = config.region.empty() ? "us-east-1" : config.region;
  if (!config.disable_task_metadata_az) context.availability_zone = config.availability_zone;
  return context;
}

void TaskEndpoints::update(const engine::TaskSnapshotPtr& task) {
  servers->update(task);
  resource->onSnapshot(task);
}

void TaskEndpoints::stop() {
  servers->stop();
  stats->stop();
}

std::unique_ptr<TaskEndpoints> startTaskEndpoints(const config::Config& config,
                                                  boost::asio::io_context& io) {
  auto out = std::make_unique<TaskEndpoints>();
  out->context = metadataContext(config);
  if (config.task_iam_role && config.run_host_credentials) {
    out->source =
        std::make_unique<credentials::HostCredentialsSource>(aws::makeDefaultCredentialChain());
  }
  metadata::StatsSamplerOptions stats_options;
  stats_options.cgroup_root = config.cgroup_path;
  out->stats = std::make_unique<metadata::StatsSampler>(io, stats_options);
  out->stats->start();

  endpoints::EndpointsOptions options;
  options.task_server_port = config.task_endpoint_port;
  options.introspection_port = config.introspection_port;
  options.prometheus_metrics = config.enable_prometheus_metrics;
  options.metrics_port = config.prometheus_metrics_port;
  options.rate_limit =
      endpoints::RateLimit{static_cast<double>(config.task_metadata_rps_limit.steady),
                           static_cast<double>(config.task_metadata_rps_limit.burst)};
  options.context = out->context;
  out->servers = std::make_unique<endpoints::AgentEndpoints>(options, out->store, out->stats.get());
  if (auto started = out->servers->start(); !started) {
    // Nothing serves, but the directory and the resource still work: tasks get the variables a
    // task definition expects, and their credentials are still revoked at the end.
    out->servers->stop();
    spdlog::warn(
        "task endpoints unavailable: {} (tasks still run, without credentials and "
        "metadata endpoints)",
        started.error().message);
  }

  endpoints::EndpointsResourceOptions resource_options;
  resource_options.region = out->context.region;
  resource_options.container_metadata = config.enable_container_metadata;
  resource_options.metadata_dir = (fs::path(config.data_dir) / "metadata").string();
  resource_options.context = out->context;
  out->resource = std::make_unique<endpoints::EndpointsResourceFactory>(
      resource_options, out->store, out->source.get(), out->servers->directory());
  out->servers->setStateLoaded();
  return out;
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

void sweepDeadAgents(const config::Config& config, volumes::TaskVolumesFactory* volumes) {
  const auto dead = netns::sweepDeadAgents(hostNetworkOptions(config));
  if (dead.empty()) return;
  std::unique_ptr<volumes::TaskVolumesFactory> opened;
  if (volumes == nullptr) {
    // Nothing to sweep where no volume was ever made; opening the store would create its root.
    const auto options = volumesOptions(config);
    std::error_code ec;
    if (!fs::exists(options.root, ec)) return;
    auto factory = volumes::TaskVolumesFactory::create(options);
    if (!factory) {
      spdlog::warn("sweep the volumes of dead agents: {}", factory.error().message);
      return;
    }
    opened = std::move(*factory);
    volumes = opened.get();
  }
  // Volumes of the dead tasks, and nothing of anyone else's: every task with a directory or a
  // mount under the volumes root is live unless it is one of the dead.
  std::set<std::string> live;
  for (const auto& mount : volumes->trackedMounts()) {
    for (const auto& task : mount.tasks) live.insert(task);
  }
  for (const char* kind : {"task", "efs"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fs::path(volumes->options().root) / kind, ec))
      live.insert(entry.path().filename().string());
  }
  for (const auto& id : dead) live.erase(id);
  volumes->sweep(live);
}

Result<TaskResources> makeTaskResources(const config::Config& config) {
  TaskResources resources;
  auto network = netns::TaskNetworkFactory::create(networkOptions(config));
  if (!network) return fail(network.error().wrap("set up task networking"));
  resources.network = std::move(*network);

  auto volumes = volumes::TaskVolumesFactory::create(volumesOptions(config));
  if (!volumes) return fail(volumes.error().wrap("set up task volumes"));
  resources.volumes = std::move(*volumes);

  sweepDeadAgents(config, resources.volumes.get());
  return resources;
}

}  // namespace ecs::cli
