// StateReporter: the daemon's outbox. It turns the engine's state changes into
// SubmitTaskStateChange calls and delivers them, in order per task, until the cluster accepts each.
//
// What it sends follows the real agent: a task change only for RUNNING and STOPPED, each at most
// once per task; container changes (RUNNING, STOPPED, with runtime id, image digest, exit code,
// reason and network bindings) ride inside the next task change. Container changes that arrive
// while the task stays RUNNING (a non-essential container exits) are flushed after a jittered
// delay inside a change that repeats the task's current status. A task the agent could not read
// is reported STOPPED with the reason given.
//
// Delivery: a few sender threads, one task at a time each, so a slow task never holds up the
// others but a task's changes never overtake each other. Each change is retried with the
// state-change backoff until accepted; an InvalidParameterException drops it (the cluster will
// never take it). stop() leaves undelivered changes in pending() — the state store persists them
// across restarts.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "agent/aws/aws_json_client.h"
#include "agent/ecs/ecs_api.h"
#include "agent/ecs/ecs_client.h"
#include "agent/engine/task_engine.h"

namespace ecs::daemon {

// Delivers one change: EcsClient::submitTaskStateChange in the daemon, a fake in unit tests.
using TaskChangeSink =
    std::function<aws::AwsResult<void>(const ecsapi::TaskStateChange&, std::stop_token)>;

struct StateReporterOptions {
  std::string cluster;  // the task changes' cluster (ECS_CLUSTER)
  int senders = 4;
  aws::RetryPolicy retry = ecsapi::stateChangeRetryPolicy();
  // Container changes of a RUNNING task are flushed after a delay in [min, max].
  std::chrono::milliseconds container_flush_min{10000};
  std::chrono::milliseconds container_flush_max{30000};
  // Called (on the caller of submit) when a task change STOPPED is queued: revoke credentials.
  std::function<void(const std::string& task_arn)> on_task_stopped;
  std::function<double()> random;  // [0, 1); default a per-reporter generator
};

class StateReporter : public engine::StateChangeOutbox {
 public:
  StateReporter(TaskChangeSink sink, StateReporterOptions options);
  ~StateReporter() override;  // stop()
  StateReporter(const StateReporter&) = delete;
  StateReporter& operator=(const StateReporter&) = delete;

  // engine::StateChangeOutbox: queue and return (the engine's loop never waits here).
  void submit(const engine::StateChange& change) override;
  void taskRemoved(const std::string& task_arn) override;

  // A task of a payload the agent could not read: reported STOPPED with `reason` once.
  void reportUnrecognized(const std::string& task_arn, const std::string& cluster,
                          const std::string& reason);

  void start();
  // Waits up to `flush` for queued changes to go out, then stops the senders (a call in flight
  // is cancelled). What was not delivered stays in pending().
  void stop(std::chrono::milliseconds flush = std::chrono::milliseconds(0));

  // Changes queued and not yet accepted, in order per task.
  std::vector<ecsapi::TaskStateChange> pending() const;
  // Accepted changes so far (for the agent's metrics and tests).
  std::uint64_t delivered() const;

 private:
  struct TaskQueue {
    std::string cluster;
    std::deque<ecsapi::TaskStateChange> changes;
    // Container changes not yet sent, by container name (the latest wins).
    std::map<std::string, ecsapi::ContainerStateChange> containers;
    std::map<std::string, ecsapi::ReportedStatus> container_sent;
    std::optional<ecsapi::ReportedStatus> task_sent;  // the task status queued last
    std::optional<std::chrono::steady_clock::time_point> flush_at;
    bool busy = false;     // a sender holds its head
    bool removed = false;  // the engine forgot the task: drop the queue once empty
  };

  void senderLoop(std::stop_token stop);
  void queueTaskChange(TaskQueue& queue, const std::string& arn, ecsapi::ReportedStatus status,
                       const engine::StateChange* change);
  bool deliver(const ecsapi::TaskStateChange& change, std::stop_token stop);
  std::chrono::milliseconds flushDelay();

  TaskChangeSink sink_;
  StateReporterOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  std::map<std::string, TaskQueue> tasks_;
  std::set<std::string> unrecognized_;  // arns reported as unreadable (bounded)
  std::deque<std::string> unrecognized_order_;
  std::uint64_t delivered_ = 0;
  std::vector<std::jthread> senders_;
  std::uint64_t generation_ = 0;  // bumped under mutex_ with every wake_ notification
};

// The SubmitTaskStateChange form of an engine container change; nullopt for changes the cluster
// does not hear about (before RUNNING, health changes).
std::optional<ecsapi::ContainerStateChange> containerChange(const engine::StateChange& change);

}  // namespace ecs::daemon
