// TaskSpec: the engine's input — one task as the cluster sends it (an ACS PayloadMessage task)
// or as `run` makes it from a task definition file. The definition part is parsed and validated
// at the edge (task_definition.h, agent/acs/acs_task.h); the engine never sees raw JSON.
//
// The engine upserts specs: a task it does not know is added; for a known task only the desired
// status may rise (RUNNING → STOPPED) and credential ids may change; a task it has finished is
// remembered, so a redelivered RUNNING payload never runs a stopped task again.
#pragma once

#include <string>

#include "agent/engine/task_definition.h"
#include "agent/engine/task_snapshot.h"

namespace ecs::engine {

struct TaskSpec {
  std::string arn;
  // kRunning or kStopped: what the cluster wants of the task.
  ContainerStatus desired = ContainerStatus::kRunning;
  // Family, revision, network mode, containers and volumes (ACS: family, version, containers,
  // volumes, networkMode, cpu, memory, pidMode, ipcMode).
  TaskDefinition definition;
  // Ids the task's credentials are stored under (the cluster chose them; `run` makes its own).
  // Empty: the task has no role of that kind.
  std::string role_credentials_id;            // served to the containers
  std::string execution_role_credentials_id;  // the agent's own use: pulls, secrets, logs
  // Opaque to the engine, put on every container it creates (ContainerSpec::task_document): the
  // daemon's way to take the task over from containerd alone. Never holds secrets.
  std::string document;
};

}  // namespace ecs::engine
