// DaemonAcsHandler with a fake engine: where payload tasks, credentials and manifests go.
#include <gtest/gtest.h>

#include <set>

#include "agent/daemon/acs_handler.h"
#include "tests/support/wait_for.h"

namespace ecs::daemon {
namespace {

using namespace std::chrono_literals;
using ecs::testing::pollUntil;
using engine::ContainerStatus;

class FakeTasks : public TaskSink {
 public:
  void upsert(engine::TaskSpec spec) override { upserts.push_back(std::move(spec)); }
  void stopTask(const std::string& task_arn, std::string reason) override {
    stops.emplace_back(task_arn, std::move(reason));
  }
  std::vector<engine::TaskSpec> upserts;
  std::vector<std::pair<std::string, std::string>> stops;
};

// Keeps the arns of what would be persisted; knows a set of finished tasks.
class FakeJournal : public HandlerJournal {
 public:
  Result<void> payloadArrived(const acs::AcsPayload& payload) override {
    for (const auto& t : payload.tasks) {
      if (t.task) kept.push_back(t.task->spec.arn);
    }
    return {};
  }
  bool hasFinished(const std::string& task_arn) override { return finished.contains(task_arn); }
  void credentialsRefreshed(const std::string&, const acs::RoleCredentials&) override {}
  void manifestSeen(std::int64_t) override {}
  void stopConfirmed(const std::string&, const std::string&) override {}

  std::set<std::string> finished;
  std::vector<std::string> kept;
};

class RecordingSink {
 public:
  TaskChangeSink sink() {
    return [this](const ecsapi::TaskStateChange& change, std::stop_token) -> aws::AwsResult<void> {
      std::lock_guard lock(mutex);
      changes.push_back(change);
      return {};
    };
  }
  std::mutex mutex;
  std::vector<ecsapi::TaskStateChange> changes;
};

acs::RoleCredentials roleCredentials(const std::string& id, const std::string& key,
                                     std::string_view type) {
  acs::RoleCredentials c;
  c.credentials_id = id;
  c.role_arn = "arn:aws:iam::1:role/" + id;
  c.access_key_id = key;
  c.secret_access_key = key + "-secret";
  c.session_token = key + "-token";
  c.expiration = "2030-03-25T06:17:19.318+0000";
  c.role_type = std::string(type);
  return c;
}

acs::PayloadTask payloadTask(const std::string& arn, ContainerStatus desired) {
  acs::AcsTask task;
  task.spec.arn = arn;
  task.spec.desired = desired;
  return acs::PayloadTask{arn, task};
}

engine::TaskSnapshotPtr snapshot(const std::string& arn, ContainerStatus desired,
                                 bool removed = false) {
  auto s = std::make_shared<engine::TaskSnapshot>();
  s->arn = arn;
  s->desired = desired;
  s->removed = removed;
  return s;
}

class DaemonAcsHandlerTest : public ::testing::Test {
 protected:
  DaemonAcsHandlerTest() : reporter_(sink_.sink(), options()), handler_(tasks_, store_, reporter_) {
    reporter_.start();
  }
  static StateReporterOptions options() {
    StateReporterOptions o;
    o.cluster = "unit";
    return o;
  }

  FakeTasks tasks_;
  credentials::CredentialsStore store_;
  RecordingSink sink_;
  StateReporter reporter_;
  DaemonAcsHandler handler_;
};

TEST_F(DaemonAcsHandlerTest, PayloadStoresCredentialsAndStartsStoppedTasksFirst) {
  acs::AcsPayload payload;
  payload.message_id = "m1";
  auto run = payloadTask("run", ContainerStatus::kRunning);
  run.task->role_credentials =
      roleCredentials("cred-run", "ASIARUN", acs::kRoleTypeTaskApplication);
  run.task->execution_role_credentials =
      roleCredentials("exec-run", "ASIAEXEC", acs::kRoleTypeTaskExecution);
  payload.tasks.push_back(run);
  payload.tasks.push_back(payloadTask("stop", ContainerStatus::kStopped));
  handler_.onPayload(payload, acs::AcsReply());

  ASSERT_EQ(tasks_.upserts.size(), 2u);
  EXPECT_EQ(tasks_.upserts[0].arn, "stop");
  EXPECT_EQ(tasks_.upserts[1].arn, "run");
  auto task_role = store_.get("cred-run");
  ASSERT_TRUE(task_role);
  EXPECT_EQ(task_role->task_arn, "run");
  EXPECT_EQ(task_role->role_type, credentials::RoleType::kTask);
  EXPECT_EQ(task_role->credentials->access_key_id, "ASIARUN");
  ASSERT_TRUE(task_role->credentials->expiration);
  auto exec = store_.get("exec-run");
  ASSERT_TRUE(exec);
  EXPECT_EQ(exec->role_type, credentials::RoleType::kExecution);
}

TEST_F(DaemonAcsHandlerTest, AFinishedTaskRedeliveredIsNeitherKeptNorStartedNorServed) {
  FakeJournal journal;
  journal.finished = {"done"};
  DaemonAcsHandler handler(tasks_, store_, reporter_, &journal);
  acs::AcsPayload payload;
  payload.message_id = "m1";
  auto done = payloadTask("done", ContainerStatus::kRunning);
  done.task->role_credentials =
      roleCredentials("cred-done", "ASIADONE", acs::kRoleTypeTaskApplication);
  payload.tasks.push_back(done);
  payload.tasks.push_back(payloadTask("new", ContainerStatus::kRunning));
  handler.onPayload(payload, acs::AcsReply());
  EXPECT_EQ(journal.kept, std::vector<std::string>{"new"});
  ASSERT_EQ(tasks_.upserts.size(), 1u);
  EXPECT_EQ(tasks_.upserts[0].arn, "new");
  EXPECT_FALSE(store_.get("cred-done"));
}

TEST_F(DaemonAcsHandlerTest, UnreadableTaskIsReportedStoppedAndNotGivenToTheEngine) {
  acs::AcsPayload payload;
  payload.message_id = "m1";
  payload.cluster_arn = "arn:aws:ecs:us-west-2:1:cluster/c";
  payload.tasks.push_back(
      acs::PayloadTask{"bad", fail(ErrorCode::kInvalidArgument, "containers[0].memory: bad")});
  payload.tasks.push_back(payloadTask("good", ContainerStatus::kRunning));
  handler_.onPayload(payload, acs::AcsReply());
  ASSERT_EQ(tasks_.upserts.size(), 1u);
  EXPECT_EQ(tasks_.upserts[0].arn, "good");
  ASSERT_TRUE(pollUntil(
      [&] {
        std::lock_guard lock(sink_.mutex);
        return sink_.changes.size() == 1;
      },
      5s));
  std::lock_guard lock(sink_.mutex);
  EXPECT_EQ(sink_.changes[0].task_arn, "bad");
  EXPECT_EQ(sink_.changes[0].status, ecsapi::ReportedStatus::kStopped);
  EXPECT_EQ(sink_.changes[0].reason, "UnrecognizedTaskError: containers[0].memory: bad");
}

TEST_F(DaemonAcsHandlerTest, CredentialsRefreshOnlyForKnownTasks) {
  acs::AcsCredentialsMessage message;
  message.message_id = "r1";
  message.task_arn = "unknown";
  message.credentials = roleCredentials("cred-x", "ASIAX", acs::kRoleTypeTaskApplication);
  handler_.onCredentials(message, acs::AcsReply());
  EXPECT_FALSE(store_.get("cred-x"));

  handler_.onSnapshot(snapshot("known", ContainerStatus::kRunning));
  message.task_arn = "known";
  handler_.onCredentials(message, acs::AcsReply());
  ASSERT_TRUE(store_.get("cred-x"));
  message.credentials.access_key_id = "ASIAFRESH";
  handler_.onCredentials(message, acs::AcsReply());
  EXPECT_EQ(store_.get("cred-x")->credentials->access_key_id, "ASIAFRESH");
}

TEST_F(DaemonAcsHandlerTest, ManifestVerificationStopsOnlyConfirmedTasksOfTheLastManifest) {
  handler_.onSnapshot(snapshot("listed", ContainerStatus::kRunning));
  handler_.onSnapshot(snapshot("missing", ContainerStatus::kRunning));
  handler_.onSnapshot(snapshot("stopping", ContainerStatus::kStopped));
  acs::AcsTaskManifest manifest;
  manifest.message_id = "manifest-1";
  manifest.timeline = 5;
  manifest.tasks.push_back({"listed", "c", "RUNNING"});
  handler_.onTaskManifest(manifest, acs::AcsReply());

  acs::AcsStopVerificationAck wrong;
  wrong.message_id = "manifest-0";
  wrong.stop_tasks.push_back({"missing", "c", "STOPPED"});
  handler_.onStopVerificationAck(wrong);
  EXPECT_TRUE(tasks_.stops.empty());

  acs::AcsStopVerificationAck ack;
  ack.message_id = "manifest-1";
  ack.stop_tasks.push_back({"missing", "c", "STOPPED"});
  handler_.onStopVerificationAck(ack);
  ASSERT_EQ(tasks_.stops.size(), 1u);
  EXPECT_EQ(tasks_.stops[0].first, "missing");
  // A second ack for the same manifest does nothing.
  handler_.onStopVerificationAck(ack);
  EXPECT_EQ(tasks_.stops.size(), 1u);
}

TEST_F(DaemonAcsHandlerTest, RemovedTasksAreForgotten) {
  handler_.onSnapshot(snapshot("t", ContainerStatus::kRunning));
  EXPECT_EQ(handler_.knownTasks(), std::vector<std::string>{"t"});
  EXPECT_FALSE(handler_.waitUntilNoTasks(std::chrono::steady_clock::now() + 10ms));
  handler_.onSnapshot(snapshot("t", ContainerStatus::kStopped, true));
  EXPECT_TRUE(handler_.knownTasks().empty());
  EXPECT_TRUE(handler_.waitUntilNoTasks(std::chrono::steady_clock::now()));
}

}  // namespace
}  // namespace ecs::daemon
