// Image cleanup against the harness's containerd and registry: images the agent pulled go once
// past the minimum age, on the cleaner's own thread, while an image a task uses stays; the state
// store carries the least-recently-used order across a restart. Each test runs in its own
// containerd namespace and leaves it empty.
#include "agent/images/image_cleanup.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "agent/images/image_puller.h"
#include "agent/images/registry_client.h"
#include "agent/runtime/containerd_client.h"
#include "agent/state/state_store.h"
#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

namespace ecs::images {
namespace {

using namespace std::chrono_literals;
using ecs::testing::harnessEnv;

class ImageCleanupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    runtime::ContainerdOptions options;
    options.address = harnessEnv().containerdAddress();
    options.ns = ns_;
    auto client = runtime::ContainerdClient::connect(options);
    ASSERT_TRUE(client) << client.error().message;
    containerd_ = std::move(*client);
    registry_ = std::make_unique<RegistryClient>(RegistryOptions{});
    puller_ = std::make_unique<ImagePuller>(*containerd_, *registry_);
  }

  void TearDown() override {
    if (!containerd_) return;
    if (auto images = containerd_->listImages()) {
      for (const auto& image : *images) {
        EXPECT_TRUE(containerd_->deleteImage(image.name, true)) << image.name;
      }
    }
    ecs::testing::expectNoLeaks(ns_);
  }

  std::string pull(const std::string& image) {
    auto reference = ImageReference::parse(harnessEnv().registry() + "/" + image);
    EXPECT_TRUE(reference) << reference.error().message;
    auto pulled = puller_->pull(*reference);
    EXPECT_TRUE(pulled) << pulled.error().message;
    return pulled ? pulled->image.name : "";
  }

  bool exists(const std::string& name) {
    auto image = containerd_->getImage(name);
    EXPECT_TRUE(image) << image.error().message;
    return image && image->has_value();
  }

  std::string ns_;
  std::unique_ptr<runtime::ContainerdClient> containerd_;
  std::unique_ptr<RegistryClient> registry_;
  std::unique_ptr<ImagePuller> puller_;
};

engine::TaskSnapshotPtr taskUsing(const std::string& image, bool removed) {
  auto task = std::make_shared<engine::TaskSnapshot>();
  task->arn = "arn:aws:ecs:us-east-1:123456789012:task/default/cleanup";
  task->removed = removed;
  engine::ContainerSnapshot c;
  c.name = "app";
  c.image = image;
  c.image_name = image;
  task->containers.push_back(c);
  return task;
}

TEST_F(ImageCleanupTest, DeletesAnUnusedImagePastTheMinimumAgeAndKeepsOneInUse) {
  const auto unused = pull("test/busybox:oci");
  const auto in_use = pull("test/busybox:docker");
  ASSERT_FALSE(unused.empty());
  ASSERT_FALSE(in_use.empty());

  auto record = containerd_->getImage(unused);
  ASSERT_TRUE(record && record->has_value());
  const auto pulled_at = std::max((*record)->created_at, (*record)->updated_at);

  ContainerdImageStore store(*containerd_);
  ImageCleanupOptions options;
  options.interval = 100ms;
  options.minimum_age = 2s;
  ImageCleaner cleaner(store, options);
  cleaner.onSnapshot(taskUsing(in_use, /*removed=*/false));
  cleaner.start();
  ASSERT_TRUE(ecs::testing::waitFor([&] { return !exists(unused); }, 30s,
                                    "the unused image to be deleted"));
  // Not before it was old enough.
  EXPECT_GE(std::chrono::system_clock::now() - pulled_at, options.minimum_age);
  cleaner.stop();
  EXPECT_TRUE(exists(in_use));
  // Pulled after the other, it may not be old enough yet: wait until it is, so that only the
  // task keeps it.
  auto in_use_record = containerd_->getImage(in_use);
  ASSERT_TRUE(in_use_record && in_use_record->has_value());
  std::this_thread::sleep_until(
      std::max((*in_use_record)->created_at, (*in_use_record)->updated_at) + options.minimum_age +
      10ms);
  EXPECT_TRUE(cleaner.runCycle().deleted.empty());
  EXPECT_TRUE(exists(in_use));

  // Once the task is removed its image goes too, content and snapshots with it.
  cleaner.onSnapshot(taskUsing(in_use, /*removed=*/true));
  auto report = cleaner.runCycle();
  ASSERT_EQ(report.deleted, std::vector<std::string>{in_use});
  EXPECT_FALSE(exists(in_use));
  auto snapshots = containerd_->listSnapshots();
  ASSERT_TRUE(snapshots) << snapshots.error().message;
  EXPECT_TRUE(snapshots->empty());
  auto content = containerd_->listContent();
  ASSERT_TRUE(content) << content.error().message;
  EXPECT_TRUE(content->empty());
}

// The agent restarts between the last use of an image and the next cycle: with its state store,
// the image pulled first but used since outlives the one pulled later and never used.
TEST_F(ImageCleanupTest, AfterARestartTheStoreKeepsTheLeastRecentlyUsedOrder) {
  const auto used = pull("test/busybox:oci");  // pulled first
  const auto unused = pull("test/busybox:docker");
  ASSERT_FALSE(used.empty());
  ASSERT_FALSE(unused.empty());

  std::string pattern =
      (std::filesystem::temp_directory_path() / "image_cleanup_test.XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } remove_dir{pattern};
  const std::string path = pattern + "/state.db";

  ContainerdImageStore store(*containerd_);
  ImageCleanupOptions options;
  options.minimum_age = 0s;
  options.images_per_cycle = 1;
  {
    auto state = state::StateStore::open(path, nullptr);
    ASSERT_TRUE(state) << state.error().message;
    StoredImageUsage records(**state);
    ImageCleaner before(store, options, &records);
    // Used in a later millisecond than the other's pull, even as the store rounds it down.
    std::this_thread::sleep_for(10ms);
    before.onSnapshot(taskUsing(used, /*removed=*/false));
    before.onSnapshot(taskUsing(used, /*removed=*/true));
  }

  auto state = state::StateStore::open(path, nullptr);
  ASSERT_TRUE(state) << state.error().message;
  StoredImageUsage records(**state);
  ImageCleaner after(store, options, &records);
  EXPECT_EQ(after.runCycle().deleted, std::vector<std::string>{unused});
  EXPECT_TRUE(exists(used));
  EXPECT_EQ(after.runCycle().deleted, std::vector<std::string>{used});
  auto left = (*state)->imagesUsed();
  ASSERT_TRUE(left) << left.error().message;
  EXPECT_TRUE(left->empty());
}

}  // namespace
}  // namespace ecs::images
