#include "agent/node/reconciler.h"

#include <filesystem>
#include <set>
#include <string>

#include "netns/network_names.h"
#include "netns/network_namespace.h"

namespace ecs::node {
namespace fs = std::filesystem;

// Dead agents' allocations name their tasks; those tasks' namespaces, veths and rules go with
// them. Everything else on the host — another `run` still starting, whose namespace exists
// before its address does — is live.
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

}  // namespace ecs::node
