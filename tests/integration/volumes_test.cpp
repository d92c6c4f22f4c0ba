// The volume layer end to end: a real engine::TaskEngine on the harness containerd with
// TaskVolumesFactory as its volume resource, real mounts as root, busybox containers. Host binds
// (rw and ro), a sidecar through a task-scoped volume, a shared named volume across two tasks,
// volumesFrom, tmpfs, EFS through a substitute mount helper (exact argv on the efs-utils and NFS
// paths, two tasks sharing files), a failing mount, and the host mount table unchanged after 30
// tasks with volumes. Each test leaves nothing in containerd, the mount table or the data dir.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "agent/engine/task_directory.h"
#include "agent/engine/task_engine.h"
#include "agent/images/image_puller.h"
#include "agent/images/registry_client.h"
#include "agent/node/containerd_runtime.h"
#include "agent/runtime/containerd_client.h"
#include "tests/support/harness_env.h"
#include "volumes/mounter.h"
#include "volumes/task_volumes.h"

namespace ecs::volumes {
namespace {

namespace fs = std::filesystem;
using ecs::testing::harnessEnv;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> readLines(const fs::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// True if `point` lies in the workdir of a harness other than `ours` (a directory holding the
// marker file `harness.sh up` writes first and `down` removes last).
bool inAnotherHarness(const std::string& point, const std::string& ours) {
  if (point.starts_with(ours)) return false;
  std::error_code ec;
  for (fs::path dir(point); dir.has_relative_path(); dir = dir.parent_path()) {
    if (fs::exists(dir / ".ecs-test-harness", ec)) return true;
  }
  return false;
}

// The host's mount table, less what other work on this machine mounts meanwhile (other
// harnesses' containers, network namespaces): those come and go without us.
std::vector<std::string> hostMountTable(const std::string& ours) {
  std::vector<std::string> out;
  for (const auto& line : readLines("/proc/self/mountinfo")) {
    auto points = parseMountInfo(line);
    if (points.empty()) continue;
    const auto& point = points[0];
    if (inAnotherHarness(point, ours) || point.starts_with("/run/netns") ||
        point.starts_with("/var/run/netns")) {
      continue;
    }
    out.push_back(line);
  }
  return out;
}

struct TaskOutcome {
  std::vector<engine::StateChange> changes;
  std::map<std::string, std::string> stdout_of;  // container -> its stdout
  std::map<std::string, std::optional<int>> exit_code;
  bool cleaned_up = false;

  std::string reasons() const {
    std::string out;
    for (const auto& c : changes) {
      if (!c.reason.empty()) out += fmt::format("[{}] {}\n", c.container_name, c.reason);
    }
    return out;
  }
  std::string describe() const {
    std::string out = reasons();
    for (const auto& [name, text] : stdout_of) out += fmt::format("{} stdout: {}\n", name, text);
    return out;
  }
};

class VolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
    mounts_before_ = hostMountTable(harnessEnv().workdir());

    runtime::ContainerdOptions options;
    options.address = harnessEnv().containerdAddress();
    options.ns = ns_;
    auto client = runtime::ContainerdClient::connect(options);
    ASSERT_TRUE(client) << client.error().message;
    containerd_ = std::move(*client);
    registry_ = std::make_unique<images::RegistryClient>(images::RegistryOptions{});
    puller_ = std::make_unique<images::ImagePuller>(*containerd_, *registry_);

    // The substitute for mount / mount.efs: records its argv (one argument a line, then "--")
    // and bind-mounts <efs>/<file system id> onto the target, so that tasks mounting the same
    // file system share files. "fs-bad" fails as a refusing server would.
    efs_dir_ = data_dir_ / "efs-servers";
    fs::create_directories(efs_dir_);
    helper_ = data_dir_ / "mount-helper.sh";
    std::ofstream(helper_) << fmt::format(R"(#!/bin/sh
printf '%s\n' "$@" -- >> {0}/argv
for a in "$@"; do device="$target"; target="$a"; done
fsid="${{device%%[.:]*}}"
if [ "$fsid" = fs-bad ]; then
  echo "mount.nfs4: access denied by server while mounting $device" >&2
  exit 32
fi
mkdir -p {0}/$fsid
exec mount --bind {0}/$fsid "$target"
)",
                                          efs_dir_.string());
    ::chmod(helper_.c_str(), 0755);
  }

  void TearDown() override {
    factory_.reset();
    if (containerd_) {
      if (auto images = containerd_->listImages()) {
        for (const auto& image : *images) {
          EXPECT_TRUE(containerd_->deleteImage(image.name, true)) << image.name;
        }
      }
      ecs::testing::expectNoLeaks(ns_);
    }
    // Nothing this test mounted is left, and no task left anything under the volumes root.
    EXPECT_EQ(hostMountTable(harnessEnv().workdir()), mounts_before_);
    for (const char* kind : {"task", "efs"}) {
      auto dir = data_dir_ / "volumes" / kind;
      if (fs::exists(dir)) {
        EXPECT_TRUE(fs::is_empty(dir)) << dir << " is not empty";
      }
    }
    if (fs::exists(data_dir_ / "tasks")) {
      EXPECT_TRUE(fs::is_empty(data_dir_ / "tasks"));
    }
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  void makeFactory(bool efs_utils) {
    VolumesOptions options;
    options.root = (data_dir_ / "volumes").string();
    options.efs_mount_command = {helper_.string()};
    options.efs_utils_installed = [efs_utils] { return efs_utils; };
    options.region = "us-west-2";
    options.credentials_relative_uri = [](const engine::TaskInfo& task) {
      return "/v2/credentials/" + task.id;
    };
    auto factory = TaskVolumesFactory::create(std::move(options));
    ASSERT_TRUE(factory) << factory.error().message;
    factory_ = std::move(*factory);
  }

  std::string image() const { return harnessEnv().registry() + "/test/busybox:oci"; }

  // Runs the task definitions (JSON with ${IMAGE}) at once on one engine until every one is
  // cleaned up; the outcomes are in the same order.
  std::vector<TaskOutcome> runTasks(const std::vector<std::string>& definitions) {
    if (!factory_) makeFactory(true);
    boost::asio::io_context io;
    engine::EngineOptions options;
    options.data_dir = data_dir_.string();
    options.default_stop_timeout = std::chrono::seconds(2);

    std::vector<TaskOutcome> outcomes(definitions.size());
    std::map<std::string, size_t> index;
    size_t cleaned = 0;
    engine::TaskEngine* engine_ptr = nullptr;
    // Records every task's changes and output; stops the loop once all are cleaned up.
    class Outbox : public engine::StateChangeOutbox {
     public:
      std::function<void(const engine::StateChange&)> on_change;
      std::function<void(const std::string&)> on_removed;
      void submit(const engine::StateChange& change) override { on_change(change); }
      void taskRemoved(const std::string& arn) override { on_removed(arn); }
    } outbox;
    outbox.on_change = [&](const engine::StateChange& change) {
      auto& outcome = outcomes[index.at(change.task_arn)];
      outcome.changes.push_back(change);
      if (!change.container_name.empty() && change.status == engine::ContainerStatus::kStopped) {
        outcome.stdout_of[change.container_name] =
            readFile(engine_ptr->logPath(change.task_arn, change.container_name, false));
        outcome.exit_code[change.container_name] = change.exit_code;
      }
    };
    outbox.on_removed = [&](const std::string& arn) {
      outcomes[index.at(arn)].cleaned_up = true;
      if (++cleaned == definitions.size()) io.stop();
    };
    node::ContainerdRuntime runtime(*containerd_);
    node::PullerImageSource images(*puller_);
    engine::TaskDirectoryFactory directories;
    engine::EngineDependencies deps;
    deps.runtime = &runtime;
    deps.images = &images;
    deps.outbox = &outbox;
    deps.resources = {&directories, factory_.get()};
    engine::TaskEngine engine(io, deps, options);
    engine_ptr = &engine;

    for (size_t i = 0; i < definitions.size(); ++i) {
      auto text = std::regex_replace(definitions[i], std::regex(R"(\$\{IMAGE\})"), image());
      auto definition = engine::loadTaskDefinition(text);
      EXPECT_TRUE(definition) << definition.error().message;
      if (!definition) return outcomes;
      auto arn = fmt::format("arn:aws:ecs:us-west-2:000000000000:task/default/{}{:04}",
                             ns_.substr(ns_.size() - 8), counter_++);
      index[arn] = i;
      engine::TaskSpec spec;
      spec.arn = arn;
      spec.definition = std::move(*definition);
      engine.upsert(std::move(spec));
    }
    boost::asio::steady_timer deadline(io, std::chrono::seconds(240));
    deadline.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      ADD_FAILURE() << "tasks did not finish in time";
      io.stop();
    });
    io.run();
    engine.drain();
    return outcomes;
  }

  TaskOutcome runTask(const std::string& definition) { return runTasks({definition})[0]; }

  std::vector<std::vector<std::string>> helperCalls() {
    std::vector<std::vector<std::string>> calls(1);
    for (const auto& line : readLines(efs_dir_ / "argv")) {
      if (line == "--") {
        calls.emplace_back();
      } else {
        calls.back().push_back(line);
      }
    }
    calls.pop_back();
    return calls;
  }

  std::string ns_;
  fs::path data_dir_;
  fs::path efs_dir_;
  fs::path helper_;
  std::vector<std::string> mounts_before_;
  std::unique_ptr<runtime::ContainerdClient> containerd_;
  std::unique_ptr<images::RegistryClient> registry_;
  std::unique_ptr<images::ImagePuller> puller_;
  std::unique_ptr<TaskVolumesFactory> factory_;
  int counter_ = 0;
};

TEST_F(VolumesTest, HostBindReadWriteAndReadOnly) {
  const auto host = data_dir_ / "host" / "not-yet";  // created by the agent
  auto outcome = runTask(fmt::format(R"({{
    "family": "bind",
    "volumes": [{{"name": "h", "host": {{"sourcePath": "{}"}}}}],
    "containerDefinitions": [
      {{"name": "writer", "image": "${{IMAGE}}", "memory": 32, "essential": false,
        "mountPoints": [{{"sourceVolume": "h", "containerPath": "/rw"}}],
        "command": ["sh", "-c", "echo from-container > /rw/file && echo wrote"]}},
      {{"name": "reader", "image": "${{IMAGE}}", "memory": 32,
        "dependsOn": [{{"containerName": "writer", "condition": "COMPLETE"}}],
        "mountPoints": [{{"sourceVolume": "h", "containerPath": "/ro", "readOnly": true}}],
        "command": ["sh", "-c", "cat /ro/file; if echo x > /ro/other; then echo WRITABLE; else echo denied; fi"]}}
    ]}})",
                                     host.string()));
  ASSERT_TRUE(outcome.cleaned_up);
  EXPECT_EQ(outcome.stdout_of["writer"], "wrote\n") << outcome.describe();
  EXPECT_EQ(outcome.stdout_of["reader"], "from-container\ndenied\n") << outcome.describe();
  EXPECT_EQ(readFile(host / "file"), "from-container\n");
  EXPECT_FALSE(fs::exists(host / "other"));
  struct stat st {};
  ASSERT_EQ(::stat(host.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(VolumesTest, SidecarReadsWhatTheAppWritesThroughATaskScopedVolume) {
  auto outcome = runTask(R"({
    "family": "sidecar",
    "volumes": [{"name": "logs"}],
    "containerDefinitions": [
      {"name": "app", "image": "${IMAGE}", "memory": 32, "essential": false,
       "mountPoints": [{"sourceVolume": "logs", "containerPath": "/var/log/app"}],
       "command": ["sh", "-c", "for i in 1 2 3; do echo line-$i >> /var/log/app/app.log; done"]},
      {"name": "shipper", "image": "${IMAGE}", "memory": 32,
       "dependsOn": [{"containerName": "app", "condition": "SUCCESS"}],
       "mountPoints": [{"sourceVolume": "logs", "containerPath": "/logs", "readOnly": true}],
       "command": ["sh", "-c", "cat /logs/app.log"]}
    ]})");
  ASSERT_TRUE(outcome.cleaned_up);
  EXPECT_EQ(outcome.stdout_of["shipper"], "line-1\nline-2\nline-3\n") << outcome.describe();
  // TearDown checks the task's directory under volumes/task is gone.
}

TEST_F(VolumesTest, SharedNamedVolumeOutlivesTheFirstTask) {
  const std::string volume = R"("volumes": [{"name": "cache", "dockerVolumeConfiguration":
      {"scope": "shared", "autoprovision": AUTO, "driver": "local", "labels": {"app": "x"}}}],)";
  auto with = [&](const char* autoprovision, const char* command) {
    auto v = volume;
    v.replace(v.find("AUTO"), 4, autoprovision);
    return fmt::format(R"({{"family": "shared", {}
      "containerDefinitions": [{{"name": "c", "image": "${{IMAGE}}", "memory": 32,
        "mountPoints": [{{"sourceVolume": "cache", "containerPath": "/cache"}}],
        "command": ["sh", "-c", "{}"]}}]}})",
                       v, command);
  };
  auto missing = runTask(with("false", "true"));
  EXPECT_THAT(missing.reasons(), HasSubstr("shared volume 'cache' does not exist"));
  EXPECT_FALSE(missing.exit_code.contains("c") && missing.exit_code["c"].has_value());

  auto first = runTask(with("true", "echo kept > /cache/f"));
  EXPECT_EQ(first.exit_code["c"], 0) << first.describe();
  auto second = runTask(with("false", "cat /cache/f"));
  EXPECT_EQ(second.stdout_of["c"], "kept\n") << second.describe();
  EXPECT_EQ(readFile(data_dir_ / "volumes/shared/cache/data/f"), "kept\n");
  EXPECT_THAT(readFile(data_dir_ / "volumes/shared/cache/volume.json"), HasSubstr("\"app\":\"x\""));
}

TEST_F(VolumesTest, VolumesFromGivesTheSourcesMountsReadOnly) {
  auto outcome = runTask(R"({
    "family": "from",
    "volumes": [{"name": "data"}],
    "containerDefinitions": [
      {"name": "source", "image": "${IMAGE}", "memory": 32, "essential": false,
       "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
       "command": ["sh", "-c", "echo shared > /data/x"]},
      {"name": "user", "image": "${IMAGE}", "memory": 32,
       "dependsOn": [{"containerName": "source", "condition": "SUCCESS"}],
       "volumesFrom": [{"sourceContainer": "source", "readOnly": true}],
       "command": ["sh", "-c", "cat /data/x; if touch /data/y; then echo WRITABLE; else echo denied; fi"]}
    ]})");
  EXPECT_EQ(outcome.stdout_of["user"], "shared\ndenied\n") << outcome.describe();
}

TEST_F(VolumesTest, TmpfsFromLinuxParametersAndDriverOpts) {
  auto outcome = runTask(R"({
    "family": "tmpfs",
    "volumes": [{"name": "fast", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                 "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}}}],
    "containerDefinitions": [
      {"name": "c", "image": "${IMAGE}", "memory": 32,
       "linuxParameters": {"tmpfs": [{"containerPath": "/scratch", "size": 4}]},
       "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}],
       "command": ["sh", "-c", "df -k /scratch /fast | tail -n 2; grep -E ' /(scratch|fast) ' /proc/mounts | cut -d' ' -f2,3; echo ok > /fast/f && cat /fast/f"]}
    ]})");
  const auto out = outcome.stdout_of["c"];
  EXPECT_THAT(out, HasSubstr("/scratch tmpfs")) << outcome.describe();
  EXPECT_THAT(out, HasSubstr("/fast tmpfs")) << outcome.describe();
  EXPECT_THAT(out, HasSubstr(" 4096 ")) << out;  // 4 MiB
  EXPECT_THAT(out, HasSubstr(" 8192 ")) << out;  // size=8m
  EXPECT_THAT(out, HasSubstr("ok\n"));
}

constexpr const char* kEfsTask = R"({
    "family": "efs",
    "taskRoleArn": "arn:aws:iam::000000000000:role/app",
    "volumes": [{"name": "data", "efsVolumeConfiguration": EFS}],
    "containerDefinitions": [{"name": "c", "image": "${IMAGE}", "memory": 32,
      "mountPoints": [{"sourceVolume": "data", "containerPath": "/mnt/efs"}],
      "command": ["sh", "-c", "COMMAND"]}]})";

std::string efsTask(const std::string& efs, const std::string& command) {
  std::string text = kEfsTask;
  text.replace(text.find("EFS"), 3, efs);
  text.replace(text.find("COMMAND"), 7, command);
  return text;
}

std::string taskIdOf(const TaskOutcome& outcome) {
  const auto& arn = outcome.changes.at(0).task_arn;
  return arn.substr(arn.rfind('/') + 1);
}

TEST_F(VolumesTest, EfsThroughEfsUtilsSharedByTwoTasks) {
  makeFactory(true);
  const std::string efs = R"({"fileSystemId": "fs-0123", "rootDirectory": "/",
      "transitEncryption": "ENABLED", "transitEncryptionPort": 20049,
      "authorizationConfig": {"iam": "ENABLED", "accessPointId": "fsap-0abc"}})";
  auto writer = runTask(efsTask(efs, "echo hello-efs > /mnt/efs/note"));
  EXPECT_EQ(writer.exit_code["c"], 0) << writer.describe();
  auto reader = runTask(efsTask(efs, "cat /mnt/efs/note"));
  EXPECT_EQ(reader.stdout_of["c"], "hello-efs\n") << reader.describe();
  EXPECT_EQ(readFile(efs_dir_ / "fs-0123" / "note"), "hello-efs\n");

  auto calls = helperCalls();
  ASSERT_EQ(calls.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto id = taskIdOf(i == 0 ? writer : reader);
    const auto target = fs::canonical(data_dir_).string() + "/volumes/efs/" + id + "/data";
    EXPECT_EQ(calls[i],
              (std::vector<std::string>{"-t", "efs", "-o",
                                        "tls,tlsport=20049,iam,awscredsuri=/v2/credentials/" + id +
                                            ",accesspoint=fsap-0abc",
                                        "fs-0123:/", target}));
  }
}

TEST_F(VolumesTest, EfsThroughNfsWithTheAgentsOptions) {
  makeFactory(false);
  auto outcome = runTask(efsTask(R"({"fileSystemId": "fs-0456", "rootDirectory": "/exports"})",
                                 "echo nfs > /mnt/efs/n"));
  EXPECT_EQ(outcome.exit_code["c"], 0) << outcome.describe();
  EXPECT_EQ(readFile(efs_dir_ / "fs-0456" / "n"), "nfs\n");
  auto calls = helperCalls();
  ASSERT_EQ(calls.size(), 1u);
  const auto target =
      fs::canonical(data_dir_).string() + "/volumes/efs/" + taskIdOf(outcome) + "/data";
  EXPECT_EQ(calls[0], (std::vector<std::string>{
                          "-t", "nfs", "-o",
                          "addr=fs-0456.efs.us-west-2.amazonaws.com,nfsvers=4.1,rsize=1048576,"
                          "wsize=1048576,hard,timeo=600,retrans=2,noresvport",
                          "fs-0456.efs.us-west-2.amazonaws.com:/exports", target}));

  // TLS without efs-utils: the task fails before anything is mounted.
  auto tls =
      runTask(efsTask(R"({"fileSystemId": "fs-0456", "transitEncryption": "ENABLED"})", "true"));
  EXPECT_THAT(tls.reasons(), HasSubstr("volume 'data': transit encryption needs amazon-efs-utils"));
  EXPECT_EQ(helperCalls().size(), 1u);
}

TEST_F(VolumesTest, FailingMountStopsTheTaskNamingTheVolumeAndLeavesNothingMounted) {
  makeFactory(false);
  auto outcome = runTask(R"({
    "family": "bad",
    "volumes": [{"name": "fast", "dockerVolumeConfiguration": {"scope": "task",
                   "driverOpts": {"type": "tmpfs", "o": "size=1m"}}},
                {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-bad"}}],
    "containerDefinitions": [{"name": "c", "image": "${IMAGE}", "memory": 32,
      "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}],
      "command": ["true"]}]})");
  ASSERT_TRUE(outcome.cleaned_up);
  EXPECT_THAT(outcome.reasons(),
              HasSubstr("volume 'data': efs mount of fs-bad failed: exit status 32: mount.nfs4: "
                        "access denied by server"));
  EXPECT_FALSE(outcome.exit_code.contains("c") && outcome.exit_code["c"].has_value());
  EXPECT_THAT(factory_->trackedMounts(), IsEmpty());
  // TearDown: the tmpfs made before the failure is unmounted, the mount table is as before.
}

TEST_F(VolumesTest, MountTableIdenticalAfterThirtyTasksWithVolumes) {
  makeFactory(true);
  const auto host = data_dir_ / "host-logs";
  std::vector<std::string> definitions;
  for (int i = 0; i < 30; ++i) {
    definitions.push_back(fmt::format(R"({{
      "family": "many",
      "volumes": [{{"name": "scratch"}},
                  {{"name": "logs", "host": {{"sourcePath": "{0}"}}}},
                  {{"name": "fast", "dockerVolumeConfiguration": {{"scope": "task",
                     "driverOpts": {{"type": "tmpfs", "o": "size=1m"}}}}}},
                  {{"name": "efs", "efsVolumeConfiguration": {{"fileSystemId": "fs-many"}}}}],
      "containerDefinitions": [{{"name": "c", "image": "${{IMAGE}}", "memory": 32,
        "linuxParameters": {{"tmpfs": [{{"containerPath": "/t", "size": 1}}]}},
        "mountPoints": [{{"sourceVolume": "scratch", "containerPath": "/s"}},
                        {{"sourceVolume": "logs", "containerPath": "/logs"}},
                        {{"sourceVolume": "fast", "containerPath": "/fast"}},
                        {{"sourceVolume": "efs", "containerPath": "/efs"}}],
        "command": ["sh", "-c", "echo {1} > /s/x && echo {1} > /fast/x && echo {1} > /efs/{1} && echo {1} > /logs/{1} && cat /s/x /fast/x"]}}]}})",
                                      host.string(), i));
  }
  auto outcomes = runTasks(definitions);
  for (int i = 0; i < 30; ++i) {
    EXPECT_TRUE(outcomes[i].cleaned_up);
    EXPECT_EQ(outcomes[i].stdout_of["c"], fmt::format("{0}\n{0}\n", i)) << outcomes[i].describe();
    EXPECT_EQ(readFile(efs_dir_ / "fs-many" / std::to_string(i)), fmt::format("{}\n", i));
    EXPECT_EQ(readFile(host / std::to_string(i)), fmt::format("{}\n", i));
  }
  EXPECT_EQ(helperCalls().size(), 30u);
  EXPECT_THAT(factory_->trackedMounts(), IsEmpty());
  EXPECT_EQ(hostMountTable(harnessEnv().workdir()), mounts_before_);
  // The whole table, for the record: differences outside this test's paths are other work.
  auto after = readLines("/proc/self/mountinfo");
  for (const auto& line : after) {
    if (line.find(data_dir_.string()) != std::string::npos) ADD_FAILURE() << "left: " << line;
  }
}

TEST_F(VolumesTest, SweepReleasesTheMountsOfTasksThatAreGone) {
  makeFactory(true);
  // A task that "died" with the agent: its resource is created, never cleaned up.
  auto definition = engine::loadTaskDefinition(R"({"family": "crash",
    "volumes": [{"name": "fast", "dockerVolumeConfiguration": {"scope": "task",
                   "driverOpts": {"type": "tmpfs", "o": "size=1m"}}},
                {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-sweep"}}],
    "containerDefinitions": [{"name": "c", "image": "i", "memory": 32,
      "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]}]})");
  ASSERT_TRUE(definition) << definition.error().message;
  engine::TaskInfo info{"arn:aws:ecs:us-west-2:0:task/default/crashed", "crashed",
                        (data_dir_ / "tasks/crashed").string(), &*definition};
  auto resource = factory_->resourceFor(info);
  ASSERT_TRUE(resource && *resource);
  ASSERT_TRUE((*resource)->create());
  const auto root = fs::canonical(data_dir_ / "volumes").string();
  auto table = makeSystemMounter()->mountPoints();
  EXPECT_TRUE(hasMountAtOrBelow(table, root + "/efs/crashed/data"));
  EXPECT_TRUE(hasMountAtOrBelow(table, root + "/task/crashed/fast"));
  resource->reset();  // the agent is gone; its state file stays

  makeFactory(true);  // the restarted agent
  EXPECT_EQ(factory_->sweep({"some-live-task"}), 2);
  EXPECT_FALSE(hasMountAtOrBelow(makeSystemMounter()->mountPoints(), root));
  EXPECT_FALSE(fs::exists(root + "/efs/crashed"));
  EXPECT_FALSE(fs::exists(root + "/task/crashed"));
}

}  // namespace
}  // namespace ecs::volumes
