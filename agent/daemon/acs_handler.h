// DaemonAcsHandler: what the daemon does with the messages of its ACS session.
//
// - PayloadMessage: every task's credentials go into the credentials store under the ids the
//   cluster chose (task role: served to the task's containers; execution role: kept for the
//   agent), then the tasks go to the engine, those the cluster wants STOPPED first. A task that
//   cannot be read is reported STOPPED with "UnrecognizedTaskError: <why>" and the message is not
//   acknowledged (the cluster sends it again; tasks already accepted are not started twice).
// - IAMRoleCredentialsMessage: the task's credentials are replaced in place and acknowledged; for
//   a task this agent does not know, nothing is stored and nothing acknowledged.
// - TaskManifestMessage: a manifest older than the last one seen is ignored; otherwise it is
//   acknowledged, with the tasks meant to run here that it does not list as RUNNING offered as
//   stop candidates; TaskStopVerificationAck for that manifest stops the tasks it lists.
//
// Thread-safe: the session calls it on its own thread; task snapshots arrive from the engine's.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/acs/acs_session.h"
#include "agent/credentials/credentials_store.h"
#include "agent/daemon/state_reporter.h"
#include "agent/engine/task_engine.h"

namespace ecs::daemon {

// What the handler acts on; the daemon passes the engine, tests a fake.
class TaskSink {
 public:
  virtual ~TaskSink() = default;
  virtual void upsert(engine::TaskSpec spec) = 0;
  virtual void stopTask(const std::string& task_arn, std::string reason) = 0;
};

// What the handler must have kept before it acknowledges (the daemon's state store).
class HandlerJournal {
 public:
  virtual ~HandlerJournal() = default;
  // The payload's readable tasks and their credentials, all or none. An error: the tasks are
  // not started and the message is not acknowledged.
  virtual Result<void> payloadArrived(const acs::AcsPayload& payload) = 0;
  // Whether the task already finished (stopped, reported and cleaned up): a payload that brings
  // it again starts nothing, whether before or after an agent restart.
  virtual bool hasFinished(const std::string& /*task_arn*/) { return false; }
  virtual void credentialsRefreshed(const std::string& task_arn,
                                    const acs::RoleCredentials& credentials) = 0;
  virtual void manifestSeen(std::int64_t timeline) = 0;
  virtual void stopConfirmed(const std::string& task_arn, const std::string& reason) = 0;
};

class DaemonAcsHandler : public acs::AcsHandler {
 public:
  DaemonAcsHandler(TaskSink& tasks, credentials::CredentialsStore& credentials,
                   StateReporter& reporter, HandlerJournal* journal = nullptr);

  // What an earlier process knew: the last manifest timeline and the credentials of the tasks
  // it adopts (served again under the same ids). Before the session starts.
  void restore(std::int64_t manifest_timeline,
               const std::vector<std::pair<std::string, acs::RoleCredentials>>& credentials);

  void onPayload(acs::AcsPayload payload, acs::AcsReply reply) override;
  void onCredentials(acs::AcsCredentialsMessage message, acs::AcsReply reply) override;
  void onTaskManifest(acs::AcsTaskManifest manifest, acs::AcsReply reply) override;
  void onStopVerificationAck(acs::AcsStopVerificationAck ack) override;
  void onInactiveInstance() override;

  // The engine's view of a task: its desired status, and forgetting it once removed.
  void onSnapshot(const engine::TaskSnapshotPtr& task);

  // The tasks the engine has and has not yet forgotten (as its snapshots tell).
  std::vector<std::string> knownTasks() const;
  // Waits until the engine has forgotten every task; false at the deadline.
  bool waitUntilNoTasks(std::chrono::steady_clock::time_point deadline);

 private:
  void storeCredentials(const std::string& task_arn, const acs::RoleCredentials& credentials,
                        credentials::RoleType type);

  TaskSink& tasks_;
  credentials::CredentialsStore& credentials_;
  StateReporter& reporter_;
  HandlerJournal* journal_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, engine::ContainerStatus> desired_;  // by task arn, from snapshots
  std::int64_t manifest_timeline_ = 0;
  std::string manifest_message_id_;
};

// A TaskSink over the engine.
class EngineTaskSink : public TaskSink {
 public:
  explicit EngineTaskSink(engine::TaskEngine& engine) : engine_(engine) {}
  void upsert(engine::TaskSpec spec) override { engine_.upsert(std::move(spec)); }
  void stopTask(const std::string& task_arn, std::string reason) override {
    engine_.stopTask(task_arn, std::move(reason));
  }

 private:
  engine::TaskEngine& engine_;
};

}  // namespace ecs::daemon
