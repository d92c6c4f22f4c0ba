// ImageCleaner: removes images the agent pulled once no task uses them, so a long-lived node's
// disk does not fill up with the images of tasks that ran long ago (ECS_IMAGE_CLEANUP_*).
//
// The policy is the ECS agent's. Every `interval`, an image is a candidate when the agent pulled
// it (its containerd record carries the agent's managed-by label), it was pulled at least
// `minimum_age` ago, no task the engine still knows uses it and no containerd container was made
// from it, and it is not excluded. At most `images_per_cycle` candidates are deleted per cycle,
// least recently used first: "used" is when a task last had a container from it (the removal of
// its last task), or its pull when no task is known to have used it. With ImageUsageRecords (the
// daemon's state store) the last-used times outlive the process; without (`run`) they are
// memory only, and after a restart every image counts from its pull.
//
// What is in use comes from the engine's task snapshots (onSnapshot); containerd's own
// container list backs that up for containers the engine does not know of. Deleting the image
// record lets containerd collect its content and snapshots; layers other images share stay.
//
// Threading: onSnapshot() is thread-safe and never blocks on containerd; it writes to the records
// (when a task is removed) on the caller's thread, as the daemon's other state writes do. Cycles
// run on the cleaner's own thread (containerd calls block), or on the caller's with runCycle().
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_snapshot.h"
#include "agent/runtime/types.h"

namespace ecs::runtime {
class ContainerdClient;
}
namespace ecs::state {
class StateStore;
}

namespace ecs::images {

// What the cleaner needs of containerd, and no more: unit tests put a fake in its place.
class ImageStore {
 public:
  virtual ~ImageStore() = default;
  virtual Result<std::vector<runtime::ImageRecord>> listImages() = 0;
  // The image names containerd's containers were created from.
  virtual Result<std::set<std::string>> imagesOfContainers() = 0;
  // Deletes the image record; its content and snapshots go with containerd's collection.
  virtual Result<void> deleteImage(const std::string& name) = 0;
};

class ContainerdImageStore : public ImageStore {
 public:
  explicit ContainerdImageStore(runtime::ContainerdClient& containerd) : containerd_(containerd) {}
  Result<std::vector<runtime::ImageRecord>> listImages() override;
  Result<std::set<std::string>> imagesOfContainers() override;
  Result<void> deleteImage(const std::string& name) override;

 private:
  runtime::ContainerdClient& containerd_;
};

// Where the cleaner keeps when each image was last used, so that a restart does not forget it.
// Called from the engine's thread (a task removed) and the cleaner's own (a cycle): an
// implementation must be thread-safe. The cleaner logs a failure and carries on: a lost record
// only makes the image count from its pull again.
class ImageUsageRecords {
 public:
  using TimePoint = std::chrono::system_clock::time_point;
  virtual ~ImageUsageRecords() = default;
  // Every image's last-used time, by containerd image name.
  virtual Result<std::map<std::string, TimePoint>> load() = 0;
  // Inserts or replaces the times of these images.
  virtual Result<void> record(const std::map<std::string, TimePoint>& last_used) = 0;
  // Forgets these images (deleted, or gone from containerd); an unknown name is no error.
  virtual Result<void> forget(const std::vector<std::string>& names) = 0;
};

// The records in the daemon's state store (its images table, times in milliseconds).
class StoredImageUsage : public ImageUsageRecords {
 public:
  explicit StoredImageUsage(state::StateStore& store) : store_(store) {}
  Result<std::map<std::string, TimePoint>> load() override;
  Result<void> record(const std::map<std::string, TimePoint>& last_used) override;
  Result<void> forget(const std::vector<std::string>& names) override;

 private:
  state::StateStore& store_;
};

struct ImageCleanupOptions {
  std::chrono::milliseconds interval{std::chrono::minutes(30)};  // ECS_IMAGE_CLEANUP_INTERVAL
  std::chrono::milliseconds minimum_age{std::chrono::hours(1)};  // ECS_IMAGE_MINIMUM_CLEANUP_AGE
  int images_per_cycle = 5;                                      // ECS_NUM_IMAGES_DELETE_PER_CYCLE
  // Images never deleted, as a task definition would name them ("busybox", "host/app:1").
  std::vector<std::string> exclude;
  // The wall clock image ages are measured with (containerd stamps records with wall time);
  // unset: system_clock::now. Tests move it.
  std::function<std::chrono::system_clock::time_point()> now;
};

// What one cycle did.
struct ImageCleanupReport {
  std::vector<std::string> deleted;  // in deletion order
  std::vector<std::string> failed;   // tried and not deleted (logged)
  bool skipped = false;              // containerd could not say what exists or is in use
};

class ImageCleaner {
 public:
  // Reads `records` (when given; it must outlive the cleaner) before anything else.
  ImageCleaner(ImageStore& store, ImageCleanupOptions options,
               ImageUsageRecords* records = nullptr);
  ~ImageCleaner();  // stop()
  ImageCleaner(const ImageCleaner&) = delete;
  ImageCleaner& operator=(const ImageCleaner&) = delete;

  // Which images the task's containers use now; the last snapshot of a removed task marks its
  // images last used now. A container not yet pulled counts by the image its definition names.
  void onSnapshot(const engine::TaskSnapshotPtr& task);

  // Starts the cleaner's thread: a cycle every interval, the first an interval from now.
  void start();
  // Stops the thread, waiting for a cycle in progress. Idempotent.
  void stop();

  // One cycle on the caller's thread.
  ImageCleanupReport runCycle();

 private:
  using TimePoint = std::chrono::system_clock::time_point;
  TimePoint now() const;
  void loop();
  // Writes what memory now says of each of `names` to the records: its last-used time, or that
  // it is forgotten. Serialised by records_mutex_, each write reading memory only once it holds
  // it, so writes racing from two threads leave the records as memory ends up.
  void persist(const std::set<std::string>& names);

  ImageStore& store_;
  ImageCleanupOptions options_;
  ImageUsageRecords* records_;     // null: last-used times in memory only
  std::mutex records_mutex_;       // one write to records_ at a time; taken before mutex_
  std::set<std::string> exclude_;  // normalised

  std::mutex mutex_;                                     // guards the fields below
  std::map<std::string, std::set<std::string>> in_use_;  // task ARN -> image names
  std::map<std::string, TimePoint> last_used_;           // image name -> last used
  bool stopping_ = false;
  std::condition_variable wake_;

  std::mutex cycle_mutex_;  // one cycle at a time
  std::thread thread_;
};

}  // namespace ecs::images
