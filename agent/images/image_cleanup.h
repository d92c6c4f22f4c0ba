// ImageCleaner: removes images the agent pulled once no task uses them, so a long-lived node's
// disk does not fill up with the images of tasks that ran long ago (ECS_IMAGE_CLEANUP_*).
//
// The policy is the ECS agent's. Every `interval`, an image is a candidate when the agent pulled
// it (its containerd record carries the agent's managed-by label), it was pulled at least
// `minimum_age` ago, no task the engine still knows uses it and no containerd container was made
// from it, and it is not excluded. At most `images_per_cycle` candidates are deleted per cycle,
// least recently used first: "used" is when a task last had a container from it (the removal of
// its last task), or its pull when no task used it since the agent started.
//
// What is in use comes from the engine's task snapshots (onSnapshot); containerd's own
// container list backs that up for containers the engine does not know of. Deleting the image
// record lets containerd collect its content and snapshots; layers other images share stay.
//
// Threading: onSnapshot() is thread-safe and never blocks on containerd. Cycles run on the
// cleaner's own thread (containerd calls block), or on the caller's with runCycle().
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
  ImageCleaner(ImageStore& store, ImageCleanupOptions options);
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

  ImageStore& store_;
  ImageCleanupOptions options_;
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
