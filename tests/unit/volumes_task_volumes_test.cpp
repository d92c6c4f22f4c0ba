// The volume layer's logic against a fake mounter: volumesFrom resolution, driverOpts handling,
// what create() mounts and with which arguments, contribute()'s bind mounts, cleanup after a
// failed mount, shared volume reuse and reference counting, the persisted state and sweep().
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "agent/engine/task_definition.h"
#include "volumes/mounter.h"
#include "volumes/task_volumes.h"
#include "volumes/volume_state.h"

namespace ecs::volumes {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Keeps a mount table of its own; fails a mount or a command when told to.
class FakeMounter : public Mounter {
 public:
  struct Call {
    std::string source, target, fstype;
    unsigned long flags;
    std::string data;
  };
  std::vector<Call> mounts;
  std::vector<std::vector<std::string>> commands;
  std::vector<std::string> table;
  std::vector<std::string> unmounted;
  bool fail_mount = false;
  bool fail_command = false;
  bool command_mounts = true;  // a successful command mounts its last argument

  Result<void> mount(const std::string& source, const std::string& target,
                     const std::string& fstype, unsigned long flags,
                     const std::string& data) override {
    mounts.push_back({source, target, fstype, flags, data});
    if (fail_mount) return fail(ErrorCode::kFailedPrecondition, "mount {}: No such device", target);
    if ((flags & (MS_REMOUNT | MS_PRIVATE)) == 0) table.push_back(target);
    return {};
  }
  Result<void> unmount(const std::string& target, bool) override {
    auto it = std::find(table.rbegin(), table.rend(), target);
    if (it == table.rend()) return fail(ErrorCode::kNotFound, "unmount {}: not mounted", target);
    table.erase(std::next(it).base());
    unmounted.push_back(target);
    return {};
  }
  Result<void> run(const std::vector<std::string>& argv, std::chrono::milliseconds) override {
    commands.push_back(argv);
    if (fail_command) return fail(ErrorCode::kFailedPrecondition, "exit status 32: access denied");
    if (command_mounts) table.push_back(argv.back());
    return {};
  }
  std::vector<std::string> mountPoints() override { return table; }
};

class TaskVolumesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/volumes-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = (dir_ / "volumes").string();
    makeFactory();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void makeFactory(VolumesOptions options = {}) {
    options.root = root_;
    if (!options.efs_utils_installed) options.efs_utils_installed = [this] { return efs_utils_; };
    options.region = "us-west-2";
    options.efs_mount_command = {"/helper", "--x"};
    auto mounter = std::make_unique<FakeMounter>();
    if (mounter_ != nullptr) {
      mounter->table = mounter_->table;
    }
    mounter_ = mounter.get();
    auto factory = TaskVolumesFactory::create(std::move(options), std::move(mounter));
    ASSERT_TRUE(factory) << factory.error().message;
    factory_ = std::move(*factory);
    root_ = factory_->options().root;
  }

  engine::TaskDefinition load(const std::string& json) {
    auto definition = engine::loadTaskDefinition(json);
    EXPECT_TRUE(definition) << definition.error().message;
    return definition ? *definition : engine::TaskDefinition{};
  }

  struct Running {
    engine::TaskInfo info;
    std::unique_ptr<engine::TaskResource> resource;
  };
  Running start(const engine::TaskDefinition& definition, const std::string& id) {
    Running r;
    r.info = {"arn:aws:ecs:us-west-2:1:task/c/" + id, id, (dir_ / "tasks" / id).string(),
              &definition};
    auto resource = factory_->resourceFor(r.info);
    EXPECT_TRUE(resource) << resource.error().message;
    if (resource) r.resource = std::move(*resource);
    return r;
  }

  std::vector<runtime::SpecMount> contribute(Running& task, const engine::TaskDefinition& def,
                                             const std::string& container) {
    engine::ContainerInfo info{def.container(container), "rt-" + container, ""};
    engine::ContainerResources out;
    auto r = task.resource->contribute(info, out);
    EXPECT_TRUE(r) << r.error().message;
    return out.mounts;
  }

  fs::path dir_;
  std::string root_;
  bool efs_utils_ = true;
  FakeMounter* mounter_ = nullptr;
  std::unique_ptr<TaskVolumesFactory> factory_;
};

// --- volumesFrom --------------------------------------------------------------------------------

TEST(ResolveContainerMountsTest, TransitiveVolumesFromWithReadOnly) {
  auto definition = engine::loadTaskDefinition(R"({
    "family": "f",
    "volumes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "containerDefinitions": [
      {"name": "base", "image": "i", "memory": 32,
       "mountPoints": [{"sourceVolume": "a", "containerPath": "/a"},
                       {"sourceVolume": "b", "containerPath": "/b", "readOnly": true}]},
      {"name": "mid", "image": "i", "memory": 32,
       "mountPoints": [{"sourceVolume": "c", "containerPath": "/c"}],
       "volumesFrom": [{"sourceContainer": "base"}]},
      {"name": "top", "image": "i", "memory": 32,
       "mountPoints": [{"sourceVolume": "c", "containerPath": "/a"}],
       "volumesFrom": [{"sourceContainer": "mid", "readOnly": true}]},
      {"name": "rw", "image": "i", "memory": 32,
       "volumesFrom": [{"sourceContainer": "mid"}]}
    ]})");
  ASSERT_TRUE(definition) << definition.error().message;
  auto top = resolveContainerMounts(*definition, *definition->container("top"));
  ASSERT_TRUE(top) << top.error().message;
  std::vector<std::tuple<std::string, std::string, bool>> got;
  for (const auto& m : *top) got.emplace_back(m.volume, m.container_path, m.read_only);
  // Its own /a wins over base's /a; everything through the read-only volumesFrom is read-only.
  EXPECT_THAT(got, ElementsAre(std::make_tuple("c", "/a", false), std::make_tuple("c", "/c", true),
                               std::make_tuple("b", "/b", true)));

  auto rw = resolveContainerMounts(*definition, *definition->container("rw"));
  ASSERT_TRUE(rw);
  got.clear();
  for (const auto& m : *rw) got.emplace_back(m.volume, m.container_path, m.read_only);
  // A read-write volumesFrom keeps each mount's own mode.
  EXPECT_THAT(got, ElementsAre(std::make_tuple("c", "/c", false), std::make_tuple("a", "/a", false),
                               std::make_tuple("b", "/b", true)));
}

TEST(ResolveContainerMountsTest, CycleIsAnError) {
  engine::TaskDefinition definition;
  engine::ContainerDefinition a, b;
  a.name = "a";
  b.name = "b";
  a.volumes_from.push_back({"b", false});
  b.volumes_from.push_back({"a", false});
  definition.container_definitions = {a, b};
  auto r = resolveContainerMounts(definition, definition.container_definitions[0]);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("cycle"));
}

// --- driverOpts ---------------------------------------------------------------------------------

engine::DockerVolumeConfiguration opts(std::map<std::string, std::string> driver_opts,
                                       std::string driver = "local") {
  engine::DockerVolumeConfiguration c;
  c.driver = std::move(driver);
  c.driver_opts = std::move(driver_opts);
  return c;
}

TEST(PlanLocalVolumeTest, DriverOptsAsDockersLocalDriver) {
  auto dir = planLocalVolume(opts({}));
  ASSERT_TRUE(dir);
  EXPECT_EQ(dir->kind, LocalVolumePlan::Kind::kDirectory);

  auto tmpfs = planLocalVolume(opts({{"type", "tmpfs"}, {"o", "size=64m,uid=1000,noexec"}}));
  ASSERT_TRUE(tmpfs) << tmpfs.error().message;
  EXPECT_EQ(tmpfs->kind, LocalVolumePlan::Kind::kSyscall);
  EXPECT_EQ(tmpfs->fstype, "tmpfs");
  EXPECT_EQ(tmpfs->source, "tmpfs");
  EXPECT_EQ(tmpfs->flags, static_cast<unsigned long>(MS_NOEXEC));
  EXPECT_EQ(tmpfs->data, "size=64m,uid=1000");

  auto bind = planLocalVolume(opts({{"device", "/srv/data"}, {"o", "bind,ro"}}));
  ASSERT_TRUE(bind) << bind.error().message;
  EXPECT_EQ(bind->kind, LocalVolumePlan::Kind::kSyscall);
  EXPECT_EQ(bind->source, "/srv/data");
  EXPECT_EQ(bind->fstype, "none");
  EXPECT_EQ(bind->flags, static_cast<unsigned long>(MS_BIND | MS_RDONLY));

  auto nfs =
      planLocalVolume(opts({{"type", "nfs"}, {"device", ":/export"}, {"o", "addr=10.0.0.1,rw"}}));
  ASSERT_TRUE(nfs) << nfs.error().message;
  EXPECT_EQ(nfs->kind, LocalVolumePlan::Kind::kCommand);
  EXPECT_EQ(nfs->options, "addr=10.0.0.1,rw");
}

TEST(PlanLocalVolumeTest, RefusesWhatDockerRefuses) {
  auto plugin = planLocalVolume(opts({}, "rexray/ebs"));
  ASSERT_FALSE(plugin);
  EXPECT_THAT(plugin.error().message, HasSubstr("\"rexray/ebs\" is not supported"));
  auto key = planLocalVolume(opts({{"size", "1g"}}));
  ASSERT_FALSE(key);
  EXPECT_THAT(key.error().message, HasSubstr("invalid option \"size\""));
  EXPECT_FALSE(planLocalVolume(opts({{"device", "/dev/sdb"}})));            // no type
  EXPECT_FALSE(planLocalVolume(opts({{"type", "ext4"}})));                  // no device
  EXPECT_FALSE(planLocalVolume(opts({{"device", "rel"}, {"o", "bind"}})));  // relative bind
}

TEST(MountOptionsTest, FlagsAndData) {
  auto f = parseMountOptions("ro,nosuid,size=64m,bind,mode=1777,rw");
  EXPECT_EQ(f.flags, static_cast<unsigned long>(MS_NOSUID | MS_BIND));
  EXPECT_EQ(f.data, "size=64m,mode=1777");
  EXPECT_EQ(parseMountOptions("rbind").flags, static_cast<unsigned long>(MS_BIND | MS_REC));
}

TEST(MountInfoTest, ParsesEscapedMountPoints) {
  auto points = parseMountInfo(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "40 22 0:40 / /var/lib/with\\040space rw - tmpfs tmpfs rw\n");
  EXPECT_THAT(points, ElementsAre("/", "/var/lib/with space"));
  EXPECT_TRUE(hasMountAtOrBelow(points, "/var/lib"));
  EXPECT_FALSE(hasMountAtOrBelow({"/var/lib/with space"}, "/var/lib/with"));
  EXPECT_TRUE(hasMountAtOrBelow({"/a/b"}, "/a/b/"));
}

// --- create / contribute / cleanup ---------------------------------------------------------------

TEST_F(TaskVolumesTest, HostTaskScopedAndBindMountsForContainers) {
  auto host_path = (dir_ / "host" / "logs").string();
  auto def = load(R"({"family": "f", "volumes": [
      {"name": "logs", "host": {"sourcePath": ")" +
                  host_path + R"("}},
      {"name": "scratch"}],
    "containerDefinitions": [
      {"name": "app", "image": "i", "memory": 32,
       "mountPoints": [{"sourceVolume": "logs", "containerPath": "/logs"},
                       {"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": true}]},
      {"name": "sidecar", "image": "i", "memory": 32,
       "volumesFrom": [{"sourceContainer": "app", "readOnly": true}]}]})");
  auto task = start(def, "t1");
  ASSERT_TRUE(task.resource);
  ASSERT_TRUE(task.resource->create());
  struct stat st {};
  ASSERT_EQ(::stat(host_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  const auto scratch = root_ + "/task/t1/scratch";
  EXPECT_TRUE(fs::is_directory(scratch));

  auto app = contribute(task, def, "app");
  ASSERT_EQ(app.size(), 2u);
  EXPECT_EQ(app[0].destination, "/logs");
  EXPECT_EQ(app[0].type, "bind");
  EXPECT_EQ(app[0].source, host_path);
  EXPECT_THAT(app[0].options, ElementsAre("rbind", "rprivate", "rw"));
  EXPECT_EQ(app[1].source, scratch);
  EXPECT_THAT(app[1].options, ElementsAre("rbind", "rprivate", "ro"));
  auto sidecar = contribute(task, def, "sidecar");
  ASSERT_EQ(sidecar.size(), 2u);
  EXPECT_THAT(sidecar[0].options, ElementsAre("rbind", "rprivate", "ro"));

  task.resource->cleanup();
  EXPECT_FALSE(fs::exists(root_ + "/task/t1"));
  EXPECT_TRUE(fs::is_directory(host_path));  // the host's path stays
  task.resource->cleanup();                  // idempotent
  EXPECT_THAT(mounter_->mounts, IsEmpty());
}

TEST_F(TaskVolumesTest, NoVolumesNoResource) {
  auto def = load(R"({"family": "f", "containerDefinitions": [{"name": "a", "image": "i",
                      "memory": 32}]})");
  engine::TaskInfo info{"arn", "t", "/x", &def};
  auto r = factory_->resourceFor(info);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, nullptr);
}

TEST_F(TaskVolumesTest, TmpfsDockerVolumeIsMountedTrackedAndReleased) {
  auto def = load(R"({"family": "f", "volumes": [{"name": "fast",
      "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
        "driverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=16m,ro"},
        "labels": {"team": "a"}}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32,
      "mountPoints": [{"sourceVolume": "fast", "containerPath": "/fast"}]}]})");
  auto task = start(def, "t2");
  ASSERT_TRUE(task.resource->create());
  const auto target = root_ + "/task/t2/fast";
  ASSERT_EQ(mounter_->mounts.size(), 1u);
  EXPECT_EQ(mounter_->mounts[0].source, "tmpfs");
  EXPECT_EQ(mounter_->mounts[0].target, target);
  EXPECT_EQ(mounter_->mounts[0].fstype, "tmpfs");
  EXPECT_EQ(mounter_->mounts[0].data, "size=16m");
  EXPECT_EQ(mounter_->mounts[0].flags, static_cast<unsigned long>(MS_RDONLY));
  auto tracked = factory_->trackedMounts();
  ASSERT_EQ(tracked.size(), 1u);
  EXPECT_EQ(tracked[0].target, target);
  EXPECT_THAT(tracked[0].tasks, ElementsAre("t2"));
  // Persisted: a new factory over the same root knows the mount.
  auto state = VolumeState::load(root_ + "/state.json");
  ASSERT_TRUE(state);
  ASSERT_EQ(state->mounts().size(), 1u);

  task.resource->cleanup();
  EXPECT_THAT(mounter_->unmounted, ElementsAre(target));
  EXPECT_THAT(factory_->trackedMounts(), IsEmpty());
  EXPECT_FALSE(fs::exists(root_ + "/task/t2"));
}

TEST_F(TaskVolumesTest, UnsupportedDriverFailsTheTaskUpFront) {
  // Validation refuses it too; the factory does not rely on that.
  auto parsed = engine::parseTaskDefinition(R"({"family": "f", "volumes": [{"name": "ebs",
      "dockerVolumeConfiguration": {"scope": "task", "driver": "rexray/ebs"}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  const auto& def = *parsed;
  engine::TaskInfo info{"arn", "t", "/x", &def};
  auto r = factory_->resourceFor(info);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("volume 'ebs': driver \"rexray/ebs\""));
}

TEST_F(TaskVolumesTest, SharedVolumeAutoprovisionReuseAndRefcount) {
  const std::string volumes = R"("volumes": [{"name": "cache",
      "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": AUTO,
        "driver": "local", "driverOpts": {"type": "tmpfs", "o": "size=8m"}}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32,
      "mountPoints": [{"sourceVolume": "cache", "containerPath": "/cache"}]}]})";
  auto with = [&](const std::string& autoprovision) {
    auto text = volumes;
    text.replace(text.find("AUTO"), 4, autoprovision);
    return load(R"({"family": "f", )" + text);
  };
  auto missing_def = with("false");
  auto missing = start(missing_def, "t0");
  auto r = missing.resource->create();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "volume 'cache': shared volume 'cache' does not exist and autoprovision is false");
  missing.resource->cleanup();

  auto def1 = with("true");
  auto def2 = with("false");
  auto one = start(def1, "t1");
  ASSERT_TRUE(one.resource->create());
  auto two = start(def2, "t2");
  ASSERT_TRUE(two.resource->create());
  const auto data = root_ + "/shared/cache/data";
  EXPECT_EQ(contribute(two, def2, "a")[0].source, data);
  EXPECT_EQ(std::count(mounter_->table.begin(), mounter_->table.end(), data), 1);
  one.resource->cleanup();
  EXPECT_THAT(mounter_->unmounted, IsEmpty());  // t2 still uses it
  two.resource->cleanup();
  EXPECT_THAT(mounter_->unmounted, ElementsAre(data));
  // The volume itself outlives the tasks.
  EXPECT_TRUE(fs::exists(root_ + "/shared/cache/volume.json"));
}

TEST_F(TaskVolumesTest, SharedVolumeFullConfigMatch) {
  makeFactory({.shared_volume_match_full_config = true});
  auto def1 = load(R"({"family": "f", "volumes": [{"name": "v", "dockerVolumeConfiguration":
      {"scope": "shared", "autoprovision": true, "labels": {"a": "1"}}}],
      "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  auto def2 = load(R"({"family": "f", "volumes": [{"name": "v", "dockerVolumeConfiguration":
      {"scope": "shared", "autoprovision": true, "labels": {"a": "2"}}}],
      "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  auto one = start(def1, "t1");
  ASSERT_TRUE(one.resource->create());
  auto two = start(def2, "t2");
  auto r = two.resource->create();
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("different configuration"));
  one.resource->cleanup();
  two.resource->cleanup();
}

constexpr const char* kEfsTask = R"({"family": "f", "volumes": [{"name": "data",
      "efsVolumeConfiguration": {"fileSystemId": "fs-1234", "rootDirectory": "/",
        "transitEncryption": "ENABLED", "authorizationConfig": {"iam": "ENABLED"}}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32,
      "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}]}]})";

TEST_F(TaskVolumesTest, EfsRunsTheMountCommandAndBindsTheMount) {
  makeFactory({.credentials_relative_uri = [](const engine::TaskInfo& t) {
    return "/v2/credentials/" + t.id;
  }});
  auto def = load(kEfsTask);
  auto task = start(def, "t3");
  ASSERT_TRUE(task.resource->create());
  const auto target = root_ + "/efs/t3/data";
  ASSERT_EQ(mounter_->commands.size(), 1u);
  EXPECT_THAT(mounter_->commands[0],
              ElementsAre("/helper", "--x", "-t", "efs", "-o",
                          "tls,iam,awscredsuri=/v2/credentials/t3", "fs-1234:/", target));
  auto mounts = contribute(task, def, "a");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].source, target);
  EXPECT_THAT(mounts[0].options, ElementsAre("rbind", "rprivate", "ro"));
  task.resource->cleanup();
  EXPECT_THAT(mounter_->unmounted, ElementsAre(target));
  EXPECT_FALSE(fs::exists(root_ + "/efs/t3"));
}

TEST_F(TaskVolumesTest, EfsTlsWithoutEfsUtilsFailsBeforeMounting) {
  efs_utils_ = false;
  auto def = load(kEfsTask);
  auto task = start(def, "t4");
  auto r = task.resource->create();
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message,
              HasSubstr("volume 'data': transit encryption needs amazon-efs-utils"));
  EXPECT_THAT(mounter_->commands, IsEmpty());
  task.resource->cleanup();
  EXPECT_FALSE(fs::exists(root_ + "/efs/t4"));
}

TEST_F(TaskVolumesTest, FailedMountUndoesEverythingAndNamesTheVolume) {
  auto def = load(R"({"family": "f", "volumes": [
      {"name": "fast", "dockerVolumeConfiguration": {"scope": "task",
        "driverOpts": {"type": "tmpfs", "o": "size=1m"}}},
      {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1234"}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  mounter_->fail_command = true;
  auto task = start(def, "t5");
  auto r = task.resource->create();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "volume 'data': efs mount of fs-1234 failed: exit status 32: access denied");
  // The tmpfs made before is gone, and nothing is tracked.
  EXPECT_THAT(mounter_->table, IsEmpty());
  EXPECT_THAT(factory_->trackedMounts(), IsEmpty());
  EXPECT_FALSE(fs::exists(root_ + "/task/t5"));
  EXPECT_FALSE(fs::exists(root_ + "/efs/t5"));
  task.resource->cleanup();
}

TEST_F(TaskVolumesTest, CommandThatMountsNothingIsAFailure) {
  mounter_->command_mounts = false;
  auto def = load(R"({"family": "f", "volumes": [
      {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-9"}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  auto task = start(def, "t6");
  auto r = task.resource->create();
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("exited 0 but nothing is mounted"));
  task.resource->cleanup();
}

TEST_F(TaskVolumesTest, SweepReleasesDeadTasksAndKeepsLiveOnes) {
  auto def = load(R"({"family": "f", "volumes": [
      {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
    "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]})");
  auto dead = start(def, "dead");
  ASSERT_TRUE(dead.resource->create());
  auto live = start(def, "live");
  ASSERT_TRUE(live.resource->create());
  // An untracked leftover of another dead task, as after a lost state file.
  fs::create_directories(root_ + "/task/ghost/x");
  mounter_->table.push_back(root_ + "/task/ghost/x");
  dead.resource.reset();
  live.resource.reset();

  makeFactory();  // a restarted agent: same root, same mount table, state from the file
  EXPECT_EQ(factory_->sweep({"live"}), 2);
  EXPECT_THAT(mounter_->table, ElementsAre(root_ + "/efs/live/data"));
  EXPECT_FALSE(fs::exists(root_ + "/efs/dead"));
  EXPECT_FALSE(fs::exists(root_ + "/task/ghost"));
  EXPECT_TRUE(fs::exists(root_ + "/efs/live/data"));
  ASSERT_EQ(factory_->trackedMounts().size(), 1u);
  EXPECT_EQ(factory_->sweep({}), 1);
  EXPECT_THAT(mounter_->table, IsEmpty());
}

TEST(VolumeStateTest, RoundTripsAndRejectsGarbage) {
  char tmpl[] = "/tmp/volume-state-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/state.json";
  auto empty = VolumeState::load(path);
  ASSERT_TRUE(empty);
  EXPECT_THAT(empty->mounts(), IsEmpty());
  VolumeState state(path);
  state.add({"/v/efs/t/d", "d", "efs", {"t"}});
  state.add({"/v/shared/c/data", "c", "shared", {"a", "b"}});
  ASSERT_TRUE(state.save());
  auto loaded = VolumeState::load(path);
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->mounts().size(), 2u);
  EXPECT_THAT(loaded->mounts()[1].tasks, ElementsAre("a", "b"));
  EXPECT_THAT(loaded->owners(), IsEmpty());
  state.setOwner("t", ProcessIdentity{1234, 5678});
  ASSERT_TRUE(state.save());
  loaded = VolumeState::load(path);
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->owners().size(), 1u);
  EXPECT_EQ(loaded->owners().at("t"), (ProcessIdentity{1234, 5678}));
  // A file written before tasks were recorded has no owners.
  std::ofstream(path) << R"({"version": 1, "mounts": []})";
  loaded = VolumeState::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_THAT(loaded->owners(), IsEmpty());
  std::ofstream(path) << "{\"mounts\": [{\"target\": 3}]}";
  EXPECT_FALSE(VolumeState::load(path));
  std::ofstream(path) << "not json";
  EXPECT_FALSE(VolumeState::load(path));
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace ecs::volumes
