// The ecs-node-agent subcommands. Each returns the process exit status.
#pragma once

#include <string>
#include <vector>

#include "agent/config/config.h"

namespace ecs::cli {

using Args = std::vector<std::string>;

int imagesCommand(const config::Config& config, const Args& args);
int runCommand(const config::Config& config, const Args& args);
// `network sweep`: release what dead agents left; `network teardown`: that, then remove the
// bridge and the agent's chains (uninstall, tests). No task of this host may be running.
int networkCommand(const config::Config& config, const Args& args);
// `daemon`: the node agent (registers, takes tasks from the cluster) until SIGTERM.
int daemonCommand(const config::Config& config, const Args& args);
// `status [--json]`: what the running agent's introspection endpoint says.
int statusCommand(const config::Config& config, const Args& args);

}  // namespace ecs::cli
