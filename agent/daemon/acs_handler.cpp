#include "agent/daemon/acs_handler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "agent/common/failpoint.h"
#include "agent/daemon/daemon_state.h"

namespace ecs::daemon {

namespace {

// The reason the real agent gives a task it could not read.
constexpr std::string_view kUnrecognizedTask = "UnrecognizedTaskError";

aws::Credentials toAwsCredentials(const acs::RoleCredentials& in) {
  aws::Credentials out;
  out.access_key_id = in.access_key_id;
  out.secret_access_key = in.secret_access_key;
  out.session_token = in.session_token;
  if (auto expiration = aws::parseExpiration(in.expiration)) out.expiration = *expiration;
  out.source = "acs";
  return out;
}

}  // namespace

DaemonAcsHandler::DaemonAcsHandler(TaskSink& tasks, credentials::CredentialsStore& credentials,
                                   StateReporter& reporter, HandlerJournal* journal)
    : tasks_(tasks), credentials_(credentials), reporter_(reporter), journal_(journal) {}

void DaemonAcsHandler::restore(
    std::int64_t manifest_timeline,
    const std::vector<std::pair<std::string, acs::RoleCredentials>>& credentials) {
  {
    std::lock_guard lock(mutex_);
    manifest_timeline_ = manifest_timeline;
  }
  for (const auto& [task_arn, creds] : credentials) {
    storeCredentials(task_arn, creds,
                     creds.role_type == acs::kRoleTypeTaskExecution
                         ? credentials::RoleType::kExecution
                         : credentials::RoleType::kTask);
  }
}

void DaemonAcsHandler::storeCredentials(const std::string& task_arn,
                                        const acs::RoleCredentials& credentials,
                                        credentials::RoleType type) {
  credentials::CredentialsEntry entry;
  entry.id = credentials.credentials_id;
  entry.task_arn = task_arn;
  entry.role_arn = credentials.role_arn;
  entry.role_type = type;
  entry.credentials = toAwsCredentials(credentials);
  credentials_.put(std::move(entry));
}

void DaemonAcsHandler::onPayload(acs::AcsPayload payload, acs::AcsReply reply) {
  if (journal_) {
    // A redelivered task that already finished is neither kept nor started again (its
    // credentials are not served either); the message is still acknowledged.
    std::erase_if(payload.tasks, [&](const acs::PayloadTask& t) {
      if (!t.task || !journal_->hasFinished(t.task->spec.arn)) return false;
      spdlog::info("task {}: already finished; its redelivery starts nothing", t.task->spec.arn);
      return true;
    });
    // Kept before anything starts: a task must never run that a restart would not know of.
    if (auto kept = journal_->payloadArrived(payload); !kept) {
      spdlog::error("ACS payload {}: could not be stored, so not started nor acknowledged: {}",
                    payload.message_id, kept.error().message);
      return;
    }
    failpoint("payload-stored");
  }
  // Tasks the cluster wants stopped go first: their resources (host ports) may be what a new task
  // of the same message needs.
  std::vector<const acs::PayloadTask*> order;
  for (const auto& task : payload.tasks) order.push_back(&task);
  std::stable_partition(order.begin(), order.end(), [](const acs::PayloadTask* t) {
    return t->task && t->task->spec.desired == engine::ContainerStatus::kStopped;
  });
  for (const auto* task : order) {
    if (!task->task) {
      const auto& why = task->task.error().message;
      if (!task->arn) {
        spdlog::error("ACS payload {}: a task without an arn could not be read: {}",
                      payload.message_id, why);
        continue;
      }
      spdlog::error("task {}: could not be read, reporting it stopped: {}", *task->arn, why);
      reporter_.reportUnrecognized(*task->arn, payload.cluster_arn,
                                   fmt::format("{}: {}", kUnrecognizedTask, why));
      continue;
    }
    const auto& acs_task = *task->task;
    const auto& arn = acs_task.spec.arn;
    if (acs_task.role_credentials) {
      storeCredentials(arn, *acs_task.role_credentials, credentials::RoleType::kTask);
    }
    if (acs_task.execution_role_credentials) {
      storeCredentials(arn, *acs_task.execution_role_credentials,
                       credentials::RoleType::kExecution);
    }
    auto spec = acs_task.spec;
    spec.document =
        taskDocument(task->json, spec, payload.cluster_arn, payload.container_instance_arn);
    tasks_.upsert(std::move(spec));
  }
  // The engine holds the tasks now (the state store will persist them before this point).
  if (!reply.ackPayload(payload)) {
    spdlog::warn("ACS payload {}: not acknowledged, a task of it could not be read",
                 payload.message_id);
  }
}

void DaemonAcsHandler::onCredentials(acs::AcsCredentialsMessage message, acs::AcsReply reply) {
  {
    std::lock_guard lock(mutex_);
    if (!desired_.contains(message.task_arn)) {
      spdlog::warn("credentials {} for task {}: the task is not known here, not acknowledged",
                   message.credentials.credentials_id, message.task_arn);
      return;
    }
  }
  auto type = message.credentials.role_type == acs::kRoleTypeTaskExecution
                  ? credentials::RoleType::kExecution
                  : credentials::RoleType::kTask;
  if (journal_) journal_->credentialsRefreshed(message.task_arn, message.credentials);
  storeCredentials(message.task_arn, message.credentials, type);
  spdlog::info("task {}: {} role credentials {} refreshed", message.task_arn,
               credentials::toString(type), message.credentials.credentials_id);
  reply.ackCredentials(message);
}

void DaemonAcsHandler::onTaskManifest(acs::AcsTaskManifest manifest, acs::AcsReply reply) {
  std::vector<acs::TaskIdentifier> candidates;
  {
    std::lock_guard lock(mutex_);
    if (manifest.timeline <= manifest_timeline_) {
      spdlog::info("task manifest {} (timeline {}) is not newer than {}: ignored",
                   manifest.message_id, manifest.timeline, manifest_timeline_);
      return;
    }
    manifest_timeline_ = manifest.timeline;
    manifest_message_id_ = manifest.message_id;
    if (journal_) journal_->manifestSeen(manifest.timeline);
    std::set<std::string> running;
    for (const auto& t : manifest.tasks) {
      if (t.desired_status == "RUNNING") running.insert(t.task_arn);
    }
    for (const auto& [arn, desired] : desired_) {
      if (desired == engine::ContainerStatus::kRunning && !running.contains(arn)) {
        candidates.push_back({arn, manifest.cluster_arn, "STOPPED"});
      }
    }
  }
  if (!candidates.empty()) {
    spdlog::info("task manifest {}: {} task(s) here are not in it; asking the cluster",
                 manifest.message_id, candidates.size());
  }
  reply.ackManifest(manifest, candidates);
}

void DaemonAcsHandler::onStopVerificationAck(acs::AcsStopVerificationAck ack) {
  {
    std::lock_guard lock(mutex_);
    if (ack.message_id != manifest_message_id_) {
      spdlog::info("stop verification {}: not for the last manifest: ignored", ack.message_id);
      return;
    }
    manifest_message_id_.clear();
    for (const auto& t : ack.stop_tasks) {
      auto it = desired_.find(t.task_arn);
      if (it != desired_.end()) it->second = engine::ContainerStatus::kStopped;
    }
  }
  for (const auto& t : ack.stop_tasks) {
    spdlog::info("task {}: the cluster confirmed it should not run here; stopping it", t.task_arn);
    const std::string reason = "Task stopped: the cluster no longer runs it on this instance";
    if (journal_) journal_->stopConfirmed(t.task_arn, reason);
    tasks_.stopTask(t.task_arn, reason);
  }
}

void DaemonAcsHandler::onInactiveInstance() {
  spdlog::error(
      "the cluster says this container instance is inactive (deregistered); waiting before "
      "trying again");
}

void DaemonAcsHandler::onSnapshot(const engine::TaskSnapshotPtr& task) {
  if (!task) return;
  {
    std::lock_guard lock(mutex_);
    if (task->removed) {
      desired_.erase(task->arn);
    } else {
      auto& desired = desired_[task->arn];
      desired = std::max(desired, task->desired);
    }
  }
  changed_.notify_all();
}

std::vector<std::string> DaemonAcsHandler::knownTasks() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> arns;
  for (const auto& [arn, desired] : desired_) arns.push_back(arn);
  return arns;
}

bool DaemonAcsHandler::waitUntilNoTasks(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return changed_.wait_until(lock, deadline, [this] { return desired_.empty(); });
}

}  // namespace ecs::daemon
