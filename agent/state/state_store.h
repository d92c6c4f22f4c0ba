// StateStore: what the daemon must not lose when it is killed — SQLite in WAL mode, one file
// (<ECS_DATADIR>/state.db, mode 0600: it holds credentials).
//
// It keeps the instance identity and the task-manifest sequence number (as named values), every
// task the cluster sent (its ACS JSON as received, so a restart re-reads it through the same
// parser), the credentials the cluster sent for each task, the state changes not yet accepted by
// the cluster (the outbox, in order), and the last status the cluster accepted for each task and
// container, and when each image the agent pulled was last used (for the image cleaner's
// least-recently-used order). Container runtime state is not kept here: containerd has it, labelled
// with the task ARN and container name, and recovery reads it there.
//
// Every write is a committed transaction when the call returns (synchronous=NORMAL in WAL: a
// crash of the process loses nothing; a power cut may lose the last transactions, never corrupts).
// Thread-safe: one connection behind a mutex; calls are short.
//
// open() checks the file (PRAGMA quick_check) and its schema version; a file that cannot be
// opened, fails the check, or comes from a newer agent is moved aside to
// state.db.corrupt-<unix time> (with its -wal and -shm) and a fresh store is made: the agent
// then rebuilds what it can from containerd. OpenReport says what happened, for a log line.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::state {

struct OpenReport {
  bool created = false;     // there was no store: a new one was made
  std::string moved_aside;  // path the unusable file was moved to; empty if none
  std::string reason;       // why it was moved aside ("integrity check failed: ...")
  int migrated_from = 0;    // schema version before migration; 0 when none ran
};

struct TaskRecord {
  std::string arn;
  std::string payload_json;    // the task object of the ACS PayloadMessage, as received
  std::string desired_status;  // "RUNNING" / "STOPPED" (the cluster's last word)
  std::string known_status;    // the engine's last published status ("NONE" ... "STOPPED")
  std::string sent_status;     // the last task status the cluster accepted; "" if none
  std::string role_credentials_id;
  std::string execution_role_credentials_id;
  std::string stopped_reason;
  int64_t added_seq = 0;  // order of arrival, for stable recovery order (set by putTask)
};

// The last container status the cluster accepted, per container: a container change is never
// sent twice for the same status.
struct ContainerSentRecord {
  std::string task_arn;
  std::string name;
  std::string sent_status;
};

struct CredentialsRecord {
  std::string id;  // the cluster's credentialsId
  std::string task_arn;
  std::string role_type;  // "TaskApplication" or "TaskExecution"
  std::string json;       // the credentials object as the cluster sent it (keys, token, expiry)
};

// One state change waiting for the cluster to accept it.
struct OutboxEntry {
  int64_t seq = 0;  // assigned by enqueue, increasing
  std::string task_arn;
  std::string kind;            // "task" or "container" (which API call carries it)
  std::string container_name;  // kind "container": whose change it is
  std::string status;
  std::string body;  // the request body, JSON, ready to send
};

// When an image was last used: the removal of the last task that had a container from it (or a
// cleanup cycle that found it in use). Keyed by the image's containerd record name.
struct ImageUsageRecord {
  std::string name;          // "registry.example/app:1", as containerd names the image
  int64_t last_used_ms = 0;  // wall clock, milliseconds since the Unix epoch
};

class StateStore {
 public:
  // Opens (or creates, or replaces an unusable) store at `path`; the directory must exist.
  // An error only when no store can be made at all (the directory is not writable).
  static Result<std::unique_ptr<StateStore>> open(const std::string& path, OpenReport* report);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::string& path() const;

  // --- named values: "cluster", "container_instance_arn", "manifest_seq", ... ---------------
  Result<std::optional<std::string>> value(std::string_view key);
  Result<void> setValue(std::string_view key, std::string_view value);

  // --- tasks ------------------------------------------------------------------------------
  // Inserts or replaces the task (added_seq kept from the first insert; an existing sent_status
  // kept when the record's is empty, so a re-sent task does not forget what the cluster accepted).
  Result<void> putTask(const TaskRecord& task);
  // Several tasks in one transaction (a PayloadMessage): all or none.
  Result<void> putTasks(const std::vector<TaskRecord>& tasks);
  Result<std::optional<TaskRecord>> task(std::string_view arn);
  Result<std::vector<TaskRecord>> tasks();  // in added_seq order
  // Both: kNotFound for a task not stored. An empty reason keeps the stored stopped_reason.
  Result<void> setDesiredStatus(std::string_view arn, std::string_view status,
                                std::string_view reason = {});
  Result<void> setKnownStatus(std::string_view arn, std::string_view status);
  // Removes the task, its container records, its credentials and its outbox entries (a task not
  // stored: nothing to do, not an error).
  Result<void> removeTask(std::string_view arn);
  // removeTask(), and in the same transaction a record that the task finished at `finished_ms`
  // (ms since the epoch), so that a payload redelivering it — after a restart too — starts
  // nothing. The `keep` most recent records are kept; older ones go.
  Result<void> finishTask(std::string_view arn, int64_t finished_ms, int keep = kFinishedTasksKept);
  // Whether the task finished (and its record is among those kept).
  Result<bool> hasFinished(std::string_view arn);
  static constexpr int kFinishedTasksKept = 10000;

  // --- credentials ------------------------------------------------------------------------
  Result<void> putCredentials(const CredentialsRecord& credentials);  // insert or replace
  Result<std::vector<CredentialsRecord>> credentials();
  Result<void> removeCredentials(std::string_view id);

  // --- outbox -------------------------------------------------------------------------------
  // Appends a change; returns its seq. kInvalidArgument for a kind other than the two above.
  Result<int64_t> enqueue(const OutboxEntry& entry);
  // The cluster accepted entry `seq`: removes it and, in the same transaction, records its
  // status as the task's (kind "task") or the container's (kind "container") sent status.
  // An unknown seq (already accepted or dropped) changes nothing and is not an error; an entry
  // whose task is not stored is removed, recording nothing.
  Result<void> accepted(int64_t seq);
  // Drops entry `seq` without recording it as sent (the cluster refused it for good).
  Result<void> drop(int64_t seq);
  Result<std::vector<OutboxEntry>> outbox();  // in seq order
  Result<std::vector<ContainerSentRecord>> containerSentStatuses(std::string_view task_arn);
  // Records a container status the cluster accepted inside a task change; kNotFound for a task
  // not stored.
  Result<void> setContainerSentStatus(std::string_view task_arn, std::string_view name,
                                      std::string_view status);

  // --- images -------------------------------------------------------------------------------
  // Inserts or replaces each image's last-used time, all in one transaction (kInvalidArgument,
  // writing nothing, for a record without a name).
  Result<void> recordImagesUsed(const std::vector<ImageUsageRecord>& images);
  // Forgets the images (deleted, or gone from containerd); names not stored are no error.
  Result<void> forgetImages(const std::vector<std::string>& names);
  Result<std::vector<ImageUsageRecord>> imagesUsed();  // in name order

 private:
  struct Impl;
  explicit StateStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::state
