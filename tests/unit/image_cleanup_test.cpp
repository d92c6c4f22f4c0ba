// The image cleaner's policy against a fake image store and a wall clock moved by hand: which
// images are candidates, in which order they go, how many per cycle, what keeps one, and how the
// last-used records carry the order across a restart.
#include "agent/images/image_cleanup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>

#include "agent/state/state_store.h"

namespace ecs::images {
namespace {

namespace fs = std::filesystem;
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

// The daemon's state store in memory: what was recorded outlives any one cleaner.
class FakeUsageRecords : public ImageUsageRecords {
 public:
  Result<std::map<std::string, TimePoint>> load() override {
    std::lock_guard lock(mutex_);
    if (broken) return fail(ErrorCode::kUnavailable, "cannot read the store");
    return stored;
  }
  Result<void> record(const std::map<std::string, TimePoint>& last_used) override {
    std::lock_guard lock(mutex_);
    ++writes;
    if (broken) return fail(ErrorCode::kUnavailable, "disk full");
    for (const auto& [name, at] : last_used) stored[name] = at;
    return {};
  }
  Result<void> forget(const std::vector<std::string>& names) override {
    std::lock_guard lock(mutex_);
    ++writes;
    if (broken) return fail(ErrorCode::kUnavailable, "disk full");
    for (const auto& name : names) stored.erase(name);
    return {};
  }

  std::map<std::string, TimePoint> stored;
  int writes = 0;
  bool broken = false;

 private:
  std::mutex mutex_;
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

// The agent restarts between a task's removal and the next cycle: with the records, the image
// that task used recently outlives one pulled later but never used; without them, the image
// pulled first goes first.
TEST_F(ImageCleanerTest, RecordsKeepTheLeastRecentlyUsedOrderAcrossARestart) {
  const std::string used = "reg.example/used:1";    // pulled first, used recently
  const std::string unused = "reg.example/idle:1";  // pulled later, never used
  FakeUsageRecords records;
  auto lastUseThenRestart = [&](FakeImageStore& images, ImageUsageRecords* kept) {
    images.add(used, t0_);
    images.add(unused, t0_ + 1h);
    now_ = t0_ + 2h;
    ImageCleaner before(images, options(/*per_cycle=*/1), kept);
    before.onSnapshot(task("arn:task/1", {used}));
    now_ = t0_ + 3h;
    before.onSnapshot(task("arn:task/1", {used}, /*removed=*/true));
  };

  lastUseThenRestart(store_, &records);
  EXPECT_EQ(records.stored.at(used), t0_ + 3h);
  ImageCleaner after(store_, options(/*per_cycle=*/1), &records);
  now_ = t0_ + 5h;
  EXPECT_THAT(after.runCycle().deleted, ElementsAre(unused));
  EXPECT_THAT(after.runCycle().deleted, ElementsAre(used));

  FakeImageStore forgetful;
  lastUseThenRestart(forgetful, nullptr);
  ImageCleaner without(forgetful, options(/*per_cycle=*/1));
  now_ = t0_ + 5h;
  EXPECT_THAT(without.runCycle().deleted, ElementsAre(used));
}

TEST_F(ImageCleanerTest, RecordsFollowRemovalsDeletionsAndWhatContainerdNoLongerHas) {
  const std::string app = "reg.example/app:1";
  const std::string busy = "reg.example/busy:1";
  const std::string gone = "reg.example/gone:1";  // deleted while the agent was down
  store_.add(app, t0_);
  store_.add(busy, t0_);
  FakeUsageRecords records;
  records.stored[gone] = t0_ + 30min;
  ImageCleaner cleaner(store_, options(), &records);

  // A running task's snapshots write nothing; its removal records its images.
  now_ = t0_ + 1h;
  cleaner.onSnapshot(task("arn:task/1", {app}));
  cleaner.onSnapshot(task("arn:task/2", {busy}));
  EXPECT_EQ(records.writes, 0);
  now_ = t0_ + 2h;
  cleaner.onSnapshot(task("arn:task/1", {app}, /*removed=*/true));
  EXPECT_EQ(records.stored.at(app), t0_ + 2h);

  // A cycle records what is in use, forgets what containerd no longer has and what it deletes.
  now_ = t0_ + 5h;
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre(app));
  EXPECT_FALSE(records.stored.contains(app));
  EXPECT_FALSE(records.stored.contains(gone));
  EXPECT_EQ(records.stored.at(busy), t0_ + 5h);
  EXPECT_EQ(records.stored.size(), 1u);
}

TEST_F(ImageCleanerTest, RecordsThatFailOnlyCostTheirMemory) {
  store_.add("reg.example/a:1", t0_);
  store_.add("reg.example/b:1", t0_ + 1h);
  FakeUsageRecords records;
  records.stored["reg.example/a:1"] = t0_ + 3h;
  records.broken = true;
  // Unreadable: every image counts from its pull, and writes are still tried.
  ImageCleaner cleaner(store_, options(/*per_cycle=*/1), &records);
  now_ = t0_ + 4h;
  cleaner.onSnapshot(task("arn:task/1", {"reg.example/b:1"}));
  cleaner.onSnapshot(task("arn:task/1", {"reg.example/b:1"}, /*removed=*/true));
  EXPECT_GT(records.writes, 0);
  now_ = t0_ + 5h;
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/a:1"));
  EXPECT_THAT(cleaner.runCycle().deleted, ElementsAre("reg.example/b:1"));
}

// The same restart through the daemon's real state store: the times survive closing and
// reopening the file, to the millisecond.
TEST_F(ImageCleanerTest, StoredRecordsKeepTheOrderThroughTheStateStore) {
  std::string pattern = (fs::temp_directory_path() / "image_cleanup_test.XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const fs::path dir = pattern;
  struct RemoveDir {
    fs::path dir;
    ~RemoveDir() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } remove_dir{dir};
  const std::string path = (dir / "state.db").string();
  const std::string used = "reg.example/used:1";
  const std::string unused = "reg.example/idle:1";
  store_.add(used, t0_);
  store_.add(unused, t0_ + 1h);
  const TimePoint last_use = t0_ + 3h + 456789us;
  {
    auto state = state::StateStore::open(path, nullptr);
    ASSERT_TRUE(state) << state.error().message;
    StoredImageUsage records(**state);
    ImageCleaner before(store_, options(/*per_cycle=*/1), &records);
    now_ = t0_ + 2h;
    before.onSnapshot(task("arn:task/1", {used}));
    now_ = last_use;
    before.onSnapshot(task("arn:task/1", {used}, /*removed=*/true));
  }
  auto state = state::StateStore::open(path, nullptr);
  ASSERT_TRUE(state) << state.error().message;
  StoredImageUsage records(**state);
  auto loaded = records.load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(loaded->at(used), std::chrono::floor<std::chrono::milliseconds>(last_use));

  ImageCleaner after(store_, options(/*per_cycle=*/1), &records);
  now_ = t0_ + 5h;
  EXPECT_THAT(after.runCycle().deleted, ElementsAre(unused));
  EXPECT_THAT(after.runCycle().deleted, ElementsAre(used));
  // Deleted images leave the store too.
  auto left = (*state)->imagesUsed();
  ASSERT_TRUE(left) << left.error().message;
  EXPECT_THAT(*left, IsEmpty());
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
