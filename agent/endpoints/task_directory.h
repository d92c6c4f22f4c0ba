// TaskDirectory: the endpoints' read-only view of the tasks the engine runs, fed with the
// engine's snapshots (TaskEngine::addSnapshotListener) and indexed the ways requests find a task:
// by v3/v4 endpoint id (the per-container UUID in ECS_CONTAINER_METADATA_URI), by task ARN, by the
// caller's IP address (v2 metadata) and by container (Docker) id. Thread-safe and read-mostly:
// lookups hand out the immutable snapshot and never touch engine state.
//
// It also caches rendered response bodies per snapshot: metadata is read far more often than a
// task changes, and rendering JSON on every request would dominate the endpoint's cost.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_snapshot.h"

namespace ecs::endpoints {

struct ContainerRef {
  engine::TaskSnapshotPtr task;
  std::string container_name;
  // The container in `task`; null while the engine has not published it yet.
  const engine::ContainerSnapshot* container() const { return task->container(container_name); }
};

class TaskDirectory {
 public:
  // A new snapshot of a task; one with `removed` set forgets the task and its endpoint ids.
  void update(const engine::TaskSnapshotPtr& task);
  // The endpoint id of one container of a task (the task's resource registers it at create, so
  // it resolves as soon as the task's first snapshot arrives).
  void registerEndpoint(std::string endpoint_id, std::string task_arn, std::string container_name);
  void forgetEndpoints(std::string_view task_arn);

  // Snapshot-less lookups answer nullopt/null when the task is unknown.
  std::optional<ContainerRef> byEndpoint(std::string_view endpoint_id) const;
  engine::TaskSnapshotPtr byArn(std::string_view task_arn) const;
  // The task one of whose containers has `ip` (ContainerResources::ip_address).
  engine::TaskSnapshotPtr byIp(std::string_view ip) const;
  // Exact runtime id, or a unique prefix of at most 12 characters (Docker's short id).
  // kNotFound, or kInvalidArgument when a short id is ambiguous.
  Result<ContainerRef> byContainerId(std::string_view id) const;
  std::vector<engine::TaskSnapshotPtr> tasks() const;  // by ARN

  // Whether the agent has loaded its state; before that, a lookup that misses is answered 503
  // ("try again") instead of "not found".
  void setStateLoaded(bool loaded) { loaded_.store(loaded, std::memory_order_release); }
  bool stateLoaded() const { return loaded_.load(std::memory_order_acquire); }

  // The body `render` makes for `key` of this exact snapshot, rendered once per snapshot. A
  // stale snapshot (a newer one arrived meanwhile) is rendered but not cached.
  std::shared_ptr<const std::string> cachedBody(const engine::TaskSnapshotPtr& task,
                                                const std::string& key,
                                                const std::function<std::string()>& render) const;

 private:
  struct Entry {
    engine::TaskSnapshotPtr snapshot;
    mutable std::mutex cache_mutex;
    mutable std::unordered_map<std::string, std::shared_ptr<const std::string>> cache;
  };
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> tasks_;
  std::unordered_map<std::string, std::pair<std::string, std::string>>
      endpoints_;  // id -> arn, name
  std::atomic<bool> loaded_{false};
};

}  // namespace ecs::endpoints
