// The node agent daemon (`ecs-node-agent daemon`): registers the host with the cluster, takes
// tasks over ACS, runs them on the node, reports every state change, serves each task its role's
// credentials, and runs until SIGTERM or SIGINT.
//
// Start: region (configured, else IMDS on EC2) → the agent's own credentials (environment, shared
// files, instance role) → RegisterContainerInstance (again with the saved ARN after a restart) →
// the node (containerd, networks, endpoints, engine) → the ACS session. Stop: the ACS session
// closes, the tasks are stopped and their STOPPED changes delivered (bounded), the node stops.
// Until the state store lands the agent cannot take over running tasks after a restart, so it
// stops them rather than leave them behind.
#pragma once

#include <chrono>
#include <string>

#include "agent/config/config.h"

namespace ecs::daemon {

// The process exit codes, as the real agent's service unit expects them.
inline constexpr int kExitSuccess = 0;
inline constexpr int kExitRestart = 1;   // a failure a restart may fix
inline constexpr int kExitTerminal = 5;  // configuration the agent cannot work with

struct DaemonOptions {
  std::string version;  // "0.1.0"
  std::string commit;   // a short hash, or the product name
  // How long shutdown waits for the tasks to stop and their changes to be delivered.
  std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(90)};
  std::chrono::milliseconds flush_timeout{std::chrono::seconds(10)};
};

// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
int runDaemon(const config::Config& config, const DaemonOptions& options);

// Where the daemon keeps what it must remember across restarts: <ECS_DATADIR>/state.db.
std::string stateStorePath(const config::Config& config);

}  // namespace ecs::daemon
