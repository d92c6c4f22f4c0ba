#include "agent/state/state_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/state/sqlite.h"

namespace ecs::state {
namespace {

namespace fs = std::filesystem;

TaskRecord makeTask(const std::string& arn, std::string payload = "{}") {
  TaskRecord task;
  task.arn = arn;
  task.payload_json = std::move(payload);
  task.desired_status = "RUNNING";
  task.known_status = "NONE";
  task.role_credentials_id = "role-" + arn;
  task.execution_role_credentials_id = "exec-" + arn;
  return task;
}

OutboxEntry makeEntry(const std::string& task_arn, const std::string& kind,
                      const std::string& status, const std::string& container = "") {
  OutboxEntry entry;
  entry.task_arn = task_arn;
  entry.kind = kind;
  entry.container_name = container;
  entry.status = status;
  entry.body = R"({"status":")" + status + R"("})";
  return entry;
}

mode_t modeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "state_store_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (fs::path(dir_) / "state.db").string();
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::unique_ptr<StateStore> open(OpenReport* report = nullptr) {
    OpenReport local;
    auto store = StateStore::open(path_, report ? report : &local);
    EXPECT_TRUE(store) << store.error().message;
    return store ? std::move(*store) : nullptr;
  }

  // Files in the directory whose name starts with `prefix`.
  std::vector<std::string> filesStartingWith(const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      std::string name = entry.path().filename().string();
      if (name.starts_with(prefix)) out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Expects `report` to say the store was moved aside, and the moved file to be where it says.
  void expectMovedAside(const OpenReport& report) {
    EXPECT_TRUE(report.moved_aside.starts_with(path_ + ".corrupt-")) << report.moved_aside;
    EXPECT_TRUE(fs::exists(report.moved_aside));
    EXPECT_FALSE(report.reason.empty());
    EXPECT_TRUE(report.created);
  }

  std::string dir_;
  std::string path_;
};

TEST_F(StateStoreTest, CreatesANewStore) {
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  EXPECT_TRUE(report.created);
  EXPECT_TRUE(report.moved_aside.empty());
  EXPECT_EQ(report.migrated_from, 0);
  EXPECT_EQ(store->path(), path_);
  EXPECT_TRUE(store->tasks()->empty());
  EXPECT_TRUE(store->outbox()->empty());
  EXPECT_TRUE(store->credentials()->empty());
}

TEST_F(StateStoreTest, FailsWhenNoStoreCanBeMade) {
  OpenReport report;
  auto store = StateStore::open(dir_ + "/missing/state.db", &report);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("missing/state.db"), std::string::npos)
      << store.error().message;
  EXPECT_TRUE(report.moved_aside.empty());
}

TEST_F(StateStoreTest, NamedValuesRoundTrip) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->value("cluster").value(), std::nullopt);
  ASSERT_TRUE(store->setValue("cluster", "prod"));
  ASSERT_TRUE(store->setValue("manifest_seq", "7"));
  EXPECT_EQ(store->value("cluster").value(), "prod");
  ASSERT_TRUE(store->setValue("cluster", "staging"));
  EXPECT_EQ(store->value("cluster").value(), "staging");
  EXPECT_EQ(store->value("manifest_seq").value(), "7");
  ASSERT_TRUE(store->setValue("empty", ""));
  EXPECT_EQ(store->value("empty").value(), "");
}

TEST_F(StateStoreTest, TasksRoundTripInArrivalOrder) {
  auto store = open();
  ASSERT_TRUE(store);
  TaskRecord b = makeTask("arn:b", R"({"family":"b"})");
  b.stopped_reason = "none yet";
  ASSERT_TRUE(store->putTask(b));
  ASSERT_TRUE(store->putTask(makeTask("arn:a")));
  ASSERT_TRUE(store->putTask(makeTask("arn:c")));

  auto got = store->task("arn:b");
  ASSERT_TRUE(got && got->has_value());
  const TaskRecord& t = **got;
  EXPECT_EQ(t.arn, "arn:b");
  EXPECT_EQ(t.payload_json, R"({"family":"b"})");
  EXPECT_EQ(t.desired_status, "RUNNING");
  EXPECT_EQ(t.known_status, "NONE");
  EXPECT_EQ(t.sent_status, "");
  EXPECT_EQ(t.role_credentials_id, "role-arn:b");
  EXPECT_EQ(t.execution_role_credentials_id, "exec-arn:b");
  EXPECT_EQ(t.stopped_reason, "none yet");
  EXPECT_EQ(store->task("arn:none").value(), std::nullopt);

  auto all = store->tasks();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].arn, "arn:b");
  EXPECT_EQ((*all)[1].arn, "arn:a");
  EXPECT_EQ((*all)[2].arn, "arn:c");
  EXPECT_LT((*all)[0].added_seq, (*all)[1].added_seq);
  EXPECT_LT((*all)[1].added_seq, (*all)[2].added_seq);

  // Replacing keeps the order of arrival and the containers' sent statuses.
  ASSERT_TRUE(store->setContainerSentStatus("arn:b", "web", "RUNNING"));
  TaskRecord b2 = makeTask("arn:b", R"({"family":"b","v":2})");
  b2.desired_status = "STOPPED";
  ASSERT_TRUE(store->putTask(b2));
  all = store->tasks();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].arn, "arn:b");
  EXPECT_EQ((*all)[0].payload_json, R"({"family":"b","v":2})");
  EXPECT_EQ((*all)[0].desired_status, "STOPPED");
  EXPECT_EQ(store->containerSentStatuses("arn:b")->size(), 1u);

  EXPECT_EQ(store->putTask(makeTask("")).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(StateStoreTest, PutTaskKeepsTheAcceptedStatusUnlessGivenOne) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  auto seq = store->enqueue(makeEntry("arn:t", "task", "RUNNING"));
  ASSERT_TRUE(seq);
  ASSERT_TRUE(store->accepted(*seq));
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "RUNNING");
  TaskRecord stopped = makeTask("arn:t");
  stopped.sent_status = "STOPPED";
  ASSERT_TRUE(store->putTask(stopped));
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "STOPPED");
}

TEST_F(StateStoreTest, PutTasksIsAllOrNone) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTasks({makeTask("arn:1"), makeTask("arn:2")}));
  EXPECT_EQ(store->tasks()->size(), 2u);
  // The third record is invalid: none of the batch may be stored.
  auto bad = store->putTasks({makeTask("arn:3"), makeTask("arn:4"), makeTask("")});
  ASSERT_FALSE(bad);
  auto all = store->tasks();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(store->task("arn:3").value(), std::nullopt);
  // The store is usable after the rollback.
  ASSERT_TRUE(store->putTasks({makeTask("arn:3")}));
  EXPECT_EQ(store->tasks()->size(), 3u);
}

TEST_F(StateStoreTest, DesiredAndKnownStatus) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  ASSERT_TRUE(store->setKnownStatus("arn:t", "RUNNING"));
  ASSERT_TRUE(store->setDesiredStatus("arn:t", "STOPPED", "Essential container exited"));
  auto t = store->task("arn:t");
  ASSERT_TRUE(t && t->has_value());
  EXPECT_EQ((*t)->known_status, "RUNNING");
  EXPECT_EQ((*t)->desired_status, "STOPPED");
  EXPECT_EQ((*t)->stopped_reason, "Essential container exited");
  // No reason keeps the one stored.
  ASSERT_TRUE(store->setDesiredStatus("arn:t", "STOPPED"));
  EXPECT_EQ(store->task("arn:t").value()->stopped_reason, "Essential container exited");

  EXPECT_EQ(store->setKnownStatus("arn:none", "RUNNING").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store->setDesiredStatus("arn:none", "STOPPED").error().code, ErrorCode::kNotFound);
}

TEST_F(StateStoreTest, CredentialsRoundTrip) {
  auto store = open();
  ASSERT_TRUE(store);
  // Credentials may come before their task.
  ASSERT_TRUE(store->putCredentials({"c1", "arn:t", "TaskApplication", R"({"k":"1"})"}));
  ASSERT_TRUE(store->putCredentials({"c2", "arn:t", "TaskExecution", R"({"k":"2"})"}));
  ASSERT_TRUE(store->putCredentials({"c3", "arn:u", "TaskApplication", R"({"k":"3"})"}));
  ASSERT_TRUE(store->putCredentials({"c1", "arn:t", "TaskApplication", R"({"k":"1b"})"}));
  auto all = store->credentials();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "c1");
  EXPECT_EQ((*all)[0].task_arn, "arn:t");
  EXPECT_EQ((*all)[0].role_type, "TaskApplication");
  EXPECT_EQ((*all)[0].json, R"({"k":"1b"})");
  EXPECT_EQ((*all)[1].role_type, "TaskExecution");
  ASSERT_TRUE(store->removeCredentials("c2"));
  ASSERT_TRUE(store->removeCredentials("c2"));  // idempotent
  all = store->credentials();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].id, "c3");
  EXPECT_EQ(store->putCredentials({"", "arn:t", "TaskApplication", "{}"}).error().code,
            ErrorCode::kInvalidArgument);
}

TEST_F(StateStoreTest, OutboxKeepsOrderAndFields) {
  auto store = open();
  ASSERT_TRUE(store);
  auto s1 = store->enqueue(makeEntry("arn:t", "container", "RUNNING", "web"));
  auto s2 = store->enqueue(makeEntry("arn:t", "task", "RUNNING"));
  auto s3 = store->enqueue(makeEntry("arn:u", "task", "PENDING"));
  ASSERT_TRUE(s1 && s2 && s3);
  EXPECT_LT(*s1, *s2);
  EXPECT_LT(*s2, *s3);
  auto all = store->outbox();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].seq, *s1);
  EXPECT_EQ((*all)[0].task_arn, "arn:t");
  EXPECT_EQ((*all)[0].kind, "container");
  EXPECT_EQ((*all)[0].container_name, "web");
  EXPECT_EQ((*all)[0].status, "RUNNING");
  EXPECT_EQ((*all)[0].body, R"({"status":"RUNNING"})");
  EXPECT_EQ((*all)[1].seq, *s2);
  EXPECT_EQ((*all)[2].seq, *s3);
  EXPECT_EQ(store->enqueue(makeEntry("arn:t", "bogus", "RUNNING")).error().code,
            ErrorCode::kInvalidArgument);
}

TEST_F(StateStoreTest, AcceptedRecordsTheSentStatusAndDropDoesNot) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  auto container = store->enqueue(makeEntry("arn:t", "container", "RUNNING", "web"));
  auto task = store->enqueue(makeEntry("arn:t", "task", "RUNNING"));
  auto refused = store->enqueue(makeEntry("arn:t", "task", "STOPPED"));
  auto refused_container = store->enqueue(makeEntry("arn:t", "container", "STOPPED", "db"));
  ASSERT_TRUE(container && task && refused && refused_container);

  ASSERT_TRUE(store->accepted(*container));
  auto sent = store->containerSentStatuses("arn:t");
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->size(), 1u);
  EXPECT_EQ((*sent)[0].task_arn, "arn:t");
  EXPECT_EQ((*sent)[0].name, "web");
  EXPECT_EQ((*sent)[0].sent_status, "RUNNING");
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "");

  ASSERT_TRUE(store->accepted(*task));
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "RUNNING");

  ASSERT_TRUE(store->drop(*refused));
  ASSERT_TRUE(store->drop(*refused_container));
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "RUNNING");
  EXPECT_EQ(store->containerSentStatuses("arn:t")->size(), 1u);
  EXPECT_TRUE(store->outbox()->empty());

  // Unknown or repeated seqs change nothing and are not errors.
  ASSERT_TRUE(store->accepted(*task));
  ASSERT_TRUE(store->accepted(987654));
  ASSERT_TRUE(store->drop(*refused));
  EXPECT_EQ(store->task("arn:t").value()->sent_status, "RUNNING");

  // A change for a task the store does not hold is removed when accepted, recording nothing.
  auto orphan = store->enqueue(makeEntry("arn:gone", "container", "RUNNING", "web"));
  ASSERT_TRUE(orphan);
  ASSERT_TRUE(store->accepted(*orphan));
  EXPECT_TRUE(store->outbox()->empty());
  EXPECT_TRUE(store->containerSentStatuses("arn:gone")->empty());
}

TEST_F(StateStoreTest, ContainerSentStatuses) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  ASSERT_TRUE(store->setContainerSentStatus("arn:t", "web", "PENDING"));
  ASSERT_TRUE(store->setContainerSentStatus("arn:t", "db", "RUNNING"));
  ASSERT_TRUE(store->setContainerSentStatus("arn:t", "web", "RUNNING"));
  auto sent = store->containerSentStatuses("arn:t");
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->size(), 2u);
  EXPECT_EQ((*sent)[0].name, "db");
  EXPECT_EQ((*sent)[1].name, "web");
  EXPECT_EQ((*sent)[1].sent_status, "RUNNING");
  EXPECT_TRUE(store->containerSentStatuses("arn:none")->empty());
  EXPECT_EQ(store->setContainerSentStatus("arn:none", "web", "RUNNING").error().code,
            ErrorCode::kNotFound);
}

TEST_F(StateStoreTest, RemoveTaskTakesEverythingOfTheTask) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->putTasks({makeTask("arn:t"), makeTask("arn:u")}));
  for (const std::string arn : {"arn:t", "arn:u"}) {
    ASSERT_TRUE(store->setContainerSentStatus(arn, "web", "RUNNING"));
    ASSERT_TRUE(store->putCredentials({"cred-" + arn, arn, "TaskApplication", "{}"}));
    ASSERT_TRUE(store->enqueue(makeEntry(arn, "task", "RUNNING")));
  }
  ASSERT_TRUE(store->removeTask("arn:t"));
  EXPECT_EQ(store->task("arn:t").value(), std::nullopt);
  EXPECT_TRUE(store->containerSentStatuses("arn:t")->empty());
  auto credentials = store->credentials();
  ASSERT_TRUE(credentials);
  ASSERT_EQ(credentials->size(), 1u);
  EXPECT_EQ((*credentials)[0].task_arn, "arn:u");
  auto outbox = store->outbox();
  ASSERT_TRUE(outbox);
  ASSERT_EQ(outbox->size(), 1u);
  EXPECT_EQ((*outbox)[0].task_arn, "arn:u");
  EXPECT_EQ(store->containerSentStatuses("arn:u")->size(), 1u);
  ASSERT_TRUE(store->removeTask("arn:t"));  // idempotent
}

TEST_F(StateStoreTest, AFinishedTaskIsRemovedAndRememberedAcrossAReopen) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->putTasks({makeTask("arn:t"), makeTask("arn:u")}));
    ASSERT_TRUE(store->putCredentials({"cred-t", "arn:t", "TaskApplication", "{}"}));
    ASSERT_TRUE(store->enqueue(makeEntry("arn:t", "task", "STOPPED")));
    EXPECT_FALSE(store->hasFinished("arn:t").value());
    ASSERT_TRUE(store->finishTask("arn:t", 1000));
    EXPECT_EQ(store->task("arn:t").value(), std::nullopt);
    EXPECT_TRUE(store->credentials()->empty());
    EXPECT_TRUE(store->outbox()->empty());
    EXPECT_TRUE(store->hasFinished("arn:t").value());
    EXPECT_FALSE(store->hasFinished("arn:u").value());
    ASSERT_TRUE(store->finishTask("arn:t", 1500));  // again: one record, the later time
  }
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->hasFinished("arn:t").value());
  EXPECT_TRUE(store->task("arn:u").value().has_value());
}

TEST_F(StateStoreTest, OnlyTheMostRecentFinishedTasksAreKept) {
  auto store = open();
  ASSERT_TRUE(store);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->finishTask("arn:" + std::to_string(i), 1000 + i, /*keep=*/3));
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(store->hasFinished("arn:" + std::to_string(i)).value(), i >= 2) << i;
  }
}

TEST_F(StateStoreTest, ReopenKeepsEverything) {
  int64_t seq = 0;
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->setValue("container_instance_arn", "arn:ci"));
    ASSERT_TRUE(store->putTasks({makeTask("arn:t"), makeTask("arn:u")}));
    ASSERT_TRUE(store->setKnownStatus("arn:t", "RUNNING"));
    ASSERT_TRUE(store->setContainerSentStatus("arn:t", "web", "RUNNING"));
    ASSERT_TRUE(store->putCredentials({"c1", "arn:t", "TaskApplication", R"({"k":1})"}));
    ASSERT_TRUE(store->recordImagesUsed({{"reg.example/app:1", 1700000000123}}));
    auto enqueued = store->enqueue(makeEntry("arn:u", "container", "RUNNING", "db"));
    ASSERT_TRUE(enqueued);
    seq = *enqueued;
  }
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  EXPECT_FALSE(report.created);
  EXPECT_TRUE(report.moved_aside.empty());
  EXPECT_EQ(report.migrated_from, 0);
  EXPECT_EQ(store->value("container_instance_arn").value(), "arn:ci");
  auto tasks = store->tasks();
  ASSERT_TRUE(tasks);
  ASSERT_EQ(tasks->size(), 2u);
  EXPECT_EQ((*tasks)[0].arn, "arn:t");
  EXPECT_EQ((*tasks)[0].known_status, "RUNNING");
  EXPECT_EQ(store->containerSentStatuses("arn:t")->size(), 1u);
  ASSERT_EQ(store->credentials()->size(), 1u);
  EXPECT_EQ(store->credentials()->front().json, R"({"k":1})");
  ASSERT_EQ(store->imagesUsed()->size(), 1u);
  EXPECT_EQ(store->imagesUsed()->front().last_used_ms, 1700000000123);
  auto outbox = store->outbox();
  ASSERT_TRUE(outbox);
  ASSERT_EQ(outbox->size(), 1u);
  EXPECT_EQ((*outbox)[0].seq, seq);
  // Seqs keep increasing after a reopen, even past removed entries.
  ASSERT_TRUE(store->drop(seq));
  auto next = store->enqueue(makeEntry("arn:u", "task", "RUNNING"));
  ASSERT_TRUE(next);
  EXPECT_GT(*next, seq);
}

TEST_F(StateStoreTest, ImageUsageRoundTrip) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->imagesUsed()->empty());
  ASSERT_TRUE(store->recordImagesUsed({{"reg.example/b:1", 2000}, {"reg.example/a:1", 1000}}));
  // Replacing keeps one row per image; an empty batch changes nothing.
  ASSERT_TRUE(store->recordImagesUsed({{"reg.example/b:1", 3000}}));
  ASSERT_TRUE(store->recordImagesUsed({}));
  auto images = store->imagesUsed();
  ASSERT_TRUE(images);
  ASSERT_EQ(images->size(), 2u);
  EXPECT_EQ((*images)[0].name, "reg.example/a:1");
  EXPECT_EQ((*images)[0].last_used_ms, 1000);
  EXPECT_EQ((*images)[1].name, "reg.example/b:1");
  EXPECT_EQ((*images)[1].last_used_ms, 3000);

  // A batch with a nameless record writes none of it.
  auto refused = store->recordImagesUsed({{"reg.example/c:1", 4000}, {"", 4000}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(store->imagesUsed()->size(), 2u);

  // Forgetting an image never stored is no error.
  ASSERT_TRUE(store->forgetImages({"reg.example/a:1", "reg.example/never:1"}));
  ASSERT_TRUE(store->forgetImages({}));
  images = store->imagesUsed();
  ASSERT_TRUE(images);
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ((*images)[0].name, "reg.example/b:1");

  // Image records are not a task's: removing tasks leaves them.
  ASSERT_TRUE(store->putTask(makeTask("arn:t")));
  ASSERT_TRUE(store->removeTask("arn:t"));
  EXPECT_EQ(store->imagesUsed()->size(), 1u);
}

// The schema of version 1 exactly as the first release created it (kMigrations[0]); frozen
// here so that a change to it shows up as a failing migration test.
constexpr const char* kSchemaVersion1 = R"sql(
CREATE TABLE named_values (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE tasks (
  arn TEXT PRIMARY KEY,
  payload_json TEXT NOT NULL,
  desired_status TEXT NOT NULL,
  known_status TEXT NOT NULL,
  sent_status TEXT NOT NULL DEFAULT '',
  role_credentials_id TEXT NOT NULL DEFAULT '',
  execution_role_credentials_id TEXT NOT NULL DEFAULT '',
  stopped_reason TEXT NOT NULL DEFAULT '',
  added_seq INTEGER NOT NULL
);
CREATE INDEX tasks_added_seq ON tasks(added_seq);
CREATE TABLE containers_sent (
  task_arn TEXT NOT NULL REFERENCES tasks(arn) ON DELETE CASCADE,
  name TEXT NOT NULL,
  sent_status TEXT NOT NULL,
  PRIMARY KEY (task_arn, name)
);
CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  task_arn TEXT NOT NULL,
  role_type TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX credentials_task_arn ON credentials(task_arn);
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_arn TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('task', 'container')),
  container_name TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX outbox_task_arn ON outbox(task_arn);
)sql";

// Every table, index and trigger of the store at `path`, as SQL, in name order.
std::vector<std::string> schemaOf(const std::string& path) {
  int rc = SQLITE_OK;
  std::string message;
  auto db = sqlite::Db::open(path, /*create=*/false, &rc, &message);
  EXPECT_TRUE(db) << message;
  std::vector<std::string> out;
  if (!db) return out;
  auto statement = sqlite::Statement::prepare(
      db,
      "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master "
      "WHERE name NOT LIKE 'sqlite_%' ORDER BY name");
  EXPECT_TRUE(statement);
  if (!statement) return out;
  while (statement->step().value_or(false)) out.push_back(statement->text(0));
  return out;
}

TEST_F(StateStoreTest, MigratesAVersion1StoreKeepingItsRows) {
  {
    // A store as the version-1 agent left it, WAL and all.
    int rc = SQLITE_OK;
    std::string message;
    auto db = sqlite::Db::open(path_, /*create=*/true, &rc, &message);
    ASSERT_TRUE(db) << message;
    ASSERT_TRUE(db.exec("PRAGMA journal_mode = WAL"));
    ASSERT_TRUE(db.exec(std::string("BEGIN;") + kSchemaVersion1 + R"sql(
INSERT INTO named_values (key, value) VALUES ('container_instance_arn', 'arn:ci');
INSERT INTO tasks (arn, payload_json, desired_status, known_status, sent_status, added_seq)
  VALUES ('arn:t', '{"family":"web"}', 'RUNNING', 'RUNNING', 'RUNNING', 1);
INSERT INTO containers_sent (task_arn, name, sent_status) VALUES ('arn:t', 'web', 'RUNNING');
INSERT INTO credentials (id, task_arn, role_type, json)
  VALUES ('c1', 'arn:t', 'TaskApplication', '{"k":1}');
INSERT INTO outbox (task_arn, kind, container_name, status, body)
  VALUES ('arn:t', 'container', 'web', 'STOPPED', '{}');
PRAGMA user_version = 1;
COMMIT;)sql"));
  }

  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  EXPECT_EQ(report.migrated_from, 1);
  EXPECT_FALSE(report.created);
  EXPECT_TRUE(report.moved_aside.empty()) << report.reason;

  EXPECT_EQ(store->value("container_instance_arn").value(), "arn:ci");
  auto task = store->task("arn:t");
  ASSERT_TRUE(task);
  ASSERT_TRUE(task->has_value());
  EXPECT_EQ((*task)->payload_json, R"({"family":"web"})");
  EXPECT_EQ((*task)->sent_status, "RUNNING");
  auto sent = store->containerSentStatuses("arn:t");
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->size(), 1u);
  EXPECT_EQ(sent->front().sent_status, "RUNNING");
  ASSERT_EQ(store->credentials()->size(), 1u);
  EXPECT_EQ(store->credentials()->front().json, R"({"k":1})");
  auto outbox = store->outbox();
  ASSERT_TRUE(outbox);
  ASSERT_EQ(outbox->size(), 1u);
  EXPECT_EQ(outbox->front().status, "STOPPED");

  // The new table is there and works.
  EXPECT_TRUE(store->imagesUsed()->empty());
  ASSERT_TRUE(store->recordImagesUsed({{"reg.example/app:1", 42}}));
  EXPECT_EQ(store->imagesUsed()->size(), 1u);
  store.reset();

  // Migrated, the store has exactly the schema of one created at the current version.
  const std::string fresh = (fs::path(dir_) / "fresh.db").string();
  {
    auto created = StateStore::open(fresh, nullptr);
    ASSERT_TRUE(created) << created.error().message;
  }
  auto migrated_schema = schemaOf(path_);
  EXPECT_FALSE(migrated_schema.empty());
  EXPECT_EQ(migrated_schema, schemaOf(fresh));

  // Opening again migrates nothing more.
  OpenReport again;
  ASSERT_TRUE(open(&again));
  EXPECT_EQ(again.migrated_from, 0);
}

// An agent killed right after recording an image's use: the record is there on the next start.
TEST_F(StateStoreTest, ImageUsageSurvivesKill) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto store = StateStore::open(path_, nullptr);
    if (!store) ::_exit(2);
    if (!(*store)->recordImagesUsed({{"reg.example/app:1", 1234}})) ::_exit(3);
    if (!(*store)->forgetImages({"reg.example/none:1"})) ::_exit(4);
    char done = 1;
    if (::write(fds[1], &done, 1) != 1) ::_exit(5);
    for (;;) ::pause();  // killed here, the store never closed
  }
  ::close(fds[1]);
  char done = 0;
  ASSERT_EQ(::read(fds[0], &done, 1), 1);
  ::close(fds[0]);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;

  auto store = open();
  ASSERT_TRUE(store);
  auto images = store->imagesUsed();
  ASSERT_TRUE(images);
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ(images->front().name, "reg.example/app:1");
  EXPECT_EQ(images->front().last_used_ms, 1234);
}

TEST_F(StateStoreTest, FilesArePrivate) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->setValue("k", "v"));
    EXPECT_EQ(modeOf(path_), 0600u);
    ASSERT_TRUE(fs::exists(path_ + "-wal"));
    EXPECT_EQ(modeOf(path_ + "-wal"), 0600u);
    ASSERT_TRUE(fs::exists(path_ + "-shm"));
    EXPECT_EQ(modeOf(path_ + "-shm"), 0600u);
  }
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(modeOf(path_), 0600u);
  EXPECT_EQ(store->value("k").value(), "v");
}

TEST_F(StateStoreTest, ConcurrentEnqueueKeepsEveryEntry) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  std::vector<std::vector<int64_t>> seqs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        OutboxEntry entry = makeEntry("arn:" + std::to_string(t), "task", std::to_string(i));
        auto seq = store->enqueue(entry);
        if (seq) seqs[t].push_back(*seq);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  std::set<int64_t> unique;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seqs[t].size(), static_cast<size_t>(kPerThread)) << "thread " << t;
    EXPECT_TRUE(std::is_sorted(seqs[t].begin(), seqs[t].end()));
    unique.insert(seqs[t].begin(), seqs[t].end());
  }
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kPerThread));
  auto outbox = store->outbox();
  ASSERT_TRUE(outbox);
  ASSERT_EQ(outbox->size(), unique.size());
  std::vector<int> next(kThreads, 0);
  int64_t last = 0;
  for (const OutboxEntry& entry : *outbox) {
    EXPECT_GT(entry.seq, last);
    last = entry.seq;
    EXPECT_TRUE(unique.contains(entry.seq));
    // Each thread's entries come out in the order it enqueued them.
    int t = std::stoi(entry.task_arn.substr(4));
    EXPECT_EQ(entry.status, std::to_string(next[t]++));
  }
}

TEST_F(StateStoreTest, ZeroLengthFileIsANewStore) {
  { std::ofstream(path_).flush(); }
  ASSERT_EQ(fs::file_size(path_), 0u);
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  EXPECT_TRUE(report.created);
  EXPECT_TRUE(report.moved_aside.empty());
  ASSERT_TRUE(store->setValue("k", "v"));
  EXPECT_TRUE(filesStartingWith("state.db.corrupt").empty());
}

TEST_F(StateStoreTest, RandomBytesAreMovedAside) {
  std::string junk(16384, '\0');
  std::mt19937 random(42);
  for (char& c : junk) c = static_cast<char>(random());
  {
    std::ofstream out(path_, std::ios::binary);
    out.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  expectMovedAside(report);
  std::ifstream moved(report.moved_aside, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(moved)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, junk);
  EXPECT_EQ(modeOf(path_), 0600u);
  ASSERT_TRUE(store->setValue("k", "v"));
  EXPECT_EQ(store->value("k").value(), "v");
}

TEST_F(StateStoreTest, TruncatedStoreIsMovedAside) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    std::vector<TaskRecord> tasks;
    for (int i = 0; i < 300; ++i) {
      tasks.push_back(makeTask("arn:" + std::to_string(i), std::string(1000, 'a' + i % 26)));
    }
    ASSERT_TRUE(store->putTasks(tasks));
  }
  ASSERT_FALSE(fs::exists(path_ + "-wal"));  // checkpointed into the file on close
  const auto size = fs::file_size(path_);
  ASSERT_GT(size, 100000u);
  fs::resize_file(path_, size / 2);

  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  expectMovedAside(report);
  EXPECT_EQ(fs::file_size(report.moved_aside), size / 2);
  EXPECT_TRUE(store->tasks()->empty());
  ASSERT_TRUE(store->putTask(makeTask("arn:new")));
}

// A readable header over a damaged page: only the integrity check finds it.
TEST_F(StateStoreTest, DamagedPageFailsTheIntegrityCheck) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    std::vector<TaskRecord> tasks;
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(makeTask("arn:" + std::to_string(i), std::string(1000, 'x')));
    }
    ASSERT_TRUE(store->putTasks(tasks));
  }
  ASSERT_GT(fs::file_size(path_), 20u * 4096u);
  {
    // Page 11's b-tree page type byte: 0 is no valid page type.
    std::fstream file(path_, std::ios::binary | std::ios::in | std::ios::out);
    file.seekp(10 * 4096);
    file.put('\0');
  }
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  expectMovedAside(report);
  EXPECT_NE(report.reason.find("integrity check failed"), std::string::npos) << report.reason;
  EXPECT_TRUE(store->tasks()->empty());
}

TEST_F(StateStoreTest, StoreFromANewerAgentIsMovedAside) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->setValue("k", "v"));
  }
  {
    int rc = SQLITE_OK;
    std::string message;
    auto db = sqlite::Db::open(path_, /*create=*/false, &rc, &message);
    ASSERT_TRUE(db) << message;
    ASSERT_TRUE(db.exec("PRAGMA user_version = 999"));
  }
  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  expectMovedAside(report);
  EXPECT_NE(report.reason.find("999"), std::string::npos) << report.reason;
  EXPECT_EQ(store->value("k").value(), std::nullopt);

  // The moved file is intact: a newer agent could still read it.
  int rc = SQLITE_OK;
  std::string message;
  auto moved = sqlite::Db::open(report.moved_aside, /*create=*/false, &rc, &message);
  ASSERT_TRUE(moved) << message;
  auto version = sqlite::Statement::prepare(moved, "PRAGMA user_version");
  ASSERT_TRUE(version);
  ASSERT_TRUE(version->step().value_or(false));
  EXPECT_EQ(version->integer(0), 999);
}

TEST_F(StateStoreTest, TwoCorruptFilesInOneSecondGetTheirOwnNames) {
  for (int round = 0; round < 2; ++round) {
    {
      std::ofstream out(path_, std::ios::binary | std::ios::trunc);
      out << std::string(8192, 'x');
    }
    OpenReport report;
    auto store = open(&report);
    ASSERT_TRUE(store);
    expectMovedAside(report);
  }
  EXPECT_EQ(filesStartingWith("state.db.corrupt-").size(), 2u);
}

// The process writing the store is killed at a random point: what it was told was committed is
// there, and the file passes the integrity check.
TEST_F(StateStoreTest, SurvivesKillWhileWriting) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    OpenReport report;
    auto store = StateStore::open(path_, &report);
    if (!store) ::_exit(2);
    for (int64_t i = 0;; ++i) {
      std::string arn = "arn:" + std::to_string(i);
      if (!(*store)->putTask(makeTask(arn, std::string(200, 'p')))) ::_exit(3);
      auto seq = (*store)->enqueue(makeEntry(arn, "task", "RUNNING"));
      if (!seq) ::_exit(4);
      int64_t report_seq = *seq;
      if (::write(fds[1], &report_seq, sizeof report_seq) != sizeof report_seq) ::_exit(5);
    }
  }
  ::close(fds[1]);
  std::vector<int64_t> committed;
  auto readOne = [&]() {
    int64_t seq = 0;
    ssize_t n = ::read(fds[0], &seq, sizeof seq);
    if (n != static_cast<ssize_t>(sizeof seq)) return false;
    committed.push_back(seq);
    return true;
  };
  while (committed.size() < 500 && readOne()) {
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  while (readOne()) {
  }
  ::close(fds[0]);
  ASSERT_GE(committed.size(), 500u);
  // The killed writer left its WAL behind: opening must recover from it.
  ASSERT_TRUE(fs::exists(path_ + "-wal"));
  EXPECT_GT(fs::file_size(path_ + "-wal"), 0u);

  OpenReport report;
  auto store = open(&report);
  ASSERT_TRUE(store);
  EXPECT_TRUE(report.moved_aside.empty()) << report.reason;
  EXPECT_FALSE(report.created);
  auto outbox = store->outbox();
  ASSERT_TRUE(outbox);
  std::set<int64_t> stored;
  for (const OutboxEntry& entry : *outbox) stored.insert(entry.seq);
  for (int64_t seq : committed) EXPECT_TRUE(stored.contains(seq)) << "seq " << seq << " lost";
  // Every entry's task was put before it: the store holds at least as many tasks.
  EXPECT_GE(store->tasks()->size(), outbox->size());
}

}  // namespace
}  // namespace ecs::state
