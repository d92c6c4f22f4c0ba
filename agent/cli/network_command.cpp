// `ecs-node-agent network sweep|teardown`: host network housekeeping outside a task.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/cli/commands.h"
#include "agent/cli/task_resources.h"

namespace ecs::cli {

int networkCommand(const config::Config& config, const Args& args) {
  if (args.size() != 1 || (args[0] != "sweep" && args[0] != "teardown")) {
    fmt::print(stderr, "usage: ecs-node-agent network sweep|teardown\n");
    return 2;
  }
  // makeTaskResources sets the bridge up and sweeps what dead agents left.
  auto resources = makeTaskResources(config);
  if (!resources) {
    fmt::print(stderr, "error: {}\n", resources.error().message);
    return 1;
  }
  if (args[0] == "sweep") return 0;
  // Teardown: every task's leftovers, then the bridge itself.
  resources->network->sweep({});
  if (auto removed = resources->network->bridge().remove(); !removed) {
    fmt::print(stderr, "error: {}\n", removed.error().message);
    return 1;
  }
  return 0;
}

}  // namespace ecs::cli
