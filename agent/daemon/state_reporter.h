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

// A queued change and the number the journal gave it (0 without a journal).
struct ReporterEntry {
  std::int64_t seq = 0;
  ecsapi::TaskStateChange change;
};

// What the reporter knew of a task when an earlier process stopped: restored before start().
struct ReporterTask {
  std::string arn;
  std::string cluster;
  std::optional<ecsapi::ReportedStatus> task_sent;  // the task status the cluster has
  std::map<std::string, ecsapi::ReportedStatus> container_sent;
  bool removed = false;  // the engine will not hear of it again
};

// Where the reporter's queue survives a restart (the daemon's state store). Called under the
// reporter's lock: implementations must be quick and must not call back into the reporter.
class ReporterJournal {
 public:
  virtual ~ReporterJournal() = default;
  // A change was queued; returns the number it is kept under (0: it could not be kept).
  virtual std::int64_t queued(const ecsapi::TaskStateChange& change) = 0;
  // The cluster accepted change `seq`, or refused it for good (`dropped`).
  virtual void delivered(std::int64_t seq, const ecsapi::TaskStateChange& change, bool dropped) = 0;
  // The engine has forgotten the task and every change of it has been delivered.
  virtual void finished(const std::string& task_arn) = 0;
};

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
  std::function<double()> random;      // [0, 1); default a per-reporter generator
  ReporterJournal* journal = nullptr;  // null: the queue lives in memory only
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

  // What an earlier process left undelivered, and the statuses the cluster already has (so they
  // are never sent again). Before start().
  void restore(const std::vector<ReporterTask>& tasks, std::vector<ReporterEntry> pending);

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
    std::deque<ReporterEntry> changes;
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
  enum class Delivery { kAccepted, kDropped, kStopped };
  Delivery deliver(const ecsapi::TaskStateChange& change, std::stop_token stop);
  // Forgets a removed task's queue once it is empty; tells the journal.
  void forgetIfDone(const std::string& arn);
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
