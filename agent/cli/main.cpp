// ecs-node-agent: the Amazon ECS node agent for containerd hosts.
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "agent/cli/commands.h"
#include "agent/common/fd_limit.h"
#include "agent/config/config.h"
#include "agent/runtime/log_writer.h"

namespace {

// The agent's oom_score_adj: far below a task's (0), short of -1000 (never killed).
constexpr int kAgentOomScoreAdj = -900;

constexpr const char* kUsage =
    "usage: ecs-node-agent COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  daemon               run the node agent: register with the cluster (ECS_CLUSTER,\n"
    "                       ECS_BACKEND_HOST) and run the tasks it sends, until SIGTERM\n"
    "  status [--json]      what the running agent reports: cluster, instance, tasks\n"
    "  images pull REF...   pull images into containerd (operators pre-pull before registering)\n"
    "  images ls [-q]       list the images in the agent's containerd namespace\n"
    "  images rm REF...     remove images\n"
    "  run TASKDEF.json     run one task from an ECS task definition (JSON), no cluster needed\n"
    "      [--output json]  one JSON object per line: state changes and container output\n"
    "  network sweep        release what dead agents of this data directory left on the network\n"
    "  network teardown     remove this data directory's task networks and its bridge\n"
    "  version              print the agent's version\n"
    "\n"
    "configuration: /etc/ecs/ecs.config and ECS_* environment variables (see "
    "docs/configuration.md)\n";

spdlog::level::level_enum spdlogLevel(ecs::config::LogLevel level) {
  using ecs::config::LogLevel;
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kCrit:
      return spdlog::level::critical;
    case LogLevel::kNone:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

void setUpLogging(ecs::config::LogLevel level) {
  auto logger = spdlog::stderr_color_mt("ecs-node-agent");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlogLevel(level));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    fmt::print(args.empty() ? stderr : stdout, "{}", kUsage);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "log-writer") {
    // Not for users: what the containerd shim runs to write a container's output files (see
    // agent/runtime/task_io.h). No configuration: the shim gives it an empty environment.
    auto options = ecs::runtime::parseLogWriterArgs({args.begin() + 1, args.end()});
    if (!options) {
      fmt::print(stderr, "log-writer: {}\n", options.error().message);
      return 2;
    }
    return ecs::runtime::runLogWriter(*options);
  }
  if (args[0] == "version" || args[0] == "--version") {
    fmt::print("ecs-node-agent {}\n", ECS_NODE_AGENT_VERSION);
    return 0;
  }

  auto config = ecs::config::load(ecs::config::ConfigSources::fromProcess());
  if (!config) {
    fmt::print(stderr, "error: configuration: {}\n", config.error().message);
    // The daemon's service must not restart on configuration it can never work with.
    return args[0] == "daemon" ? 5 : 2;
  }
  // Before any thread starts: the proxy settings of /etc/ecs/ecs.config reach every client.
  for (const auto& [name, value] : config->proxy_environment)
    setenv(name.c_str(), value.c_str(), 1);
  // Interactive commands show their own progress; the agent's log is for problems unless asked.
  const bool interactive = args[0] == "run" || args[0] == "images" || args[0] == "status";
  using ecs::config::LogLevel;
  setUpLogging(config->log_level.value_or(interactive ? LogLevel::kWarn : LogLevel::kInfo));
  for (const auto& warning : config->warnings) spdlog::warn("configuration: {}", warning);
  // Descriptors are the endpoints' and the stats sampler's first shortage under load; the soft
  // limit's usual default (1,024) is far below what the hard limit allows.
  if (auto limit = ecs::raiseFdLimit()) {
    spdlog::debug("RLIMIT_NOFILE: soft {} -> {}, hard {}", limit->before.soft, limit->after.soft,
                  limit->after.hard);
  } else {
    spdlog::warn("{}", limit.error().message);
  }

  // Under memory pressure the kernel should kill a task's process, not the agent that serves
  // every task (tasks' processes descend from containerd's shims, not from the agent).
  if (std::ofstream oom("/proc/self/oom_score_adj"); !(oom << kAgentOomScoreAdj << std::flush)) {
    spdlog::warn("could not set the agent's oom_score_adj to {}", kAgentOomScoreAdj);
  }

  const std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "images") return ecs::cli::imagesCommand(*config, rest);
  if (command == "run") return ecs::cli::runCommand(*config, rest);
  if (command == "network") return ecs::cli::networkCommand(*config, rest);
  if (command == "daemon") return ecs::cli::daemonCommand(*config, rest);
  if (command == "status") return ecs::cli::statusCommand(*config, rest);
  fmt::print(stderr, "unknown command \"{}\"\n\n{}", command, kUsage);
  return 2;
}
