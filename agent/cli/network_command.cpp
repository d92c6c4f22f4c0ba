// `ecs-node-agent network sweep|teardown`: host network housekeeping outside a task.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/cli/commands.h"
#include "agent/node/node.h"
#include "agent/node/reconciler.h"

namespace ecs::cli {

int networkCommand(const config::Config& config, const Args& args) {
  if (args.size() != 1 || (args[0] != "sweep" && args[0] != "teardown")) {
    fmt::print(stderr, "usage: ecs-node-agent network sweep|teardown\n");
    return 2;
  }
  auto network = netns::TaskNetworkFactory::create(node::networkOptions(config));
  if (!network) {
    fmt::print(stderr, "error: {}\n", network.error().message);
    return 1;
  }
  auto volumes = volumes::TaskVolumesFactory::create(node::volumesOptions(config));
  if (!volumes) {
    fmt::print(stderr, "error: {}\n", volumes.error().message);
    return 1;
  }
  node::sweepDeadAgents(**network, **volumes);
  if (args[0] == "sweep") return 0;
  // Teardown: every task's leftovers, then the bridge itself.
  (*network)->sweep({});
  if (auto removed = (*network)->bridge().remove(); !removed) {
    fmt::print(stderr, "error: {}\n", removed.error().message);
    return 1;
  }
  return 0;
}

}  // namespace ecs::cli
