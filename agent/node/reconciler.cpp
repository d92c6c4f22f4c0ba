#include "agent/node/reconciler.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <set>
#include <string>

namespace ecs::node {
namespace fs = std::filesystem;
namespace {

// `volumes`, or a store opened on `options.root` into `opened` when that exists; null when
// there is nothing to look at (opening would create the root).
volumes::TaskVolumesFactory* volumeStore(const volumes::VolumesOptions& options,
                                         volumes::TaskVolumesFactory* volumes,
                                         std::unique_ptr<volumes::TaskVolumesFactory>& opened) {
  if (volumes != nullptr) return volumes;
  std::error_code ec;
  if (!fs::exists(options.root, ec)) return nullptr;
  auto factory = volumes::TaskVolumesFactory::create(options);
  if (!factory) {
    spdlog::warn("open the volume state: {}", factory.error().message);
    return nullptr;
  }
  opened = std::move(*factory);
  return opened.get();
}

}  // namespace

std::vector<std::string> tasksOfDeadAgents(const netns::HostNetworkOptions& network,
                                           const volumes::VolumesOptions& volume_options,
                                           volumes::TaskVolumesFactory* volumes) {
  std::set<std::string> dead;
  for (auto& id : netns::deadAgentTasks(network)) dead.insert(std::move(id));
  std::unique_ptr<volumes::TaskVolumesFactory> opened;
  if (auto* store = volumeStore(volume_options, volumes, opened)) {
    for (auto& id : store->deadOwners()) dead.insert(std::move(id));
  }
  return {dead.begin(), dead.end()};
}

void sweepDeadAgents(const netns::HostNetworkOptions& network,
                     const volumes::VolumesOptions& volume_options,
                     volumes::TaskVolumesFactory* volumes) {
  std::set<std::string> dead;
  for (auto& id : netns::sweepDeadAgents(network)) dead.insert(std::move(id));
  std::unique_ptr<volumes::TaskVolumesFactory> opened;
  volumes = volumeStore(volume_options, volumes, opened);
  if (volumes == nullptr) return;
  // Tasks recorded in the volume state whose agent is gone, whatever their network held.
  for (auto& id : volumes->deadOwners()) dead.insert(std::move(id));
  if (dead.empty()) return;
  // Volumes of the dead tasks, and nothing of anyone else's: every task recorded, or with a
  // directory or a mount under the volumes root, is live unless it is one of the dead.
  std::set<std::string> live;
  for (auto& task : volumes->recordedTasks()) live.insert(std::move(task));
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

}  // namespace ecs::node
