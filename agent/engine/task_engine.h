// TaskEngine: drives ECS tasks on containerd from known status toward desired status.
//
// One event loop (a Boost.Asio io_context run by one thread) owns all task state and makes every
// decision; it never blocks. Blocking work — pulls, containerd calls, health-check execs, cgroup
// writes — runs on a bounded worker pool and posts its result back to the loop. No locks guard
// engine state.
//
// Per container: NONE → PULLED → CREATED → RUNNING → STOPPED, forward only, gated by dependsOn
// (START, COMPLETE, SUCCESS, HEALTHY), links and volumesFrom. An essential container that stops
// stops the task; stopping goes in reverse dependency order, SIGTERM (or the image's StopSignal)
// then SIGKILL after stopTimeout. Each transition is emitted as a StateChange.
#pragma once

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config/config.h"
#include "agent/engine/task_definition.h"
#include "agent/engine/task_resource.h"
#include "agent/engine/task_snapshot.h"
#include "agent/images/image_puller.h"
#include "agent/runtime/containerd_client.h"
#include "agent/runtime/oci_spec.h"

namespace ecs::cgroups {
class CgroupManager;
struct TaskLimits;
}  // namespace ecs::cgroups

namespace ecs::engine {

// One transition the cluster (or `run`'s output) hears about: the fields of
// SubmitContainerStateChange / SubmitTaskStateChange.
struct StateChange {
  std::chrono::system_clock::time_point time;
  std::string task_arn;
  std::string container_name;  // empty for the task itself
  ContainerStatus status = ContainerStatus::kNone;
  std::optional<int> exit_code;
  std::string reason;
  std::vector<NetworkBinding> network_bindings;
  std::optional<HealthStatus> health;  // set when the change is a health change
  std::string runtime_id;              // containerd container ID
};

struct EngineOptions {
  std::chrono::milliseconds default_stop_timeout{
      std::chrono::seconds(30)};  // ECS_CONTAINER_STOP_TIMEOUT
  config::ImagePullBehavior pull_behavior = config::ImagePullBehavior::kDefault;
  std::string data_dir = "/var/lib/ecs/data";  // task directories: <data_dir>/tasks/<taskId>/...
  std::string cluster = "default";
  int workers = 4;
};

struct EngineDependencies {
  runtime::ContainerdClient* containerd = nullptr;
  images::ImagePuller* puller = nullptr;
  cgroups::CgroupManager* cgroups = nullptr;  // null: no task cgroups
  // Network, volumes, credentials, ...: created in this order, cleaned up in reverse.
  std::vector<TaskResourceFactory*> resources;
};

class TaskEngine {
 public:
  TaskEngine(boost::asio::io_context& io, EngineDependencies deps, EngineOptions options);
  ~TaskEngine();
  TaskEngine(const TaskEngine&) = delete;
  TaskEngine& operator=(const TaskEngine&) = delete;

  // Callbacks run on the engine's loop.
  void onStateChange(std::function<void(const StateChange&)> callback);
  // After a stopped task's containers, cgroup and directories are removed.
  void onTaskCleanedUp(std::function<void(const std::string& task_arn)> callback);
  // After every change to a task, with its new snapshot; the last one has `removed` set.
  void onTaskSnapshot(std::function<void(const TaskSnapshotPtr&)> callback);

  // Starts driving a validated task toward RUNNING. Thread-safe (posts to the loop).
  void startTask(std::string task_arn, TaskDefinition definition);
  // Moves a task's desired status to STOPPED. Thread-safe.
  void stopTask(const std::string& task_arn, std::string reason);

  // Where a container's output goes (valid once the task has started; files may not exist yet).
  std::string logPath(const std::string& task_arn, const std::string& container_name,
                      bool stderr_stream) const;

  // Waits for the worker pool to finish everything posted so far (shutdown).
  void drain();

 private:
  struct Container;
  struct Task;

  void addTask(std::string task_arn, TaskDefinition definition);
  void step(Task& task);
  void stepContainer(Task& task, Container& container);
  void stepStop(Task& task, Container& container);
  void updateTaskStatus(Task& task);
  void setDesiredStopped(Task& task, std::string reason);
  void emit(Task& task, Container* container, std::optional<HealthStatus> health = {});
  void publish(Task& task, bool removed = false);
  std::map<std::string, std::string> containerLabels(const Task& task, const Container& c) const;
  // On a worker: the task directory, cgroup and every factory's resource, in order. What was
  // made is in `made` even on failure, for cleanup.
  Result<void> createResources(const TaskInfo& info, const cgroups::TaskLimits& limits,
                               std::vector<std::unique_ptr<TaskResource>>& made);

  enum class Gate { kOpen, kWait, kNever };
  Gate dependenciesFor(Task& task, Container& container, ContainerStatus next, std::string* why);
  std::vector<Container*> dependentsOf(Task& task, const Container& container);

  void pull(Task& task, Container& container);
  void create(Task& task, Container& container);
  void start(Task& task, Container& container);
  void stopContainer(Task& task, Container& container);
  void handleExit(const std::string& runtime_id, uint32_t exit_status);
  void handleOom(const std::string& runtime_id);
  bool maybeRestart(Task& task, Container& container);
  void scheduleHealthCheck(Task& task, Container& container, std::chrono::milliseconds delay);
  void runHealthCheck(Task& task, Container& container);
  void cleanup(Task& task);

  // Runs `work` on the worker pool, then `done(result)` on the loop if the task still exists.
  template <typename Work, typename Done>
  void offload(const std::string& task_arn, Work work, Done done);

  Task* findTask(const std::string& task_arn);

  boost::asio::io_context& io_;
  EngineDependencies deps_;
  EngineOptions options_;
  boost::asio::thread_pool workers_;
  std::map<std::string, std::unique_ptr<Task>> tasks_;
  std::map<std::string, std::pair<std::string, std::string>> by_runtime_id_;  // id -> (arn, name)
  std::vector<std::function<void(const StateChange&)>> state_callbacks_;
  std::vector<std::function<void(const std::string&)>> cleanup_callbacks_;
  std::vector<std::function<void(const TaskSnapshotPtr&)>> snapshot_callbacks_;
  std::shared_ptr<bool> alive_;
};

// The task ID (last segment) of a task ARN.
std::string taskIdFromArn(std::string_view task_arn);

}  // namespace ecs::engine
