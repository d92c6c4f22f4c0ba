// DaemonState: the daemon's memory across restarts, over the SQLite StateStore.
//
// What it keeps, and when:
// - a PayloadMessage's tasks (their ACS JSON as received) and credentials, in one transaction,
//   before the tasks go to the engine and before the message is acknowledged;
// - refreshed credentials, before they are acknowledged; the task-manifest timeline;
// - each task's desired and known status and stop reason, as the engine publishes them;
// - the reporter's queue of state changes: each change when it is queued, its removal (and the
//   status the cluster now has) when the cluster accepts it; a task leaves the store once the
//   engine has forgotten it and the cluster has every change of it.
// On start, recover() hands back what an earlier process left: the tasks to adopt, the
// credentials to serve again under the same ids, and the undelivered changes to send.
//
// Failures to write are logged and counted, never fatal: except for a payload, which is then
// neither started nor acknowledged (the cluster sends it again).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/acs/acs_session.h"
#include "agent/daemon/acs_handler.h"
#include "agent/daemon/state_reporter.h"
#include "agent/engine/task_engine.h"
#include "agent/state/state_store.h"

namespace ecs::daemon {

// Everything an earlier process left, read once at start.
struct RecoveredState {
  std::vector<engine::AdoptedTask> tasks;  // in arrival order
  // Credentials of tasks still meant to run, for the credentials store.
  std::vector<std::pair<std::string, acs::RoleCredentials>> credentials;  // (task arn, creds)
  std::vector<ReporterTask> reporter_tasks;
  std::vector<ReporterEntry> pending;  // in queue order
  std::int64_t manifest_timeline = 0;
  std::vector<std::string> unreadable;  // tasks whose stored JSON no longer parses
};

// A task as the daemon puts it on each of its containers (engine::TaskSpec::document): the ACS
// task without credentials, the credentials ids and role ARNs, and the instance it ran on. With
// the state store lost, the daemon takes running tasks over from these.
std::string taskDocument(const std::string& task_json, const engine::TaskSpec& spec,
                         const std::string& cluster, const std::string& instance_arn);

struct DocumentTask {
  std::string cluster;
  std::string instance_arn;
  std::string task_json;        // the ACS task, without credentials
  engine::AdoptedTask adopted;  // desired RUNNING, known RUNNING, no sent status
};
Result<DocumentTask> taskFromDocument(std::string_view document);

class DaemonState : public HandlerJournal, public ReporterJournal {
 public:
  explicit DaemonState(state::StateStore& store) : store_(store) {}

  Result<RecoveredState> recover();
  // Tasks taken over from their containers' documents (the store was lost): kept as if they had
  // just arrived, known RUNNING, nothing sent.
  void keepFromContainerd(const std::vector<DocumentTask>& tasks);

  // The container instance this host registered as in `cluster`; empty if none.
  std::string instanceArn(const std::string& cluster);
  void saveInstance(const std::string& cluster, const std::string& arn);

  // engine snapshot listener: desired/known status and stop reason.
  void onSnapshot(const engine::TaskSnapshotPtr& task);

  // HandlerJournal
  Result<void> payloadArrived(const acs::AcsPayload& payload) override;
  bool hasFinished(const std::string& task_arn) override;
  void credentialsRefreshed(const std::string& task_arn,
                            const acs::RoleCredentials& credentials) override;
  void manifestSeen(std::int64_t timeline) override;
  void stopConfirmed(const std::string& task_arn, const std::string& reason) override;

  // ReporterJournal
  std::int64_t queued(const ecsapi::TaskStateChange& change) override;
  void delivered(std::int64_t seq, const ecsapi::TaskStateChange& change, bool dropped) override;
  void finished(const std::string& task_arn) override;

  std::uint64_t writeFailures() const { return write_failures_; }

 private:
  void check(const Result<void>& result, std::string_view what);

  state::StateStore& store_;
  std::mutex mutex_;
  // Last status written per task, so that unchanged snapshots write nothing.
  std::map<std::string, std::pair<std::string, std::string>> written_;  // arn -> (known, desired)
  std::atomic<std::uint64_t> write_failures_{0};
};

// The reporter's changes as the store keeps them (JSON), and back.
std::string toJson(const ecsapi::TaskStateChange& change);
Result<ecsapi::TaskStateChange> taskStateChangeFromJson(std::string_view json);
std::string toJson(const acs::RoleCredentials& credentials);
Result<acs::RoleCredentials> roleCredentialsFromJson(std::string_view json);

}  // namespace ecs::daemon
