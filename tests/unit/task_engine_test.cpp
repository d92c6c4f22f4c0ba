// The engine's task state machine against fakes: a runtime whose containers exit when told, an
// image source that can hold a pull, resources that record their lifecycle, and the engine
// clock moved by hand. Each test covers in milliseconds what would take a real container seconds
// or minutes (stop timeouts, health intervals, restart periods, pull timeouts).
#include "agent/engine/task_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "agent/engine/task_directory.h"

namespace ecs::engine {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kWait = 5s;  // an upper bound on events that take milliseconds

// --- fakes -------------------------------------------------------------------------------------

// Everything the fakes record, behind one lock, with a way to wait until a condition holds.
class Journal {
 public:
  void add(std::string entry) {
    std::lock_guard lock(mutex_);
    entries_.push_back(std::move(entry));
    changed_.notify_all();
  }
  std::vector<std::string> entries() const {
    std::lock_guard lock(mutex_);
    return entries_;
  }
  bool contains(const std::string& entry) const {
    std::lock_guard lock(mutex_);
    return std::find(entries_.begin(), entries_.end(), entry) != entries_.end();
  }
  size_t count(const std::string& entry) const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count(entries_.begin(), entries_.end(), entry));
  }
  // Waits until `entry` has been recorded `times` times.
  bool waitFor(const std::string& entry, size_t times = 1) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWait, [&] {
      return static_cast<size_t>(std::count(entries_.begin(), entries_.end(), entry)) >= times;
    });
  }
  // For what must NOT happen: whether `entry` shows up within a short while.
  bool waitForBriefly(const std::string& entry, std::chrono::milliseconds wait = 100ms) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, wait, [&] {
      return std::find(entries_.begin(), entries_.end(), entry) != entries_.end();
    });
  }
  // The entries starting with `prefix`, in order.
  std::vector<std::string> matching(const std::string& prefix) const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& e : entries_) {
      if (e.starts_with(prefix)) out.push_back(e);
    }
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> entries_;
};

// Container names are the last part of the engine's runtime ids ("<task>-<index>-<name>").
std::string nameOf(const std::string& runtime_id) {
  return runtime_id.substr(runtime_id.rfind('-') + 1);
}

class FakeRuntime : public ContainerRuntime {
 public:
  explicit FakeRuntime(Journal& journal) : journal_(journal) {}

  // Behaviour, set before the task starts.
  std::set<std::string> fail_start;          // container names whose start fails
  std::set<std::string> ignore_sigterm;      // keep running on SIGTERM (SIGKILL still ends them)
  std::map<std::string, int> exit_on_start;  // exit at once with this code
  std::map<std::string, int> health_exit;    // health-check result (default 0)
  // What inspect() says of containers an earlier agent left (by name), unless running.
  std::map<std::string, RuntimeContainerState> adoptable;

  // A container an earlier agent process started, still running.
  void leaveRunning(const std::string& id) {
    std::lock_guard lock(mutex_);
    running_.insert(id);
  }

  Result<void> createContainer(const runtime::ContainerSpec& spec) override {
    journal_.add("create " + nameOf(spec.id));
    std::lock_guard lock(mutex_);
    specs_[nameOf(spec.id)] = spec;
    return {};
  }
  Result<uint32_t> startTask(const std::string& id, const std::string&, const std::string&,
                             const std::map<std::string, std::string>& log_options) override {
    const auto name = nameOf(id);
    {
      std::lock_guard lock(mutex_);
      log_options_[name] = log_options;
    }
    if (fail_start.contains(name)) {
      journal_.add("start " + name);
      return fail(ErrorCode::kInternal, "runc says no");
    }
    {
      std::lock_guard lock(mutex_);
      running_.insert(id);
    }
    journal_.add("start " + name);  // recorded once it runs: the test may make it exit
    if (auto it = exit_on_start.find(name); it != exit_on_start.end()) exit(id, it->second);
    return 42;
  }
  Result<void> killTask(const std::string& id, int signal, bool) override {
    const auto name = nameOf(id);
    journal_.add(fmt::format("kill {} {}", name, signal == SIGKILL ? "KILL" : "TERM"));
    if (signal != SIGKILL && ignore_sigterm.contains(name)) return {};
    exit(id, 128 + signal);
    return {};
  }
  Result<void> deleteTask(const std::string& id) override {
    journal_.add("delete-task " + nameOf(id));
    std::lock_guard lock(mutex_);
    exited_.erase(id);
    return {};
  }
  Result<void> deleteContainer(const std::string& id) override {
    journal_.add("delete " + nameOf(id));
    return {};
  }
  Result<int> exec(const std::string& id, const std::string&, const std::string&,
                   const std::string&, std::chrono::milliseconds) override {
    const auto name = nameOf(id);
    journal_.add("health " + name);
    std::lock_guard lock(mutex_);
    auto it = health_exit.find(name);
    return it == health_exit.end() ? 0 : it->second;
  }
  Result<UserIds> resolveUser(const std::string&, const std::string&, const std::string&) override {
    return UserIds{};
  }
  Result<RuntimeContainerState> inspect(const std::string& id) override {
    journal_.add("inspect " + nameOf(id));
    std::lock_guard lock(mutex_);
    RuntimeContainerState state;
    if (auto it = adoptable.find(nameOf(id)); it != adoptable.end()) state = it->second;
    if (auto it = exited_.find(id); it != exited_.end()) {
      state = {true, runtime::TaskStatus::kStopped, static_cast<uint32_t>(it->second)};
    }
    if (running_.contains(id)) {
      state.exists = true;
      state.process = runtime::TaskStatus::kRunning;
    }
    return state;
  }
  void onExit(std::function<void(const std::string&, uint32_t)> cb) override { on_exit_ = cb; }
  void onOom(std::function<void(const std::string&)> cb) override { on_oom_ = cb; }

  void setHealth(const std::string& name, int code) {
    std::lock_guard lock(mutex_);
    health_exit[name] = code;
  }
  // The container's process exits with `code` (only once per start).
  void exit(const std::string& id, int code) {
    {
      std::lock_guard lock(mutex_);
      if (!running_.erase(id)) return;
      exited_[id] = code;  // until its task is deleted, as containerd keeps it
    }
    on_exit_(id, static_cast<uint32_t>(code));
  }
  void exitByName(const std::string& name, int code) {
    std::string id;
    {
      std::lock_guard lock(mutex_);
      for (const auto& r : running_) {
        if (nameOf(r) == name) id = r;
      }
    }
    ASSERT_FALSE(id.empty()) << name << " is not running";
    exit(id, code);
  }
  runtime::ContainerSpec spec(const std::string& name) {
    std::lock_guard lock(mutex_);
    return specs_[name];
  }
  std::map<std::string, std::string> logOptions(const std::string& name) {
    std::lock_guard lock(mutex_);
    return log_options_[name];
  }

 private:
  Journal& journal_;
  std::mutex mutex_;
  std::set<std::string> running_;
  std::map<std::string, int> exited_;
  std::map<std::string, runtime::ContainerSpec> specs_;
  std::map<std::string, std::map<std::string, std::string>> log_options_;
  std::function<void(const std::string&, uint32_t)> on_exit_;
  std::function<void(const std::string&)> on_oom_;
};

class FakeImages : public ImageSource {
 public:
  explicit FakeImages(Journal& journal) : journal_(journal) {}

  bool hold = false;              // pulls wait until release() or cancellation
  std::set<std::string> missing;  // images whose pull fails

  Result<images::ResolvedImage> resolveLocal(const images::ImageReference&) override {
    return fail(ErrorCode::kNotFound, "not here");
  }
  Result<images::ResolvedImage> pull(const images::ImageReference& image,
                                     const PullLimits& limits) override {
    journal_.add("pull " + image.str());
    if (hold) {
      std::unique_lock lock(mutex_);
      while (!released_) {
        if (limits.cancelled && limits.cancelled()) {
          journal_.add("pull cancelled");
          return fail(ErrorCode::kUnavailable, "pull cancelled");
        }
        released_cv_.wait_for(lock, 1ms);
      }
    }
    for (const auto& m : missing) {
      if (image.str().find(m) != std::string::npos) {
        return fail(ErrorCode::kNotFound, "manifest unknown");
      }
    }
    images::ResolvedImage resolved;
    resolved.name = image.str();
    resolved.chain_id = "sha256:chain";
    resolved.target.digest = "sha256:manifest";
    resolved.config.digest = "sha256:config";
    resolved.config_json = R"({"os":"linux","architecture":"amd64","config":{"Cmd":["sh"]}})";
    return resolved;
  }
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    released_cv_.notify_all();
  }

 private:
  Journal& journal_;
  std::mutex mutex_;
  std::condition_variable released_cv_;
  bool released_ = false;
};

class RecordingResource : public TaskResource {
 public:
  RecordingResource(Journal& journal, std::string name, bool fail_create, bool oom,
                    bool fail_recover = false)
      : journal_(journal),
        name_(std::move(name)),
        fail_create_(fail_create),
        oom_(oom),
        fail_recover_(fail_recover) {}
  std::string_view name() const override { return name_; }
  Result<void> create() override {
    journal_.add("resource-create " + name_);
    if (fail_create_) return fail(ErrorCode::kUnavailable, "host port 8080/tcp is in use");
    return {};
  }
  Result<void> recover() override {
    journal_.add("resource-recover " + name_);
    if (fail_recover_) return fail(ErrorCode::kNotFound, "network namespace ecs-x is gone");
    return {};
  }
  Result<void> contribute(const ContainerInfo& container, ContainerResources& out) override {
    journal_.add(fmt::format("resource-contribute {} {}", name_, container.definition->name));
    out.env.push_back("FROM_" + name_ + "=1");
    return {};
  }
  void inspectExit(const ContainerInfo&, ContainerExit& exit) override {
    if (oom_) exit.oom_killed = true;
  }
  void releaseOnStop() override { journal_.add("resource-release " + name_); }
  void cleanup() override { journal_.add("resource-cleanup " + name_); }

 private:
  Journal& journal_;
  std::string name_;
  bool fail_create_;
  bool oom_;
  bool fail_recover_;
};

class RecordingFactory : public TaskResourceFactory {
 public:
  RecordingFactory(Journal& journal, std::string name)
      : journal_(journal), name_(std::move(name)) {}
  bool fail_create = false;
  bool oom = false;
  bool fail_recover = false;
  Result<std::unique_ptr<TaskResource>> resourceFor(const TaskInfo& task) override {
    journal_.add(fmt::format("resource-for {} role={}", name_, task.role_credentials_id));
    return std::make_unique<RecordingResource>(journal_, name_, fail_create, oom, fail_recover);
  }

 private:
  Journal& journal_;
  std::string name_;
};

// Records state changes as "<container or task> <STATUS>" lines, plus the changes themselves.
class RecordingOutbox : public StateChangeOutbox {
 public:
  explicit RecordingOutbox(Journal& journal) : journal_(journal) {}
  void submit(const StateChange& change) override {
    {
      std::lock_guard lock(mutex_);
      changes_.push_back(change);
    }
    std::string who = change.container_name.empty() ? "task" : change.container_name;
    std::string what = change.health ? std::string(toString(*change.health))
                                     : std::string(toString(change.status));
    journal_.add(fmt::format("state {} {}", who, what));
  }
  void taskRemoved(const std::string& arn) override { journal_.add("removed " + arn); }

  std::optional<StateChange> last(const std::string& container, ContainerStatus status) {
    std::lock_guard lock(mutex_);
    for (auto it = changes_.rbegin(); it != changes_.rend(); ++it) {
      if (it->container_name == container && it->status == status && !it->health) return *it;
    }
    return std::nullopt;
  }

 private:
  Journal& journal_;
  std::mutex mutex_;
  std::vector<StateChange> changes_;
};

// --- fixture -----------------------------------------------------------------------------------

ContainerDefinition container(std::string name, bool essential = true) {
  ContainerDefinition c;
  c.name = std::move(name);
  c.image = "registry.example/" + c.name + ":1";
  c.essential = essential;
  c.memory_mib = 64;
  return c;
}

class TaskEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Timers wait in short slices from the start, so advance() is noticed at once.
    EngineClock::advance(0s);
    data_dir_ = std::filesystem::temp_directory_path() /
                fmt::format("engine-test-{}-{}", ::getpid(), counter_++);
  }

  void start(EngineOptions options = {}) {
    options.data_dir = data_dir_.string();
    options.workers = 2;
    options.pull_workers = 2;
    EngineDependencies deps;
    deps.runtime = &runtime_;
    deps.images = &images_;
    deps.outbox = &outbox_;
    deps.resources = {&directories_, &first_, &second_};
    engine_ = std::make_unique<TaskEngine>(io_, deps, options);
    engine_->addSnapshotListener([this](const TaskSnapshotPtr& snapshot) {
      std::lock_guard lock(snapshot_mutex_);
      last_snapshot_ = snapshot;
      snapshot_changed_.notify_all();
    });
    loop_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    work_.reset();
    if (loop_.joinable()) {
      io_.stop();
      loop_.join();
    }
    engine_.reset();
    std::filesystem::remove_all(data_dir_);
  }

  TaskSpec spec(std::vector<ContainerDefinition> containers, std::string arn = kArn) {
    TaskSpec s;
    s.arn = std::move(arn);
    s.definition.family = "fam";
    s.definition.container_definitions = std::move(containers);
    return s;
  }

  // Waits until the last published snapshot satisfies `predicate` (listeners run off the loop).
  bool waitSnapshot(const std::function<bool(const TaskSnapshot&)>& predicate) {
    std::unique_lock lock(snapshot_mutex_);
    return snapshot_changed_.wait_for(lock, kWait,
                                      [&] { return last_snapshot_ && predicate(*last_snapshot_); });
  }

  // Moves the engine clock forward in `step`s until `entry` is recorded; returns how far it
  // moved (more than `max` when it never was). Stepping, rather than one jump, does not depend
  // on the engine having armed its timer before the test moves the clock.
  EngineClock::duration advanceUntil(const std::string& entry, EngineClock::duration max,
                                     EngineClock::duration step = 1s) {
    EngineClock::duration moved{0};
    while (moved <= max) {
      if (journal_.waitForBriefly(entry, 10ms)) return moved;
      EngineClock::advance(step);
      moved += step;
    }
    return moved;
  }

  static constexpr const char* kArn = "arn:aws:ecs:us-east-1:123456789012:task/default/abc123";

  Journal journal_;
  FakeRuntime runtime_{journal_};
  FakeImages images_{journal_};
  TaskDirectoryFactory directories_;  // the container spec writes hosts files there
  RecordingFactory first_{journal_, "first"};
  RecordingFactory second_{journal_, "second"};
  RecordingOutbox outbox_{journal_};
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  std::unique_ptr<TaskEngine> engine_;
  std::thread loop_;
  std::filesystem::path data_dir_;
  std::mutex snapshot_mutex_;
  std::condition_variable snapshot_changed_;
  TaskSnapshotPtr last_snapshot_;
  static inline int counter_ = 0;
};

// --- tests -------------------------------------------------------------------------------------

TEST_F(TaskEngineTest, RunsATaskThroughItsResourcesAndCleansUpInReverse) {
  start();
  auto s = spec({container("web")});
  s.role_credentials_id = "creds-1";
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EXPECT_TRUE(journal_.contains("resource-for first role=creds-1"));
  EXPECT_THAT(journal_.matching("state web"),
              ElementsAre("state web PULLED", "state web CREATED", "state web RUNNING"));
  EXPECT_THAT(runtime_.spec("web").oci_spec_json, HasSubstr("FROM_second=1"));
  auto running = outbox_.last("web", ContainerStatus::kRunning);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->image_digest, "sha256:manifest");

  engine_->stopTask(kArn, "told to");
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_THAT(journal_.matching("resource-create"),
              ElementsAre("resource-create first", "resource-create second"));
  EXPECT_THAT(journal_.matching("resource-cleanup"),
              ElementsAre("resource-cleanup second", "resource-cleanup first"));
  EXPECT_TRUE(journal_.contains("delete web"));
  EXPECT_TRUE(journal_.matching("resource-release").empty());  // no wait: cleanup() does it all
  auto stopped = outbox_.last("", ContainerStatus::kStopped);
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->reason, "told to");
  EXPECT_TRUE(waitSnapshot([](const TaskSnapshot& t) { return t.removed; }));
}

TEST_F(TaskEngineTest, HandsTheRuntimeOnlyJsonFileLogOptions) {
  start();
  auto capped = container("capped");
  capped.log_configuration = LogConfiguration{"json-file", {{"max-size", "1m"}, {"max-file", "2"}}};
  auto remote = container("remote");
  remote.log_configuration = LogConfiguration{"awslogs", {{"max-size", "1m"}}};
  engine_->upsert(spec({capped, remote, container("plain")}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EXPECT_EQ(runtime_.logOptions("capped"),
            (std::map<std::string, std::string>{{"max-size", "1m"}, {"max-file", "2"}}));
  EXPECT_TRUE(runtime_.logOptions("remote").empty());
  EXPECT_TRUE(runtime_.logOptions("plain").empty());
}

TEST_F(TaskEngineTest, StopsDependentsFirst) {
  start();
  auto app = container("app");
  app.depends_on = {{"db", ContainerDependency::Condition::kStart}};
  engine_->upsert(spec({container("db"), app}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  auto starts = journal_.matching("start ");
  EXPECT_THAT(starts, ElementsAre("start db", "start app"));

  engine_->stopTask(kArn, "bye");
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_THAT(journal_.matching("kill "), ElementsAre("kill app TERM", "kill db TERM"));
}

TEST_F(TaskEngineTest, SuccessDependencyGatesStartAndFailsTheTaskOnNonZeroExit) {
  start();
  auto init = container("init", /*essential=*/false);
  auto app = container("app");
  app.depends_on = {{"init", ContainerDependency::Condition::kSuccess}};
  runtime_.exit_on_start["init"] = 3;
  engine_->upsert(spec({init, app}));
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_FALSE(journal_.contains("start app"));
  auto stopped = outbox_.last("app", ContainerStatus::kStopped);
  ASSERT_TRUE(stopped);
  EXPECT_THAT(stopped->reason, HasSubstr("DependencyError"));
  EXPECT_THAT(stopped->reason, HasSubstr("exited with code 3"));
  EXPECT_EQ(outbox_.last("init", ContainerStatus::kStopped)->exit_code, 3);
}

TEST_F(TaskEngineTest, AContainerThatExitsAsItStartsStillReportsTheTaskRunningFirst) {
  start();
  runtime_.exit_on_start["app"] = 0;
  engine_->upsert(spec({container("app")}));
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  // The cluster hears RUNNING, then STOPPED, as it would from the real agent: the container did
  // start, however briefly.
  auto states = journal_.matching("state task ");
  EXPECT_THAT(states,
              ElementsAre("state task CREATED", "state task RUNNING", "state task STOPPED"));
}

TEST_F(TaskEngineTest, CompleteDependencyStartsAfterAnyExit) {
  start();
  auto init = container("init", /*essential=*/false);
  auto app = container("app");
  app.depends_on = {{"init", ContainerDependency::Condition::kComplete}};
  runtime_.exit_on_start["init"] = 1;
  engine_->upsert(spec({init, app}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EXPECT_THAT(journal_.matching("start "), ElementsAre("start init", "start app"));
}

TEST_F(TaskEngineTest, HealthyDependencyWaitsForAPassingCheck) {
  start();
  auto db = container("db");
  db.health_check = HealthCheck{{"CMD-SHELL", "true"}, 5, 2, 1, 0};
  auto app = container("app");
  app.depends_on = {{"db", ContainerDependency::Condition::kHealthy}};
  runtime_.setHealth("db", 1);
  engine_->upsert(spec({db, app}));
  ASSERT_TRUE(journal_.waitFor("state db RUNNING"));
  ASSERT_LE(advanceUntil("state db UNHEALTHY", 30s), 30s);
  EXPECT_FALSE(journal_.contains("start app"));

  runtime_.setHealth("db", 0);
  ASSERT_LE(advanceUntil("state db HEALTHY", 30s), 30s);
  ASSERT_TRUE(journal_.waitFor("state app RUNNING"));
  EXPECT_TRUE(waitSnapshot(
      [](const TaskSnapshot& t) { return t.container("db")->health == HealthStatus::kHealthy; }));
}

TEST_F(TaskEngineTest, HealthFailuresInsideTheStartPeriodDoNotCount) {
  start();
  auto db = container("db");
  db.health_check = HealthCheck{{"CMD", "check"}, 5, 2, 1, 60};
  runtime_.setHealth("db", 1);
  engine_->upsert(spec({db}));
  ASSERT_TRUE(journal_.waitFor("state db RUNNING"));
  // Checks every 5 s fail from the first, but only count once the 60 s start period is over.
  const auto moved = advanceUntil("state db UNHEALTHY", 120s, 5s);
  EXPECT_GE(moved, 60s);
  EXPECT_LE(moved, 70s);
  EXPECT_GE(journal_.count("health db"), 10u);
}

TEST_F(TaskEngineTest, AnEssentialExitStopsTheTaskAndANonEssentialOneDoesNot) {
  start();
  engine_->upsert(spec({container("main"), container("side", /*essential=*/false)}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  runtime_.exitByName("side", 0);
  ASSERT_TRUE(journal_.waitFor("state side STOPPED"));
  EXPECT_FALSE(journal_.contains("kill main TERM"));

  runtime_.exitByName("main", 9);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  auto task = outbox_.last("", ContainerStatus::kStopped);
  EXPECT_EQ(task->reason, "Essential container in task exited");
  EXPECT_EQ(outbox_.last("main", ContainerStatus::kStopped)->exit_code, 9);
}

TEST_F(TaskEngineTest, RestartsOnlyAfterRunningForTheAttemptPeriod) {
  start();
  auto worker = container("worker");
  worker.restart_policy = RestartPolicy{true, {0}, 60};
  engine_->upsert(spec({worker}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));

  EngineClock::advance(61s);
  runtime_.exitByName("worker", 1);
  ASSERT_TRUE(journal_.waitFor("state worker RUNNING", 2));  // the restart is reported
  ASSERT_TRUE(journal_.waitFor("start worker", 2));
  EXPECT_FALSE(journal_.contains("state worker STOPPED"));
  EXPECT_TRUE(waitSnapshot(
      [](const TaskSnapshot& t) { return t.container("worker")->restart_count == 1; }));

  // An ignored exit code is not restarted.
  EngineClock::advance(61s);
  runtime_.exitByName("worker", 0);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_EQ(journal_.count("start worker"), 2u);
}

TEST_F(TaskEngineTest, ARestartTooSoonStopsTheContainer) {
  start();
  auto worker = container("worker");
  worker.restart_policy = RestartPolicy{true, {}, 60};
  engine_->upsert(spec({worker}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EngineClock::advance(30s);
  runtime_.exitByName("worker", 1);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_EQ(journal_.count("start worker"), 1u);
}

TEST_F(TaskEngineTest, SigkillFollowsTheStopTimeout) {
  start();
  auto stubborn = container("stubborn");
  stubborn.stop_timeout_seconds = 30;
  runtime_.ignore_sigterm.insert("stubborn");
  engine_->upsert(spec({stubborn}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  engine_->stopTask(kArn, "stop");
  ASSERT_TRUE(journal_.waitFor("kill stubborn TERM"));
  const auto moved = advanceUntil("kill stubborn KILL", 60s);
  EXPECT_GE(moved, 29s);  // the engine clock also moves with real time
  EXPECT_LE(moved, 32s);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_EQ(outbox_.last("stubborn", ContainerStatus::kStopped)->exit_code, 128 + SIGKILL);
}

TEST_F(TaskEngineTest, AResourceFailingHalfWayStopsTheTaskAndCleansUpWhatWasMade) {
  second_.fail_create = true;
  start();
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_THAT(journal_.matching("resource-create"),
              ElementsAre("resource-create first", "resource-create second"));
  EXPECT_THAT(journal_.matching("resource-cleanup"),
              ElementsAre("resource-cleanup second", "resource-cleanup first"));
  EXPECT_FALSE(journal_.contains("pull registry.example/web:1"));
  auto task = outbox_.last("", ContainerStatus::kStopped);
  ASSERT_TRUE(task);
  EXPECT_THAT(task->reason, HasSubstr("ResourceInitializationError: second: host port 8080"));
}

TEST_F(TaskEngineTest, UpsertOnlyRaisesDesiredStatus) {
  start();
  auto s = spec({container("web")});
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  engine_->upsert(s);  // the same RUNNING again: nothing new
  s.desired = ContainerStatus::kStopped;
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_EQ(journal_.count("create web"), 1u);
  EXPECT_EQ(journal_.count("state task RUNNING"), 1u);
}

TEST_F(TaskEngineTest, ARedeliveredTaskAfterItStoppedRunsNothing) {
  start();
  auto s = spec({container("web")});
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  engine_->stopTask(kArn, "done");
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  const auto before = journal_.entries().size();
  engine_->upsert(s);
  // A marker task proves the redelivery was processed (the loop is in order).
  engine_->upsert(spec({container("marker")}, "arn:aws:ecs:us-east-1:1:task/default/marker"));
  ASSERT_TRUE(journal_.waitFor("state marker RUNNING"));
  const auto entries = journal_.entries();
  for (size_t i = before; i < entries.size(); ++i) {
    EXPECT_THAT(entries[i], ::testing::Not(HasSubstr("web"))) << entries[i];
  }
}

TEST_F(TaskEngineTest, AStoppedTaskStaysUntilTheCleanupWaitEnds) {
  EngineOptions options;
  options.task_cleanup_wait = 3h;
  start(options);
  auto s = spec({container("web")});
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  engine_->stopTask(kArn, "done");
  ASSERT_TRUE(journal_.waitFor("resource-release first"));
  // Ports and network go at once, in reverse; the containers and the rest stay.
  EXPECT_THAT(journal_.matching("resource-release"),
              ElementsAre("resource-release second", "resource-release first"));
  ASSERT_TRUE(waitSnapshot([](const TaskSnapshot& t) {
    return t.known == ContainerStatus::kStopped && !t.removed &&
           t.container("web")->known == ContainerStatus::kStopped;
  }));

  // A redelivered RUNNING payload meanwhile changes nothing; a marker task proves it was seen.
  engine_->upsert(s);
  engine_->upsert(spec({container("marker")}, "arn:aws:ecs:us-east-1:1:task/default/marker"));
  ASSERT_TRUE(journal_.waitFor("state marker RUNNING"));
  EXPECT_EQ(journal_.count("create web"), 1u);
  EXPECT_EQ(journal_.count("start web"), 1u);

  EngineClock::advance(3h - 1min);
  EXPECT_FALSE(journal_.waitForBriefly("delete web", 200ms));
  EXPECT_FALSE(journal_.contains(std::string("removed ") + kArn));
  EXPECT_TRUE(journal_.matching("resource-cleanup").empty());
  {
    std::lock_guard lock(snapshot_mutex_);
    EXPECT_EQ(last_snapshot_->arn, "arn:aws:ecs:us-east-1:1:task/default/marker");
  }

  const auto moved = advanceUntil(std::string("removed ") + kArn, 5min, 10s);
  EXPECT_GE(moved, 1min);
  EXPECT_LE(moved, 1min + 20s);
  EXPECT_TRUE(journal_.contains("delete web"));
  EXPECT_THAT(journal_.matching("resource-cleanup"),
              ElementsAre("resource-cleanup second", "resource-cleanup first"));
  EXPECT_TRUE(waitSnapshot([](const TaskSnapshot& t) { return t.arn == kArn && t.removed; }));
  // Forgotten, but still finished: a later redelivery runs nothing either.
  engine_->upsert(s);
  engine_->stopTask("arn:aws:ecs:us-east-1:1:task/default/marker", "end");
  ASSERT_TRUE(journal_.waitFor("state marker STOPPED"));
  EXPECT_EQ(journal_.count("start web"), 1u);
}

TEST_F(TaskEngineTest, StopAndRemoveSkipsTheCleanupWait) {
  EngineOptions options;
  options.task_cleanup_wait = 3h;
  start(options);
  const std::string waiting = "arn:aws:ecs:us-east-1:1:task/default/waiting";
  engine_->upsert(spec({container("web")}));
  engine_->upsert(spec({container("idle")}, waiting));
  ASSERT_TRUE(journal_.waitFor("state web RUNNING"));
  ASSERT_TRUE(journal_.waitFor("state idle RUNNING"));
  engine_->stopTask(waiting, "done");
  ASSERT_TRUE(journal_.waitFor("resource-release first"));
  ASSERT_TRUE(waitSnapshot([&](const TaskSnapshot& t) {
    return t.arn == waiting && t.known == ContainerStatus::kStopped;
  }));

  // A running task and one already stopped and waiting: both go without the clock moving.
  engine_->stopAndRemoveAll("agent shutting down");
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  ASSERT_TRUE(journal_.waitFor("removed " + waiting));
  EXPECT_TRUE(journal_.contains("delete web"));
  EXPECT_TRUE(journal_.contains("delete idle"));
  EXPECT_EQ(outbox_.last("", ContainerStatus::kStopped)->reason, "agent shutting down");
  // The task removed without waiting was never asked to release separately.
  EXPECT_EQ(journal_.count("resource-release first"), 1u);
}

TEST_F(TaskEngineTest, ATaskThatArrivesStoppedIsReportedStoppedWithoutRunning) {
  start();
  auto s = spec({container("web")});
  s.desired = ContainerStatus::kStopped;
  engine_->upsert(s);
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_TRUE(journal_.contains("state task STOPPED"));
  EXPECT_FALSE(journal_.contains("pull registry.example/web:1"));
  EXPECT_FALSE(journal_.contains("resource-create first"));
}

TEST_F(TaskEngineTest, AStopDoesNotWaitForAPullAndCancelsIt) {
  images_.hold = true;
  start();
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor("pull registry.example/web:1"));
  engine_->stopTask(kArn, "SIGTERM");
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  ASSERT_TRUE(journal_.waitFor("pull cancelled"));
  EXPECT_FALSE(journal_.contains("create web"));
}

TEST_F(TaskEngineTest, APullPastItsTimeoutFailsTheContainer) {
  images_.hold = true;
  EngineOptions options;
  options.pull_timeout = 10min;
  start(options);
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor("pull registry.example/web:1"));
  EngineClock::advance(11min);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  auto web = outbox_.last("web", ContainerStatus::kStopped);
  ASSERT_TRUE(web);
  EXPECT_THAT(web->reason, HasSubstr("CannotPullContainerError"));
  EXPECT_THAT(web->reason, HasSubstr("10m (ECS_IMAGE_PULL_TIMEOUT)"));
  ASSERT_TRUE(journal_.waitFor("pull cancelled"));
}

TEST_F(TaskEngineTest, APullFailureNamesTheImage) {
  images_.missing.insert("web");
  start();
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_THAT(outbox_.last("web", ContainerStatus::kStopped)->reason,
              HasSubstr("CannotPullContainerError: manifest unknown"));
}

TEST_F(TaskEngineTest, AStartFailureStopsTheTask) {
  runtime_.fail_start.insert("web");
  start();
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_THAT(outbox_.last("web", ContainerStatus::kStopped)->reason,
              HasSubstr("CannotStartContainerError: runc says no"));
  EXPECT_TRUE(journal_.contains("delete web"));
}

TEST_F(TaskEngineTest, AResourceSeeingAnOomKillNamesItInTheReason) {
  second_.oom = true;
  start();
  engine_->upsert(spec({container("hog")}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  runtime_.exitByName("hog", 137);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_THAT(outbox_.last("hog", ContainerStatus::kStopped)->reason,
              HasSubstr("OutOfMemoryError"));
}

TEST_F(TaskEngineTest, StartTimeoutOfADependencyEndsTheWait) {
  start();
  auto slow = container("slow", /*essential=*/false);
  slow.start_timeout_seconds = 10;
  auto app = container("app");
  app.depends_on = {{"slow", ContainerDependency::Condition::kSuccess}};
  engine_->upsert(spec({slow, app}));
  ASSERT_TRUE(journal_.waitFor("state slow RUNNING"));
  EngineClock::advance(11s);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_THAT(outbox_.last("app", ContainerStatus::kStopped)->reason,
              HasSubstr("did not exit within its startTimeout of 10s"));
}

// --- adoption after an agent restart -------------------------------------------------------------

namespace adoption {

std::string idOf(const std::string& name, int index = 0) {
  return fmt::format("abc123-{}-{}", index, name);
}

}  // namespace adoption

class TaskEngineAdoptionTest : public TaskEngineTest {
 protected:
  // What the earlier process's task directory resource made.
  void leaveTaskDirectory() { std::filesystem::create_directories(data_dir_ / "tasks" / "abc123"); }

  Result<Adoption> outcome_ = fail(ErrorCode::kInternal, "not adopted");

  // Adopts and waits until the engine has taken the task over.
  void adopt(TaskSpec s, ContainerStatus known, std::string stop_reason = "") {
    leaveTaskDirectory();
    std::promise<Result<Adoption>> adopted;
    AdoptedTask task{std::move(s), known, std::move(stop_reason)};
    engine_->adopt(std::move(task), [&](Result<Adoption> result) { adopted.set_value(result); });
    auto future = adopted.get_future();
    ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
    outcome_ = future.get();
    ASSERT_TRUE(outcome_) << outcome_.error().message;
  }
};

TEST_F(TaskEngineAdoptionTest, TakesOverARunningTaskWithoutMakingAnythingAgain) {
  start();
  runtime_.leaveRunning(adoption::idOf("web"));
  adopt(spec({container("web")}), ContainerStatus::kRunning);
  EXPECT_TRUE(waitSnapshot([](const TaskSnapshot& t) {
    return t.known == ContainerStatus::kRunning && t.containers.size() == 1 &&
           t.containers[0].known == ContainerStatus::kRunning;
  }));
  EXPECT_THAT(journal_.matching("resource-recover"),
              ElementsAre("resource-recover first", "resource-recover second"));
  EXPECT_TRUE(journal_.matching("resource-create").empty());
  EXPECT_TRUE(journal_.matching("pull").empty());
  EXPECT_TRUE(journal_.matching("create").empty());
  EXPECT_TRUE(journal_.matching("start").empty());
  EXPECT_EQ(journal_.count("state task RUNNING"), 0u);  // the earlier process reported it

  // Its exit is still seen, with its code, and the task stops and is cleaned up as usual.
  runtime_.exitByName("web", 3);
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  auto stopped = outbox_.last("web", ContainerStatus::kStopped);
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->exit_code, 3);
  EXPECT_THAT(journal_.matching("resource-cleanup"),
              ElementsAre("resource-cleanup second", "resource-cleanup first"));
  EXPECT_TRUE(journal_.contains("delete web"));
}

TEST_F(TaskEngineAdoptionTest, AnAdoptedContainerKeepsItsRealStartTime) {
  start();
  const auto started = std::chrono::system_clock::now() - std::chrono::hours(2);
  runtime_.adoptable["web"] = {true, runtime::TaskStatus::kRunning, 0, started};
  runtime_.leaveRunning(adoption::idOf("web"));
  adopt(spec({container("web")}), ContainerStatus::kRunning);
  EXPECT_TRUE(waitSnapshot([&](const TaskSnapshot& t) {
    return t.containers.size() == 1 && t.containers[0].known == ContainerStatus::kRunning &&
           t.containers[0].started_at == started;
  }));
}

TEST_F(TaskEngineAdoptionTest, ReportsAnExitThatHappenedWhileNoAgentWatched) {
  start();
  runtime_.adoptable["web"] = {true, runtime::TaskStatus::kStopped, 137};
  adopt(spec({container("web")}), ContainerStatus::kRunning);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  auto stopped = outbox_.last("web", ContainerStatus::kStopped);
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->exit_code, 137);
  EXPECT_TRUE(journal_.contains("delete-task web"));
  auto task = outbox_.last("", ContainerStatus::kStopped);
  ASSERT_TRUE(task);
  EXPECT_EQ(task->reason, "Essential container in task exited");
  EXPECT_TRUE(journal_.matching("start").empty());
}

TEST_F(TaskEngineAdoptionTest, StartsACreatedContainerAndMakesAMissingOne) {
  start();
  // Killed half way: db was created (its process never started), app not even that.
  runtime_.adoptable["db"] = {true, runtime::TaskStatus::kCreated, 0};
  auto app = container("app");
  app.depends_on = {{"db", ContainerDependency::Condition::kStart}};
  adopt(spec({container("db"), app}), ContainerStatus::kNone);
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EXPECT_TRUE(journal_.contains("delete-task db"));  // the never-started process
  EXPECT_FALSE(journal_.contains("create db"));
  EXPECT_THAT(journal_.matching("start "), ElementsAre("start db", "start app"));
  EXPECT_TRUE(journal_.contains("create app"));
  EXPECT_EQ(journal_.count("state task RUNNING"), 1u);
}

TEST_F(TaskEngineAdoptionTest, ATaskNothingOfWhichRunsIsHandedBackToStartAfresh) {
  start();
  // Killed after the task was stored, before any container was created.
  adopt(spec({container("web")}), ContainerStatus::kNone);
  EXPECT_EQ(*outcome_, Adoption::kStartAfresh);
  EXPECT_TRUE(journal_.matching("resource-recover").empty());
  EXPECT_TRUE(journal_.matching("state").empty());
  // The engine does not hold it: an upsert starts it from the beginning.
  engine_->upsert(spec({container("web")}));
  ASSERT_TRUE(journal_.waitFor("state task RUNNING"));
  EXPECT_THAT(journal_.matching("resource-create"),
              ElementsAre("resource-create first", "resource-create second"));
}

TEST_F(TaskEngineAdoptionTest, StopsATaskWhoseResourcesCannotBeRecovered) {
  start();
  first_.fail_recover = true;
  runtime_.leaveRunning(adoption::idOf("web"));
  adopt(spec({container("web")}), ContainerStatus::kRunning);
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_TRUE(journal_.contains("kill web TERM"));
  EXPECT_FALSE(journal_.contains("resource-recover second"));  // not after the first failed
  auto task = outbox_.last("", ContainerStatus::kStopped);
  ASSERT_TRUE(task);
  EXPECT_THAT(task->reason, HasSubstr("ResourceInitializationError"));
  EXPECT_THAT(task->reason, HasSubstr("network namespace ecs-x is gone"));
  // Both resources are still cleaned up.
  EXPECT_THAT(journal_.matching("resource-cleanup"),
              ElementsAre("resource-cleanup second", "resource-cleanup first"));
}

TEST_F(TaskEngineAdoptionTest, FinishesAStopThatWasUnderway) {
  start();
  runtime_.leaveRunning(adoption::idOf("web"));
  auto s = spec({container("web")});
  s.desired = ContainerStatus::kStopped;
  adopt(s, ContainerStatus::kRunning, "Scaled down");
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  EXPECT_TRUE(journal_.contains("kill web TERM"));
  auto task = outbox_.last("", ContainerStatus::kStopped);
  ASSERT_TRUE(task);
  EXPECT_EQ(task->reason, "Scaled down");
}

TEST_F(TaskEngineAdoptionTest, RemovesAStoppedTaskAtOnce) {
  start(EngineOptions{.task_cleanup_wait = std::chrono::hours(3)});
  runtime_.adoptable["web"] = {true, runtime::TaskStatus::kUnknown, 0};
  adopt(spec({container("web")}), ContainerStatus::kStopped, "done");
  ASSERT_TRUE(journal_.waitFor(std::string("removed ") + kArn));
  EXPECT_TRUE(journal_.contains("delete web"));
  EXPECT_FALSE(journal_.contains("kill web TERM"));
  EXPECT_TRUE(journal_.matching("state").empty());  // everything was reported before
}

TEST_F(TaskEngineAdoptionTest, AContainerRemovedMeanwhileStopsItsTask) {
  start();
  runtime_.leaveRunning(adoption::idOf("sidecar", 1));
  adopt(spec({container("web"), container("sidecar")}), ContainerStatus::kRunning);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  auto web = outbox_.last("web", ContainerStatus::kStopped);
  ASSERT_TRUE(web);
  EXPECT_THAT(web->reason, HasSubstr("removed while the agent was not running"));
  EXPECT_TRUE(journal_.contains("kill sidecar TERM"));
  EXPECT_FALSE(journal_.contains("create web"));
}

TEST_F(TaskEngineAdoptionTest, AnExitWhileAdoptingIsNotLost) {
  start();
  runtime_.leaveRunning(adoption::idOf("web"));
  images_.hold = false;
  // The exit arrives between the engine registering the task and the worker's look.
  leaveTaskDirectory();
  engine_->adopt(AdoptedTask{spec({container("web")}), ContainerStatus::kRunning, ""});
  runtime_.exitByName("web", 9);
  ASSERT_TRUE(journal_.waitFor("state task STOPPED"));
  auto web = outbox_.last("web", ContainerStatus::kStopped);
  ASSERT_TRUE(web);
  EXPECT_EQ(web->exit_code, 9);
}

}  // namespace
}  // namespace ecs::engine
