#include "agent/daemon/daemon_state.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <chrono>

#include "agent/acs/acs_task.h"
#include "agent/common/json_reader.h"

namespace ecs::daemon {

namespace json = boost::json;
using ecsapi::ReportedStatus;
using engine::ContainerStatus;

namespace {

constexpr std::string_view kInstanceArn = "container_instance_arn";
constexpr std::string_view kInstanceCluster = "cluster";
constexpr std::string_view kManifestTimeline = "manifest_timeline";

std::optional<ContainerStatus> containerStatus(std::string_view text) {
  for (auto status :
       {ContainerStatus::kNone, ContainerStatus::kManifestPulled, ContainerStatus::kPulled,
        ContainerStatus::kCreated, ContainerStatus::kRunning, ContainerStatus::kStopped}) {
    if (engine::toString(status) == text) return status;
  }
  return std::nullopt;
}

std::optional<ReportedStatus> reportedStatus(std::string_view text) {
  for (auto status :
       {ReportedStatus::kPending, ReportedStatus::kRunning, ReportedStatus::kStopped}) {
    if (ecsapi::toString(status) == text) return status;
  }
  return std::nullopt;
}

std::int64_t epochMillis(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

std::chrono::system_clock::time_point fromEpochMillis(std::int64_t ms) {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

// The task object without its credentials: they are kept once, in the credentials table.
std::string withoutCredentials(const std::string& task_json) {
  boost::system::error_code ec;
  auto value = json::parse(task_json, ec);
  if (ec || !value.is_object()) return task_json;
  value.get_object().erase("roleCredentials");
  value.get_object().erase("executionRoleCredentials");
  return json::serialize(value);
}

}  // namespace

// ---- task documents: a task as containerd keeps it on its containers
// -----------------------------

std::string taskDocument(const std::string& task_json, const engine::TaskSpec& spec,
                         const std::string& cluster, const std::string& instance_arn) {
  boost::system::error_code ec;
  auto task = json::parse(task_json, ec);
  if (ec || !task.is_object()) return {};
  task.get_object().erase("roleCredentials");
  task.get_object().erase("executionRoleCredentials");
  json::object document{{"version", 1},
                        {"cluster", cluster},
                        {"containerInstanceArn", instance_arn},
                        {"task", std::move(task)}};
  auto put = [&](const char* key, const std::string& value) {
    if (!value.empty()) document[key] = value;
  };
  put("roleCredentialsId", spec.role_credentials_id);
  put("executionRoleCredentialsId", spec.execution_role_credentials_id);
  put("taskRoleArn", spec.definition.task_role_arn);
  put("executionRoleArn", spec.definition.execution_role_arn);
  return json::serialize(document);
}

Result<DocumentTask> taskFromDocument(std::string_view text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec || !value.is_object()) return fail(ErrorCode::kInvalidArgument, "not a JSON object");
  const auto& document = value.get_object();
  auto text_of = [&](const char* key) -> std::string {
    const auto* field = document.if_contains(key);
    return field && field->is_string() ? std::string(field->get_string()) : std::string();
  };
  const auto* version = document.if_contains("version");
  if (!version || !version->is_int64() || version->get_int64() != 1) {
    return fail(ErrorCode::kInvalidArgument, "unknown document version");
  }
  const auto* task = document.if_contains("task");
  if (!task) return fail(ErrorCode::kInvalidArgument, "no task");
  auto parsed = acs::parseAcsTask(*task);
  if (!parsed) return fail(parsed.error());
  DocumentTask out;
  out.cluster = text_of("cluster");
  out.task_json = json::serialize(*task);
  out.instance_arn = text_of("containerInstanceArn");
  out.adopted.spec = std::move(parsed->spec);
  out.adopted.spec.document = std::string(text);
  out.adopted.spec.role_credentials_id = text_of("roleCredentialsId");
  out.adopted.spec.execution_role_credentials_id = text_of("executionRoleCredentialsId");
  out.adopted.spec.definition.task_role_arn = text_of("taskRoleArn");
  out.adopted.spec.definition.execution_role_arn = text_of("executionRoleArn");
  out.adopted.spec.desired = ContainerStatus::kRunning;
  // Whether RUNNING (or STOPPED) reached the cluster is not known: reported again rather than
  // never.
  out.adopted.known = ContainerStatus::kRunning;
  return out;
}

// ---- JSON forms ---------------------------------------------------------------------------------

std::string toJson(const ecsapi::TaskStateChange& change) {
  json::object o;
  o["cluster"] = change.cluster;
  o["task"] = change.task_arn;
  o["status"] = ecsapi::toString(change.status);
  o["reason"] = change.reason;
  if (change.pull_started_at) o["pullStartedAt"] = epochMillis(*change.pull_started_at);
  if (change.pull_stopped_at) o["pullStoppedAt"] = epochMillis(*change.pull_stopped_at);
  if (change.execution_stopped_at)
    o["executionStoppedAt"] = epochMillis(*change.execution_stopped_at);
  json::array containers;
  for (const auto& c : change.containers) {
    json::object item;
    item["name"] = c.container_name;
    item["status"] = ecsapi::toString(c.status);
    if (c.runtime_id) item["runtimeId"] = *c.runtime_id;
    if (c.image_digest) item["imageDigest"] = *c.image_digest;
    if (c.exit_code) item["exitCode"] = *c.exit_code;
    if (c.reason) item["reason"] = *c.reason;
    json::array bindings;
    for (const auto& b : c.network_bindings) {
      bindings.push_back(json::object{
          {"bindIP", b.bind_ip},
          {"protocol", b.protocol == ecsapi::TransportProtocol::kUdp ? "udp" : "tcp"},
          {"containerPorts", json::array{b.container_ports.first, b.container_ports.last}},
          {"hostPorts", json::array{b.host_ports.first, b.host_ports.last}}});
    }
    item["bindings"] = std::move(bindings);
    containers.push_back(std::move(item));
  }
  o["containers"] = std::move(containers);
  return json::serialize(o);
}

namespace {

// A status as toJson wrote it; an unknown one is a problem of the document.
bool readReportedStatus(ecs::json::Reader& reader, const ecs::json::Value& value,
                        const std::string& path, ReportedStatus& out) {
  std::string text;
  if (!ecs::json::readString(reader, value, path, text)) return false;
  if (auto status = reportedStatus(text)) {
    out = *status;
    return true;
  }
  reader.error(path, "not a state change status");
  return false;
}

bool readPortRange(ecs::json::Reader& reader, const ecs::json::Value& value,
                   const std::string& path, ecsapi::PortRange& out) {
  std::vector<int> ports;
  if (!ecs::json::readValue(reader, value, path, ports, ecs::json::detail::Scalars{})) return false;
  if (ports.size() != 2) {
    reader.error(path, "expected [first, last]");
    return false;
  }
  out = {static_cast<uint16_t>(ports[0]), static_cast<uint16_t>(ports[1])};
  return true;
}

bool readBinding(ecs::json::Reader& reader, const ecs::json::Value& value, const std::string& path,
                 ecsapi::NetworkBinding& out) {
  return ecs::json::readObject(reader, value, path, [&](const ecs::json::Fields& f) {
    std::string protocol;
    f.read("bindIP", out.bind_ip);
    f.read("protocol", protocol);
    out.protocol =
        protocol == "udp" ? ecsapi::TransportProtocol::kUdp : ecsapi::TransportProtocol::kTcp;
    f.read("containerPorts", out.container_ports, readPortRange);
    f.read("hostPorts", out.host_ports, readPortRange);
  });
}

bool readContainerChange(ecs::json::Reader& reader, const ecs::json::Value& value,
                         const std::string& path, ecsapi::ContainerStateChange& out) {
  return ecs::json::readObject(reader, value, path, [&](const ecs::json::Fields& f) {
    f.require("name", out.container_name);
    f.require("status", out.status, readReportedStatus);
    f.read("runtimeId", out.runtime_id);
    f.read("imageDigest", out.image_digest);
    f.read("exitCode", out.exit_code);
    f.read("reason", out.reason);
    f.read("bindings", out.network_bindings, readBinding);
  });
}

// Whether `reader` found the kept document sound; the problems (never values) otherwise.
Result<void> kept(const ecs::json::Reader& reader, std::string_view what) {
  if (reader.ok()) return {};
  return fail(ErrorCode::kDataLoss, "kept {} unreadable: {}", what,
              ecs::json::joinProblems(reader.errors()));
}

}  // namespace

Result<ecsapi::TaskStateChange> taskStateChangeFromJson(std::string_view text) {
  auto value = ecs::json::parse(text, ecs::json::Excerpt::kHide);
  if (!value) return fail(ErrorCode::kDataLoss, "a kept state change is not JSON");
  ecsapi::TaskStateChange change;
  ecs::json::Reader reader;
  auto millis = [](std::optional<std::int64_t> ms) {
    return ms ? std::optional(fromEpochMillis(*ms)) : std::nullopt;
  };
  ecs::json::readObject(reader, *value, "", [&](const ecs::json::Fields& f) {
    std::optional<std::int64_t> pull_started, pull_stopped, execution_stopped;
    f.read("cluster", change.cluster);
    f.require("task", change.task_arn);
    f.require("status", change.status, readReportedStatus);
    f.read("reason", change.reason);
    f.read("pullStartedAt", pull_started);
    f.read("pullStoppedAt", pull_stopped);
    f.read("executionStoppedAt", execution_stopped);
    f.read("containers", change.containers, readContainerChange);
    change.pull_started_at = millis(pull_started);
    change.pull_stopped_at = millis(pull_stopped);
    change.execution_stopped_at = millis(execution_stopped);
  });
  if (auto sound = kept(reader, "state change"); !sound) return fail(sound.error());
  return change;
}

std::string toJson(const acs::RoleCredentials& c) {
  return json::serialize(json::object{{"credentialsId", c.credentials_id},
                                      {"roleArn", c.role_arn},
                                      {"accessKeyId", c.access_key_id},
                                      {"secretAccessKey", c.secret_access_key},
                                      {"sessionToken", c.session_token},
                                      {"expiration", c.expiration},
                                      {"roleType", c.role_type}});
}

Result<acs::RoleCredentials> roleCredentialsFromJson(std::string_view text) {
  // Never quoted in an error: the text holds a secret key.
  auto value = ecs::json::parse(text, ecs::json::Excerpt::kHide);
  if (!value) return fail(ErrorCode::kDataLoss, "kept credentials are not JSON");
  acs::RoleCredentials c;
  ecs::json::Reader reader;
  ecs::json::readObject(reader, *value, "", [&](const ecs::json::Fields& f) {
    f.require("credentialsId", c.credentials_id);
    f.read("roleArn", c.role_arn);
    f.read("accessKeyId", c.access_key_id);
    f.read("secretAccessKey", c.secret_access_key);
    f.read("sessionToken", c.session_token);
    f.read("expiration", c.expiration);
    f.read("roleType", c.role_type);
  });
  if (auto sound = kept(reader, "credentials"); !sound) return fail(sound.error());
  return c;
}

// ---- DaemonState --------------------------------------------------------------------------------

void DaemonState::check(const Result<void>& result, std::string_view what) {
  if (result) return;
  ++write_failures_;
  spdlog::error("state store: {}: {}", what, result.error().message);
}

std::string DaemonState::instanceArn(const std::string& cluster) {
  auto saved_cluster = store_.value(kInstanceCluster);
  auto arn = store_.value(kInstanceArn);
  if (!saved_cluster || !arn || !*saved_cluster || !*arn || **saved_cluster != cluster) return {};
  return **arn;
}

void DaemonState::saveInstance(const std::string& cluster, const std::string& arn) {
  check(store_.setValue(kInstanceCluster, cluster), "save the cluster");
  check(store_.setValue(kInstanceArn, arn), "save the container instance ARN");
}

Result<RecoveredState> DaemonState::recover() {
  RecoveredState out;
  if (auto timeline = store_.value(kManifestTimeline); timeline && *timeline) {
    std::int64_t value = 0;
    const auto& text = **timeline;
    std::from_chars(text.data(), text.data() + text.size(), value);
    out.manifest_timeline = value;
  }
  auto tasks = store_.tasks();
  if (!tasks) return fail(tasks.error());
  auto credentials = store_.credentials();
  if (!credentials) return fail(credentials.error());
  auto pending = store_.outbox();
  if (!pending) return fail(pending.error());

  std::map<std::string, const state::TaskRecord*> by_arn;
  for (const auto& record : *tasks) {
    by_arn[record.arn] = &record;
    ReporterTask reporter_task;
    reporter_task.arn = record.arn;
    reporter_task.task_sent = reportedStatus(record.sent_status);
    if (auto sent = store_.containerSentStatuses(record.arn)) {
      for (const auto& c : *sent) {
        if (auto status = reportedStatus(c.sent_status))
          reporter_task.container_sent[c.name] = *status;
      }
    }
    auto parsed = acs::parseAcsTask(std::string_view(record.payload_json));
    if (!parsed) {
      // Kept by an agent whose parser took it, refused by this one (a downgrade): it cannot be
      // adopted; the reporter tells the cluster it stopped.
      out.unreadable.push_back(record.arn);
      spdlog::error("task {}: kept, but no longer readable: {}", record.arn,
                    parsed.error().message);
      continue;
    }
    engine::AdoptedTask adopted;
    adopted.spec = std::move(parsed->spec);
    adopted.spec.role_credentials_id = record.role_credentials_id;
    adopted.spec.execution_role_credentials_id = record.execution_role_credentials_id;
    adopted.spec.desired =
        record.desired_status == "STOPPED" ? ContainerStatus::kStopped : ContainerStatus::kRunning;
    adopted.known = containerStatus(record.known_status).value_or(ContainerStatus::kNone);
    adopted.stop_reason = record.stopped_reason;
    // Role ARNs come with the credentials, which the payload's JSON no longer holds.
    for (const auto& c : *credentials) {
      if (c.task_arn != record.arn) continue;
      auto creds = roleCredentialsFromJson(c.json);
      if (!creds) continue;
      if (c.role_type == acs::kRoleTypeTaskExecution) {
        adopted.spec.definition.execution_role_arn = creds->role_arn;
      } else {
        adopted.spec.definition.task_role_arn = creds->role_arn;
      }
    }
    {
      std::lock_guard lock(mutex_);
      written_[record.arn] = {record.known_status, record.desired_status};
    }
    out.reporter_tasks.push_back(std::move(reporter_task));
    out.tasks.push_back(std::move(adopted));
  }
  for (const auto& c : *credentials) {
    auto it = by_arn.find(c.task_arn);
    if (it == by_arn.end() || it->second->known_status == "STOPPED") continue;
    auto creds = roleCredentialsFromJson(c.json);
    if (!creds) {
      spdlog::warn("credentials {} of task {}: {}", c.id, c.task_arn, creds.error().message);
      continue;
    }
    out.credentials.emplace_back(c.task_arn, std::move(*creds));
  }
  for (const auto& entry : *pending) {
    auto change = taskStateChangeFromJson(entry.body);
    if (!change) {
      spdlog::warn("state change {} of task {}: {}", entry.seq, entry.task_arn,
                   change.error().message);
      (void)store_.drop(entry.seq);
      continue;
    }
    out.pending.push_back({entry.seq, std::move(*change)});
  }
  return out;
}

void DaemonState::onSnapshot(const engine::TaskSnapshotPtr& task) {
  if (!task || task->removed) return;  // removed: the reporter says when it may go
  std::string known(engine::toString(task->known));
  std::string desired(engine::toString(task->desired));
  {
    std::lock_guard lock(mutex_);
    auto& last = written_[task->arn];
    if (last.first == known && last.second == desired) return;
    last = {known, desired};
  }
  check(store_.setKnownStatus(task->arn, known), "record a task's status");
  check(store_.setDesiredStatus(task->arn, desired, task->stop_reason),
        "record a task's desired status");
}

void DaemonState::keepFromContainerd(const std::vector<DocumentTask>& tasks) {
  std::vector<state::TaskRecord> records;
  for (const auto& t : tasks) {
    const auto& spec = t.adopted.spec;
    state::TaskRecord record;
    record.arn = spec.arn;
    record.payload_json = t.task_json;
    record.desired_status = "RUNNING";
    record.known_status = "RUNNING";
    record.role_credentials_id = spec.role_credentials_id;
    record.execution_role_credentials_id = spec.execution_role_credentials_id;
    records.push_back(std::move(record));
    std::lock_guard lock(mutex_);
    written_[spec.arn] = {"RUNNING", "RUNNING"};
  }
  if (!records.empty())
    check(store_.putTasks(records), "keep the tasks taken over from containerd");
}

Result<void> DaemonState::payloadArrived(const acs::AcsPayload& payload) {
  std::vector<state::TaskRecord> records;
  for (const auto& t : payload.tasks) {
    if (!t.task) continue;  // reported stopped as unreadable; nothing to keep
    const auto& task = *t.task;
    state::TaskRecord record;
    auto existing = store_.task(task.spec.arn);
    if (!existing) return fail(existing.error());
    if (*existing) record = **existing;
    record.arn = task.spec.arn;
    record.payload_json = withoutCredentials(t.json);
    // Desired status only rises, as in the engine.
    if (record.desired_status != "STOPPED") {
      record.desired_status =
          task.spec.desired == ContainerStatus::kStopped ? "STOPPED" : "RUNNING";
    }
    if (record.known_status.empty()) record.known_status = "NONE";
    if (!task.spec.role_credentials_id.empty())
      record.role_credentials_id = task.spec.role_credentials_id;
    if (!task.spec.execution_role_credentials_id.empty())
      record.execution_role_credentials_id = task.spec.execution_role_credentials_id;
    records.push_back(std::move(record));
  }
  if (!records.empty()) {
    if (auto put = store_.putTasks(records); !put) return put;
  }
  for (const auto& t : payload.tasks) {
    if (!t.task) continue;
    for (const auto* creds : {&t.task->role_credentials, &t.task->execution_role_credentials}) {
      if (!*creds) continue;
      state::CredentialsRecord record{(*creds)->credentials_id, t.task->spec.arn,
                                      (*creds)->role_type, toJson(**creds)};
      if (auto put = store_.putCredentials(record); !put) return put;
    }
  }
  return {};
}

void DaemonState::credentialsRefreshed(const std::string& task_arn,
                                       const acs::RoleCredentials& credentials) {
  check(store_.putCredentials(
            {credentials.credentials_id, task_arn, credentials.role_type, toJson(credentials)}),
        "keep refreshed credentials");
}

void DaemonState::manifestSeen(std::int64_t timeline) {
  check(store_.setValue(kManifestTimeline, std::to_string(timeline)), "keep the manifest timeline");
}

void DaemonState::stopConfirmed(const std::string& task_arn, const std::string& reason) {
  check(store_.setDesiredStatus(task_arn, "STOPPED", reason), "record a confirmed stop");
}

std::int64_t DaemonState::queued(const ecsapi::TaskStateChange& change) {
  state::OutboxEntry entry;
  entry.task_arn = change.task_arn;
  entry.kind = "task";
  entry.status = std::string(ecsapi::toString(change.status));
  entry.body = toJson(change);
  auto seq = store_.enqueue(entry);
  if (!seq) {
    check(fail(seq.error()), "queue a state change");
    return 0;
  }
  return *seq;
}

void DaemonState::delivered(std::int64_t seq, const ecsapi::TaskStateChange& change, bool dropped) {
  if (seq == 0) return;
  if (dropped) return check(store_.drop(seq), "drop a refused state change");
  check(store_.accepted(seq), "record a delivered state change");
  for (const auto& c : change.containers) {
    auto recorded = store_.setContainerSentStatus(change.task_arn, c.container_name,
                                                  ecsapi::toString(c.status));
    // A task reported unreadable was never kept: nothing to record against it.
    if (!recorded && recorded.error().code != ErrorCode::kNotFound) {
      check(recorded, "record a delivered container status");
    }
  }
}

void DaemonState::finished(const std::string& task_arn) {
  {
    std::lock_guard lock(mutex_);
    written_.erase(task_arn);
  }
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  check(store_.finishTask(task_arn, now), "forget a finished task");
}

bool DaemonState::hasFinished(const std::string& task_arn) {
  auto finished = store_.hasFinished(task_arn);
  if (!finished) {
    // Unknown: the task is taken as new; the engine still ignores one it finished itself.
    spdlog::error("state store: look up finished task {}: {}", task_arn, finished.error().message);
    return false;
  }
  return *finished;
}

}  // namespace ecs::daemon
