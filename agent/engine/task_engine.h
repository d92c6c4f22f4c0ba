// TaskEngine: drives ECS tasks from known status toward desired status.
//
// One event loop (a Boost.Asio io_context run by one thread) owns all task state and makes every
// decision; it never blocks. Blocking work runs elsewhere and posts its result back to the loop:
// containerd calls, resource steps and health-check execs on a bounded worker pool; image pulls
// on a pool of their own (so slow pulls never hold up a stop); snapshot listeners, which may
// write files, on one serial strand. No locks guard engine state.
//
// Tasks arrive as TaskSpecs through upsert(): desired status only rises, and finished tasks are
// remembered so a redelivered payload never runs a stopped task again. Per container:
// NONE → PULLED → CREATED → RUNNING → STOPPED, forward only, gated by dependsOn (START, COMPLETE,
// SUCCESS, HEALTHY), links and volumesFrom. An essential container that stops stops the task;
// stopping goes in reverse dependency order, SIGTERM (or the image's StopSignal) then SIGKILL
// after stopTimeout. Every transition leaves through the StateChangeOutbox, in order.
//
// A STOPPED task releases its host ports and network at once, but its containers, directory and
// other resources stay (and its snapshot stays published as STOPPED) for task_cleanup_wait;
// then they are removed and the engine forgets the task. stopAndRemove() skips the wait.
//
// The engine knows containerd and images only through ContainerRuntime and ImageSource, and a
// task's directory, cgroup, network, volumes and credentials only as TaskResources.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/common/elastic_pool.h"
#include "agent/engine/container_runtime.h"
#include "agent/engine/engine_clock.h"
#include "agent/engine/task_resource.h"
#include "agent/engine/task_snapshot.h"
#include "agent/engine/task_spec.h"

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
  std::string image_digest;            // "sha256:..." of the image manifest; "" before the pull
  // Task changes only: when its first pull started and its last ended, and (STOPPED) when its
  // execution stopped — SubmitTaskStateChange's pullStartedAt, pullStoppedAt, executionStoppedAt.
  std::optional<std::chrono::system_clock::time_point> pull_started_at, pull_stopped_at,
      execution_stopped_at;
};

// Where state changes go: `run` prints them; the daemon persists them and submits them to the
// cluster. Called on the engine's loop, in the order the transitions happened: implementations
// queue and return, they never block.
class StateChangeOutbox {
 public:
  virtual ~StateChangeOutbox() = default;
  virtual void submit(const StateChange& change) = 0;
  // The task's containers and resources are gone and the engine has forgotten it.
  virtual void taskRemoved(const std::string& task_arn) = 0;
};

enum class PullBehavior { kDefault, kAlways, kOnce, kPreferCached };  // ECS_IMAGE_PULL_BEHAVIOR

struct EngineOptions {
  std::chrono::milliseconds default_stop_timeout{
      std::chrono::seconds(30)};  // ECS_CONTAINER_STOP_TIMEOUT
  PullBehavior pull_behavior = PullBehavior::kDefault;
  std::chrono::milliseconds pull_timeout{std::chrono::hours(2)};  // ECS_IMAGE_PULL_TIMEOUT
  std::string data_dir = "/var/lib/ecs/data";  // task directories: <data_dir>/tasks/<taskId>/...
  // Where local environmentFiles may be read from (ContainerSpecInputs); empty: refused.
  std::string environment_files_dir;
  std::string cluster = "default";
  // Containerd calls, resources, health checks. A task's start holds a worker while its shim and
  // runc come up (~100 ms): this many tasks of one payload start side by side.
  int workers = 16;
  int pull_workers = 4;            // concurrent pulls; more wait in the pull queue
  size_t finished_memory = 10000;  // finished task ARNs remembered against redelivery
  // How long a STOPPED task's containers stay before they and its resources are removed; 0:
  // removed as soon as the task stops (`run`).
  std::chrono::milliseconds task_cleanup_wait{0};  // ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION
};

// A task an earlier agent process was running, as the state store remembers it, for adopt().
struct AdoptedTask {
  TaskSpec spec;  // as the cluster sent it, with its desired status
  // The last task status that process published (kNone if it published none).
  ContainerStatus known = ContainerStatus::kNone;
  std::string stop_reason;
};

// What adopt() made of a task.
enum class Adoption {
  kAdopted,
  // Nothing of it runs in the runtime and it had not run yet: the earlier process died before
  // creating its containers. The engine does not hold it; the caller starts it afresh with
  // upsert() once the leftovers of the dead process have been swept.
  kStartAfresh,
};

struct EngineDependencies {
  ContainerRuntime* runtime = nullptr;
  ImageSource* images = nullptr;
  StateChangeOutbox* outbox = nullptr;
  // Directory, cgroup, network, volumes, endpoints...: created in this order, cleaned up in
  // reverse. The first one makes the task directory the others may use.
  std::vector<TaskResourceFactory*> resources;
};

class TaskEngine {
 public:
  TaskEngine(boost::asio::io_context& io, EngineDependencies deps, EngineOptions options);
  ~TaskEngine();
  TaskEngine(const TaskEngine&) = delete;
  TaskEngine& operator=(const TaskEngine&) = delete;

  // After every change to a task, with its new snapshot (the last one has `removed` set). Runs
  // off the loop, one call at a time, in order. Register before the first upsert.
  void addSnapshotListener(std::function<void(const TaskSnapshotPtr&)> listener);

  // Adds a task, or raises a known task's desired status (and takes its new credential ids).
  // A finished task stays finished. Thread-safe (posts to the loop).
  void upsert(TaskSpec spec);
  // Takes over a task an earlier agent process ran (after a crash or a restart): its resources
  // are recovered (TaskResource::recover) rather than created, then each container goes on from
  // what the runtime holds of it: a running one is watched again (same container, same process),
  // a created one is started, one that exited meanwhile is reported with its real exit code, a
  // missing one is created (or, in a task that was already running, reported STOPPED). A task
  // whose resources cannot be recovered is stopped with the reason. `done` (optional) runs on
  // the loop once the task is adopted, with an error if it could not be. Thread-safe.
  void adopt(AdoptedTask task, std::function<void(Result<Adoption>)> done = nullptr);
  // Moves a task's desired status to STOPPED with `reason`. Thread-safe.
  void stopTask(const std::string& task_arn, std::string reason);
  // Stops the task like stopTask() and removes it as soon as it has stopped, without the cleanup
  // wait; a task already stopped and waiting is removed now. For a shutdown that must leave
  // nothing behind. Thread-safe.
  void stopAndRemove(const std::string& task_arn, std::string reason);
  // stopAndRemove() for every task the engine knows. Thread-safe.
  void stopAndRemoveAll(std::string reason);

  // Where a container's output goes (valid once the task has started; files may not exist yet).
  std::string logPath(const std::string& task_arn, const std::string& container_name,
                      bool stderr_stream) const;

  // Waits for everything posted to the pools so far (shutdown). Pulls still running are asked
  // to stop first.
  void drain();

 private:
  struct Container;
  struct Task;

  void apply(TaskSpec spec);
  void addTask(TaskSpec spec);
  Task& makeTask(TaskSpec& spec);
  void adoptOnLoop(AdoptedTask adopted, std::function<void(Result<Adoption>)> done);
  void rememberFinished(const std::string& task_arn);
  void step(Task& task);
  void stepContainer(Task& task, Container& container);
  void stepStop(Task& task, Container& container);
  void updateTaskStatus(Task& task);
  void setDesiredStopped(Task& task, std::string reason);
  void stopContainerWithError(Task& task, Container& container, std::string reason);
  void emit(Task& task, Container* container, std::optional<HealthStatus> health = {});
  void publish(Task& task, bool removed = false);
  std::map<std::string, std::string> containerLabels(const Task& task, const Container& c) const;
  ContainerInfo containerInfo(const Task& task, const Container& c) const;
  // On a worker: every factory's resource, in order. What was made is in `made` even on
  // failure, for cleanup.
  Result<void> createResources(const TaskInfo& info,
                               std::vector<std::unique_ptr<TaskResource>>& made);

  enum class Gate { kOpen, kWait, kNever };
  Gate dependenciesFor(Task& task, Container& container, ContainerStatus next, std::string* why);
  std::vector<Container*> dependentsOf(Task& task, const Container& container);

  void createTaskResources(Task& task);
  void pull(Task& task, Container& container);
  void create(Task& task, Container& container);
  void start(Task& task, Container& container);
  void stopContainer(Task& task, Container& container);
  void handleExit(const std::string& runtime_id, uint32_t exit_status);
  void handleOom(const std::string& runtime_id);
  bool maybeRestart(Task& task, Container& container);
  void scheduleHealthCheck(Task& task, Container& container, std::chrono::milliseconds delay);
  void runHealthCheck(Task& task, Container& container);
  void taskStopped(Task& task);
  void markForRemoval(Task& task, std::string reason);
  void cleanup(Task& task);

  // Runs `work` on `pool`, then `done(task, result)` on the loop if the task still exists.
  template <typename Pool, typename Work, typename Done>
  void offload(Pool& pool, const std::string& task_arn, Work work, Done done);
  template <typename Work, typename Done>
  void offload(const std::string& task_arn, Work work, Done done) {
    offload(workers_, task_arn, std::move(work), std::move(done));
  }

  Task* findTask(const std::string& task_arn);

  boost::asio::io_context& io_;
  EngineDependencies deps_;
  EngineOptions options_;
  ElasticPool workers_;
  ElasticPool pulls_;
  boost::asio::thread_pool listener_thread_;
  boost::asio::strand<boost::asio::thread_pool::executor_type> listener_strand_;
  std::map<std::string, std::unique_ptr<Task>> tasks_;
  std::map<std::string, std::pair<std::string, std::string>> by_runtime_id_;  // id -> (arn, name)
  std::set<std::string> finished_;
  std::deque<std::string> finished_order_;  // oldest first, to bound finished_
  std::vector<std::function<void(const TaskSnapshotPtr&)>> snapshot_listeners_;
  std::shared_ptr<bool> alive_;
  // Runtime events arrive on containerd's threads and may come after the engine is gone (the
  // runtime outlives it): they reach the loop only through this gate, which ~TaskEngine closes.
  struct EventGate {
    std::mutex mutex;
    boost::asio::io_context* io = nullptr;  // under mutex; null once closed
  };
  std::shared_ptr<EventGate> event_gate_;
  // Set by drain(): pulls still running give up.
  std::shared_ptr<std::atomic<bool>> shutting_down_ = std::make_shared<std::atomic<bool>>(false);
};

// The task ID (last segment) of a task ARN.
std::string taskIdFromArn(std::string_view task_arn);

}  // namespace ecs::engine
