#include "agent/node/reconciler.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <set>
#include <string>

namespace ecs::node {
namespace fs = std::filesystem;

void sweepDeadAgents(const netns::HostNetworkOptions& network,
                     const volumes::VolumesOptions& volume_options,
                     volumes::TaskVolumesFactory* volumes) {
  const auto dead = netns::sweepDeadAgents(network);
  if (dead.empty()) return;
  std::unique_ptr<volumes::TaskVolumesFactory> opened;
  if (volumes == nullptr) {
    // Nothing to sweep where no volume was ever made; opening the store would create its root.
    std::error_code ec;
    if (!fs::exists(volume_options.root, ec)) return;
    auto factory = volumes::TaskVolumesFactory::create(volume_options);
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

}  // namespace ecs::node
