// SystemMounter and the docker local-driver mounts against the real kernel, as root: tmpfs with
// options, a read-only bind that really refuses writes, the mount table as parsed, and
// unmounting. Needs no containers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "volumes/mounter.h"
#include "volumes/task_volumes.h"

namespace ecs::volumes {
namespace {

namespace fs = std::filesystem;

class SystemMounterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/volumes-mounter-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = fs::canonical(tmpl);
    before_ = mounter_->mountPoints();
  }
  void TearDown() override {
    EXPECT_EQ(mounter_->mountPoints(), before_);
    EXPECT_FALSE(hasMountAtOrBelow(mounter_->mountPoints(), dir_.string()));
    fs::remove_all(dir_);
  }
  bool mounted(const fs::path& p) {
    auto points = mounter_->mountPoints();
    return std::ranges::find(points, p.string()) != points.end();
  }

  std::unique_ptr<Mounter> mounter_ = makeSystemMounter();
  fs::path dir_;
  std::vector<std::string> before_;
};

TEST_F(SystemMounterTest, TmpfsMountAndUnmount) {
  const auto target = dir_ / "with space";
  fs::create_directories(target);
  auto flags = parseMountOptions("size=1m,noexec");
  ASSERT_TRUE(mounter_->mount("tmpfs", target, "tmpfs", flags.flags, flags.data));
  EXPECT_TRUE(mounted(target));  // the \040 escape decoded
  std::ofstream(target / "f") << "x";
  EXPECT_TRUE(fs::exists(target / "f"));
  ASSERT_TRUE(mounter_->unmount(target, false));
  EXPECT_FALSE(fs::exists(target / "f"));
  auto again = mounter_->unmount(target, false);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  auto bad = mounter_->mount("tmpfs", target, "tmpfs", 0, "size=nonsense");
  ASSERT_FALSE(bad);
  EXPECT_FALSE(mounted(target));
}

TEST_F(SystemMounterTest, ReadOnlyBindVolumeRefusesWrites) {
  const auto device = dir_ / "device";
  fs::create_directories(device);
  std::ofstream(device / "existing") << "data";
  VolumesOptions options;
  options.root = (dir_ / "volumes").string();
  auto factory = TaskVolumesFactory::create(options);
  ASSERT_TRUE(factory) << factory.error().message;
  auto definition = engine::loadTaskDefinition(R"({"family": "f", "volumes": [{"name": "b",
      "dockerVolumeConfiguration": {"scope": "task", "driverOpts":
        {"type": "none", "device": ")" + device.string() +
                                               R"(", "o": "bind,ro"}}}],
      "containerDefinitions": [{"name": "c", "image": "i", "memory": 32}]})");
  ASSERT_TRUE(definition) << definition.error().message;
  engine::TaskInfo info{"arn", "t1", (dir_ / "task").string(), &*definition};
  auto resource = (*factory)->resourceFor(info);
  ASSERT_TRUE(resource && *resource);
  ASSERT_TRUE((*resource)->create());
  const auto target = fs::path((*factory)->options().root) / "task/t1/b";
  EXPECT_TRUE(mounted(target));
  EXPECT_EQ(std::ifstream(target / "existing").get(), 'd');
  EXPECT_FALSE(std::ofstream(target / "new").is_open());  // EROFS
  EXPECT_FALSE(fs::exists(device / "new"));
  (*resource)->cleanup();
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(fs::exists(device / "existing"));  // the device's content is untouched
}

}  // namespace
}  // namespace ecs::volumes
