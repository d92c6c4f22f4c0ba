#include "agent/cli/task_resources.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "agent/aws/credentials.h"
#include "netns/iptables.h"
#include "netns/network_names.h"
#include "netns/network_namespace.h"

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

netns::TaskNetworkOptions networkOptions(const config::Config& config) {
  netns::TaskNetworkOptions options;
  options.bridge.bridge_name = config.bridge_name;
  options.bridge.subnet = config.bridge_subnet.toString();
  options.bridge.endpoint_port = config.task_endpoint_port;
  options.bridge.block_imds = config.awsvpc_block_imds;
  options.bridge.host_network_endpoint = config.task_iam_role && config.task_iam_role_network_host;
  options.bridge.state_dir = (fs::path(config.data_dir) / "netns").string();
  if (const auto& range = config.dynamic_host_port_range) {
    options.dynamic_port_range = {range->first, range->last};
  }
  options.reserved_tcp.assign(config.reserved_ports.begin(), config.reserved_ports.end());
  options.reserved_udp.assign(config.reserved_ports_udp.begin(), config.reserved_ports_udp.end());
  if (config.enable_prometheus_metrics)
    options.reserved_tcp.push_back(config.prometheus_metrics_port);
  return options;
}

namespace {

// What agents that are gone left behind: their allocations name them (by pid and start time);
// their namespaces, veths and rules go with them. Everything else on the host — another `run`
// still starting, whose namespace exists before its address does — is live.
void sweepDeadAgents(netns::TaskNetworkFactory& network, volumes::TaskVolumesFactory& volumes) {
  std::set<std::string> dead;
  for (auto& id : network.bridge().ipam().sweepDead()) dead.insert(id);
  for (auto& id : network.hostPorts().sweepDead()) dead.insert(id);
  if (dead.empty()) return;
  std::set<std::string> live;
  for (const auto& name : netns::listNamespaces("ecs-")) {
    if (auto task = netns::taskOfNamespace(name)) live.insert(*task);
  }
  for (const auto& id : network.bridge().ipam().owners()) live.insert(id);
  for (const auto& id : network.hostPorts().owners()) live.insert(id);
  for (const auto& id : dead) live.erase(id);
  network.sweep(live);
  // Volumes of the dead tasks, and nothing of anyone else's: every task with a directory or a
  // mount under the volumes root is live unless it is one of the dead.
  std::set<std::string> volume_live;
  for (const auto& mount : volumes.trackedMounts()) {
    for (const auto& task : mount.tasks) volume_live.insert(task);
  }
  for (const char* kind : {"task", "efs"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fs::path(volumes.options().root) / kind, ec))
      volume_live.insert(entry.path().filename().string());
  }
  for (const auto& id : dead) volume_live.erase(id);
  volumes.sweep(volume_live);
}

}  // namespace

Result<TaskResources> makeTaskResources(const config::Config& config) {
  TaskResources resources;
  auto network = netns::TaskNetworkFactory::create(networkOptions(config));
  if (!network) return fail(network.error().wrap("set up task networking"));
  resources.network = std::move(*network);

  volumes::VolumesOptions volume_options;
  volume_options.root = (fs::path(config.data_dir) / "volumes").string();
  volume_options.efs_mount_command = config.efs_mount_command;
  volume_options.region = config.region.empty() ? "us-east-1" : config.region;
  auto volumes = volumes::TaskVolumesFactory::create(std::move(volume_options));
  if (!volumes) return fail(volumes.error().wrap("set up task volumes"));
  resources.volumes = std::move(*volumes);

  sweepDeadAgents(*resources.network, *resources.volumes);
  return resources;
}

}  // namespace ecs::cli
