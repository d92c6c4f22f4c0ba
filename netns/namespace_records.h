// NamespaceRecords: the tasks whose network namespaces an agent made, kept in that agent's state
// directory. A task is recorded before its first namespace is made and released after its last
// is removed, so every `ecs-` namespace on the host — and every veth and rule of its task — is
// recorded in exactly one agent's state directory. Housekeeping (the sweep of dead agents'
// leftovers, teardown) acts on the tasks its own records name and on nothing else: two agents
// with different data directories and bridges never touch each other's tasks.
#pragma once

#include <memory>
#include <string>

#include "agent/common/result.h"
#include "netns/owner_store.h"

namespace ecs::netns {

class NamespaceRecords : public OwnerStore {
 public:
  // The records at `state_path` (a JSON file shared by the agent processes of one data
  // directory), created when missing; a file that cannot be read fails.
  static Result<std::unique_ptr<NamespaceRecords>> open(std::string state_path);

  // Records that `owner` (a task ID) has, or is about to have, namespaces, and makes the calling
  // agent process answer for them. Idempotent; how a restarted agent takes a task over too.
  virtual Result<void> record(const std::string& owner) = 0;
  // release(owner), owners(), sweepDead(), deadOwners() and adopt() as OwnerStore.
};

// The records at `state_path` for housekeeping; null when there is no file, and none is created.
std::unique_ptr<OwnerStore> openNamespaceOwners(const std::string& state_path);

}  // namespace ecs::netns
