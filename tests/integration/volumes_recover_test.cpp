// Volumes after an agent is killed, on this machine's real mount table, as root, without
// containerd: a task's volumes are created by a forked child (an agent process that then dies
// without cleaning up), and a new TaskVolumesFactory on the same root recovers them — the same
// mounts for every container, nothing new mounted, the task no dead agent's any more so the
// start sweep spares it, and cleanup() releasing everything. Needs no harness peer.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "agent/node/reconciler.h"
#include "volumes/mounter.h"
#include "volumes/task_volumes.h"

namespace ecs::volumes {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string randomHex() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

// Every volume kind that leaves something on the host: a task-scoped tmpfs, a task directory,
// a host path, a shared tmpfs volume and an EFS mount; a sidecar gets them through volumesFrom.
constexpr const char* kDefinition = R"({"family": "recover",
  "volumes": [
    {"name": "scratch", "dockerVolumeConfiguration": {"scope": "task",
       "driverOpts": {"type": "tmpfs", "o": "size=1m"}}},
    {"name": "plain", "host": {}},
    {"name": "src", "host": {"sourcePath": "HOST_PATH"}},
    {"name": "SHARED", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": true,
       "driverOpts": {"type": "tmpfs", "o": "size=1m"}}},
    {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-recover"}}],
  "containerDefinitions": [
    {"name": "app", "image": "i", "memory": 32, "mountPoints": [
      {"sourceVolume": "scratch", "containerPath": "/scratch"},
      {"sourceVolume": "plain", "containerPath": "/plain"},
      {"sourceVolume": "src", "containerPath": "/src", "readOnly": true},
      {"sourceVolume": "SHARED", "containerPath": "/shared"},
      {"sourceVolume": "data", "containerPath": "/data"}]},
    {"name": "side", "image": "i", "memory": 32,
     "volumesFrom": [{"sourceContainer": "app", "readOnly": true}]}]})";

std::string describe(const std::vector<runtime::SpecMount>& mounts) {
  std::string out;
  for (const auto& m : mounts) {
    out += fmt::format("{} {} {} {}\n", m.destination, m.type, m.source, fmt::join(m.options, ","));
  }
  return out;
}

class VolumesRecoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    dir_ = fs::temp_directory_path() / ("ecs-volumes-recover-" + randomHex());
    fs::create_directories(dir_);
    dir_ = fs::canonical(dir_);
    // The EFS mount helper's stand-in: bind-mounts a directory of ours on the target (its last
    // argument), as the file system would be mounted there.
    helper_ = dir_ / "mount-efs.sh";
    std::ofstream(helper_) << fmt::format(R"(#!/bin/sh
for a in "$@"; do target="$a"; done
mkdir -p {0}/efs-server
exec mount --bind {0}/efs-server "$target"
)",
                                          dir_.string());
    ::chmod(helper_.c_str(), 0755);
    options_.root = (dir_ / "volumes").string();
    options_.efs_mount_command = {helper_.string()};
    options_.efs_utils_installed = [] { return true; };
    options_.region = "us-west-2";
    shared_ = "recover-" + randomHex();
    mounts_before_ = ourMounts();
    makeFactory();
    state_before_ = recordedState();
  }

  void TearDown() override {
    if (dir_.empty()) return;
    factory_.reset();
    EXPECT_EQ(ourMounts(), mounts_before_);
    // A test that failed half-way must not leave mounts behind.
    for (const auto& point : ourMounts()) ::umount2(point.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void makeFactory() {
    auto factory = TaskVolumesFactory::create(options_);
    ASSERT_TRUE(factory) << factory.error().message;
    factory_ = std::move(*factory);
  }

  // The mount points under this test's directory: other work on the machine mounts meanwhile.
  std::vector<std::string> ourMounts() const {
    std::vector<std::string> out;
    for (const auto& point : makeSystemMounter()->mountPoints()) {
      if (point.starts_with(dir_.string() + "/")) out.push_back(point);
    }
    return out;
  }

  // The volume state as the file holds it.
  std::string recordedState() const {
    auto state = VolumeState::load(fs::path(options_.root) / "state.json");
    return state ? state->toJson() : "error: " + state.error().message;
  }

  std::string definitionJson() const {
    std::string json = kDefinition;
    json.replace(json.find("HOST_PATH"), 9, (dir_ / "host-src").string());
    for (size_t at; (at = json.find("SHARED")) != std::string::npos;) json.replace(at, 6, shared_);
    return json;
  }

  engine::TaskInfo info(const std::string& id, const engine::TaskDefinition& definition) const {
    return {"arn:aws:ecs:us-west-2:0:task/default/" + id, id, (dir_ / "tasks" / id).string(),
            &definition};
  }

  // Every container's mounts, from `resource`.
  static std::string contributed(engine::TaskResource& resource,
                                 const engine::TaskDefinition& definition) {
    std::string out;
    for (const auto& c : definition.container_definitions) {
      engine::ContainerResources given;
      if (auto r = resource.contribute({.definition = &c}, given); !r) {
        return "error: " + r.error().message;
      }
      out += c.name + ":\n" + describe(given.mounts);
    }
    return out;
  }

  // An agent process that creates the task's volumes and is killed: a forked child with its own
  // factory on the same root. Returns every container's mounts as it gave them, or "error: ...".
  std::string createInDeadAgent(const std::string& id, const engine::TaskDefinition& definition) {
    int fds[2];
    if (::pipe(fds) != 0) return "error: pipe";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string out;
      auto factory = TaskVolumesFactory::create(options_);
      auto resource = factory
                          ? (*factory)->resourceFor(info(id, definition))
                          : Result<std::unique_ptr<engine::TaskResource>>(fail(factory.error()));
      auto created = resource ? (*resource)->create() : Result<void>(fail(resource.error()));
      out = created ? contributed(**resource, definition) : "error: " + created.error().message;
      (void)!::write(fds[1], out.data(), out.size());
      ::_exit(0);  // no cleanup, no destructors: the agent was killed
    }
    ::close(fds[1]);
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) {
      out.append(buffer, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
  }

  netns::HostNetworkOptions noNetwork() const {
    return {.bridge_name = "ecs-test-novr", .state_dir = (dir_ / "netns").string()};
  }

  fs::path dir_;
  fs::path helper_;
  std::string shared_;
  VolumesOptions options_;
  std::vector<std::string> mounts_before_;
  std::string state_before_;
  std::unique_ptr<TaskVolumesFactory> factory_;
};

TEST_F(VolumesRecoverTest, AKilledAgentsTaskIsRecoveredSparedByTheSweepAndReleasedByCleanup) {
  auto definition = engine::loadTaskDefinition(definitionJson());
  ASSERT_TRUE(definition) << definition.error().message;
  const std::string id = "vr" + randomHex();
  const std::string given = createInDeadAgent(id, *definition);
  ASSERT_THAT(given, ::testing::Not(::testing::StartsWith("error")));
  const std::string root = options_.root;
  ASSERT_THAT(given, HasSubstr("/scratch bind " + root + "/task/" + id + "/scratch"));
  const auto crashed = ourMounts();
  ASSERT_EQ(crashed.size(), mounts_before_.size() + 3);  // scratch, shared, efs

  makeFactory();  // the restarted agent
  EXPECT_THAT(factory_->deadOwners(), ElementsAre(id));
  EXPECT_THAT(node::tasksOfDeadAgents(noNetwork(), options_, factory_.get()), ElementsAre(id));
  EXPECT_THAT(node::tasksOfDeadAgents(noNetwork(), options_, nullptr), ElementsAre(id));
  auto resource = factory_->resourceFor(info(id, *definition));
  ASSERT_TRUE(resource && *resource);
  auto recovered = (*resource)->recover();
  ASSERT_TRUE(recovered) << recovered.error().message;
  EXPECT_EQ(contributed(**resource, *definition), given);
  EXPECT_EQ(ourMounts(), crashed);
  EXPECT_THAT(factory_->deadOwners(), IsEmpty());
  EXPECT_THAT(node::tasksOfDeadAgents(noNetwork(), options_, nullptr), IsEmpty());

  // The start sweep, with and without the agent's own factory, releases nothing of it.
  node::sweepDeadAgents(noNetwork(), options_, factory_.get());
  node::sweepDeadAgents(noNetwork(), options_, nullptr);
  EXPECT_EQ(ourMounts(), crashed);
  EXPECT_TRUE(fs::is_directory(root + "/task/" + id + "/plain"));

  (*resource)->cleanup();
  EXPECT_EQ(ourMounts(), mounts_before_);
  EXPECT_FALSE(fs::exists(root + "/task/" + id));
  EXPECT_FALSE(fs::exists(root + "/efs/" + id));
  makeFactory();
  EXPECT_EQ(recordedState(), state_before_);
  EXPECT_THAT(factory_->deadOwners(), IsEmpty());
}

TEST_F(VolumesRecoverTest, RecoverFailsNamingTheMountThatIsGoneAndTheSweepTakesTheRest) {
  auto definition = engine::loadTaskDefinition(definitionJson());
  ASSERT_TRUE(definition) << definition.error().message;
  const std::string id = "vr" + randomHex();
  ASSERT_THAT(createInDeadAgent(id, *definition), ::testing::Not(::testing::StartsWith("error")));
  const std::string scratch = options_.root + "/task/" + id + "/scratch";
  ASSERT_EQ(::umount2(scratch.c_str(), 0), 0) << std::strerror(errno);

  makeFactory();
  auto resource = factory_->resourceFor(info(id, *definition));
  ASSERT_TRUE(resource && *resource);
  auto recovered = (*resource)->recover();
  ASSERT_FALSE(recovered);
  EXPECT_EQ(recovered.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(recovered.error().message,
              HasSubstr(fmt::format("recover the volumes of task {}: volume 'scratch': {} is no "
                                    "longer mounted",
                                    id, scratch)));
  // Nothing adopted: the task is still the dead agent's, and the sweep releases it.
  EXPECT_THAT(factory_->deadOwners(), ElementsAre(id));
  node::sweepDeadAgents(noNetwork(), options_, factory_.get());
  EXPECT_EQ(ourMounts(), mounts_before_);
  EXPECT_FALSE(fs::exists(options_.root + "/task/" + id));
  EXPECT_THAT(factory_->deadOwners(), IsEmpty());
  EXPECT_EQ(recordedState(), state_before_);
  (*resource)->cleanup();  // idempotent after the sweep

  // A task no agent here created.
  const std::string never = "vr" + randomHex();
  auto unknown = factory_->resourceFor(info(never, *definition));
  ASSERT_TRUE(unknown && *unknown);
  auto refused = (*unknown)->recover();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(
      refused.error().message,
      HasSubstr(fmt::format("recover the volumes of task {}: nothing of it is recorded", never)));
  EXPECT_EQ(recordedState(), state_before_);
}

}  // namespace
}  // namespace ecs::volumes
