// The image cleaner's policy against a fake image store and a wall clock moved by hand: which
// images are candidates, in which order they go, how many per cycle, and what keeps one.
#include "agent/images/image_cleanup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace ecs::images {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using TimePoint = std::chrono::system_clock::time_point;

class FakeImageStore : public ImageStore {
 public:
  void add(const std::string& name, TimePoint pulled, bool managed = true) {
    runtime::ImageRecord record;
    record.name = name;
    record.created_at = pulled;
    record.updated_at = pulled;
    if (managed) record.labels[runtime::kLabelManagedBy] = runtime::kManagedByValue;
    std::lock_guard lock(mutex_);
    images_.push_back(record);
  }
  std::set<std::string> container_images;
  std::set<std::string> fail_delete;
  bool fail_containers = false;

  Result<std::vector<runtime::ImageRecord>> listImages() override {
    std::lock_guard lock(mutex_);
    return images_;
  }
  Result<std::set<std::string>> imagesOfContainers() override {
    if (fail_containers) return fail(ErrorCode::kUnavailable, "containerd is restarting");
    return container_images;
  }
  Result<void> deleteImage(const std::string& name) override {
    if (fail_delete.contains(name)) return fail(ErrorCode::kFailedPrecondition, "in use");
    std::lock_guard lock(mutex_);
    std::erase_if(images_, [&](const auto& image) { return image.name == name; });
    deleted_.push_back(name);
    changed_.notify_all();
    return {};
  }
  bool waitDeleted(const std::string& name) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] {
      return std::find(deleted_.begin(), deleted_.end(), name) != deleted_.end();
    });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<runtime::ImageRecord> images_;
  std::vector<std::string> deleted_;
};

engine::TaskSnapshotPtr task(const std::string& arn, std::vector<std::string> image_names,
                             bool removed = false) {
  auto snapshot = std::make_shared<engine::TaskSnapshot>();
  snapshot->arn = arn;
  snapshot->removed = removed;
  snapshot->known = removed ? engine::ContainerStatus::kStopped : engine::ContainerStatus::kRunning;
  for (auto& name : image_names) {
    engine::ContainerSnapshot c;
    c.name = "c" + std::to_string(snapshot->containers.size());
    c.image = name;
    c.image_name = name;
    snapshot->containers.push_back(c);
  }
  return snapshot;
}

class ImageCleanerTest : public ::testing::Test {
 protected:
  ImageCleanupOptions options(int per_cycle = 5) {
    ImageCleanupOptions o;
    o.minimum_age = 1h;
    o.images_per_cycle = per_cycle;
    o.now = [this] { return now_; };
    return o;
  }

  TimePoint t0_ = std::chrono::system_clock::now() - 24h;
  TimePoint now_ = t0_;
  FakeImageStore store_;
};

TEST_F(ImageCleanerTest, DeletesOnlyImagesTheAgentPulledThatAreOldEnoughAndUnused) {
  store_.add("reg.example/old:1", t0_);
  store_.add("reg.example/young:1", t0_ + 4h + 30min);
  store_.add("reg.example/foreign:1", t0_, /*managed=*/false);
  store_.add("reg.example/running:1", t0_);
  store_.add("reg.example/other-container:1", t0_);
  store_.add("docker.io/library/busybox:latest", t0_);
  store_.add("reg.example/pulling:1", t0_);
  store_.container_images = {"reg.example/other-container:1"};
  auto o = options();
  o.exclude = {"busybox"};
  ImageCleaner cleaner(store_, o);
  cleaner.onSnapshot(task("arn:task/a", {"reg.example/running:1"}));
  // A container not pulled yet counts by the image its definition names.
  auto pulling = std::make_shared<engine::TaskSnapshot>(*task("arn:task/b", {}));
  engine::ContainerSnapshot c;
  c.image = "reg.example/pulling:1";
  pulling->containers.push_back(c);
  cleaner.onSnapshot(pulling);

  now_ = t0_ + 5h;
  auto report = cleaner.runCycle();
  EXPECT_THAT(report.deleted, ElementsAre("reg.example/old:1"));
  EXPECT_THAT(report.failed, IsEmpty());

  now_ = t0_ + 6h;  // young is now old enough
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/young:1"));
}

TEST_F(ImageCleanerTest, GoesLeastRecentlyUsedFirstAndAtMostNPerCycle) {
  for (const auto* name :
       {"reg.example/p:1", "reg.example/q:1", "reg.example/r:1", "reg.example/s:1"})
    store_.add(name, t0_);
  ImageCleaner cleaner(store_, options(/*per_cycle=*/3));
  now_ = t0_ + 2h;
  cleaner.onSnapshot(task("arn:task/1", {"reg.example/r:1"}));
  cleaner.onSnapshot(task("arn:task/1", {"reg.example/r:1"}, /*removed=*/true));
  now_ = t0_ + 1h;
  cleaner.onSnapshot(task("arn:task/2", {"reg.example/q:1"}));
  cleaner.onSnapshot(task("arn:task/2", {"reg.example/q:1"}, /*removed=*/true));

  now_ = t0_ + 5h;
  // Never used since the agent started: as old as their pull.
  EXPECT_THAT(cleaner.runCycle().deleted,
              ElementsAre("reg.example/p:1", "reg.example/s:1", "reg.example/q:1"));
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/r:1"));
  EXPECT_THAT(cleaner.runCycle().deleted, IsEmpty());
}

TEST_F(ImageCleanerTest, AStoppedTaskKeepsItsImagesUntilItIsRemoved) {
  store_.add("reg.example/app:1", t0_);
  ImageCleaner cleaner(store_, options());
  auto stopped = std::make_shared<engine::TaskSnapshot>(*task("arn:task/1", {"reg.example/app:1"}));
  stopped->known = engine::ContainerStatus::kStopped;  // waiting for its cleanup
  cleaner.onSnapshot(stopped);
  now_ = t0_ + 5h;
  EXPECT_THAT(cleaner.runCycle().deleted, IsEmpty());
  cleaner.onSnapshot(task("arn:task/1", {"reg.example/app:1"}, /*removed=*/true));
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/app:1"));
}

TEST_F(ImageCleanerTest, NothingGoesWhenContainerdCannotListContainers) {
  store_.add("reg.example/app:1", t0_);
  store_.fail_containers = true;
  ImageCleaner cleaner(store_, options());
  now_ = t0_ + 5h;
  auto report = cleaner.runCycle();
  EXPECT_TRUE(report.skipped);
  EXPECT_THAT(report.deleted, IsEmpty());
  store_.fail_containers = false;
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/app:1"));
}

TEST_F(ImageCleanerTest, AFailedDeleteIsReportedAndTheOthersStillGo) {
  store_.add("reg.example/a:1", t0_);
  store_.add("reg.example/b:1", t0_ + 1min);
  store_.fail_delete = {"reg.example/a:1"};
  ImageCleaner cleaner(store_, options());
  now_ = t0_ + 5h;
  auto report = cleaner.runCycle();
  EXPECT_THAT(report.failed, ElementsAre("reg.example/a:1"));
  EXPECT_THAT(report.deleted, ElementsAre("reg.example/b:1"));
}

TEST_F(ImageCleanerTest, StartRunsCyclesOnItsOwnThreadUntilStopped) {
  store_.add("reg.example/a:1", t0_);
  auto o = options();
  o.interval = 10ms;
  now_ = t0_ + 5h;
  ImageCleaner cleaner(store_, o);
  cleaner.start();
  EXPECT_TRUE(store_.waitDeleted("reg.example/a:1"));
  cleaner.stop();
  cleaner.stop();  // idempotent
}

}  // namespace
}  // namespace ecs::images
