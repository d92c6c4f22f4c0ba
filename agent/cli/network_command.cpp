// `ecs-node-agent network sweep|teardown`: host network housekeeping outside a task, for the
// tasks ECS_DATADIR records and the bridge ECS_BRIDGE_NAME names only: another agent's tasks
// (another data directory, another bridge) are never touched. Neither sets anything up: on a
// host without the bridge or the stores, both succeed and create nothing.
#include <fmt/format.h>

#include "agent/cli/commands.h"
#include "agent/node/node.h"
#include "agent/node/reconciler.h"
#include "netns/host_network.h"

namespace ecs::cli {

int networkCommand(const config::Config& config, const Args& args) {
  if (args.size() != 1 || (args[0] != "sweep" && args[0] != "teardown")) {
    fmt::print(stderr, "usage: ecs-node-agent network sweep|teardown\n");
    return 2;
  }
  node::sweepDeadAgents(node::hostNetworkOptions(config), node::volumesOptions(config), nullptr);
  if (args[0] == "sweep") return 0;
  // Teardown: every recorded task's leftovers, then the bridge, and the chains if unused.
  if (auto removed = netns::teardownHostNetwork(node::hostNetworkOptions(config)); !removed) {
    fmt::print(stderr, "error: {}\n", removed.error().message);
    return 1;
  }
  return 0;
}

}  // namespace ecs::cli
