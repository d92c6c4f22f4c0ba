#include "agent/images/image_cleanup.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/images/image_reference.h"
#include "agent/runtime/containerd_client.h"
#include "agent/state/state_store.h"

namespace ecs::images {

namespace {

// The containerd record name a task definition's image ends up under; the text itself when it
// does not parse (such an image was never pulled, and matches nothing).
std::string normalised(const std::string& image) {
  auto reference = ImageReference::parse(image);
  return reference ? reference->str() : image;
}

bool pulledByAgent(const runtime::ImageRecord& image) {
  auto it = image.labels.find(runtime::kLabelManagedBy);
  return it != image.labels.end() && it->second == runtime::kManagedByValue;
}

}  // namespace

Result<std::vector<runtime::ImageRecord>> ContainerdImageStore::listImages() {
  return containerd_.listImages();
}

Result<std::set<std::string>> ContainerdImageStore::imagesOfContainers() {
  auto containers = containerd_.listContainers();
  if (!containers) return fail(containers.error());
  std::set<std::string> out;
  for (const auto& c : *containers) {
    if (!c.image.empty()) out.insert(c.image);
  }
  return out;
}

Result<void> ContainerdImageStore::deleteImage(const std::string& name) {
  // Collected before the call returns, so the disk space is back by the next cycle.
  return containerd_.deleteImage(name, /*sync_gc=*/true);
}

Result<std::map<std::string, ImageUsageRecords::TimePoint>> StoredImageUsage::load() {
  auto stored = store_.imagesUsed();
  if (!stored) return fail(stored.error());
  std::map<std::string, TimePoint> out;
  for (const auto& image : *stored) {
    out.emplace(image.name, TimePoint(std::chrono::milliseconds(image.last_used_ms)));
  }
  return out;
}

Result<void> StoredImageUsage::record(const std::map<std::string, TimePoint>& last_used) {
  std::vector<state::ImageUsageRecord> records;
  records.reserve(last_used.size());
  for (const auto& [name, at] : last_used) {
    records.push_back(
        {name,
         std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count()});
  }
  return store_.recordImagesUsed(records);
}

Result<void> StoredImageUsage::forget(const std::vector<std::string>& names) {
  return store_.forgetImages(names);
}

ImageCleaner::ImageCleaner(ImageStore& store, ImageCleanupOptions options,
                           ImageUsageRecords* records)
    : store_(store), options_(std::move(options)), records_(records) {
  for (const auto& image : options_.exclude) exclude_.insert(normalised(image));
  if (!records_) return;
  auto loaded = records_->load();
  if (!loaded) {
    spdlog::warn(
        "image cleanup: could not read when images were last used: {}; each counts from its "
        "pull until a task uses it again",
        loaded.error().message);
    return;
  }
  last_used_ = std::move(*loaded);
}

ImageCleaner::~ImageCleaner() {
  stop();
}

ImageCleaner::TimePoint ImageCleaner::now() const {
  return options_.now ? options_.now() : std::chrono::system_clock::now();
}

void ImageCleaner::onSnapshot(const engine::TaskSnapshotPtr& task) {
  if (!task) return;
  std::set<std::string> images;
  for (const auto& c : task->containers) {
    images.insert(c.image_name.empty() ? normalised(c.image) : c.image_name);
  }
  const auto at = now();
  {
    std::lock_guard lock(mutex_);
    for (const auto& image : images) last_used_[image] = at;
    if (!task->removed) {
      in_use_[task->arn] = images;
      return;
    }
    in_use_.erase(task->arn);
  }
  // Kept only when the task goes: while it runs, a restart finds its images in use again.
  persist(images);
}

void ImageCleaner::persist(const std::set<std::string>& names) {
  if (!records_ || names.empty()) return;
  std::lock_guard write(records_mutex_);
  std::map<std::string, TimePoint> used;
  std::vector<std::string> gone;
  {
    std::lock_guard lock(mutex_);
    for (const auto& name : names) {
      auto it = last_used_.find(name);
      if (it != last_used_.end()) {
        used.emplace(name, it->second);
      } else {
        gone.push_back(name);
      }
    }
  }
  if (auto recorded = used.empty() ? Result<void>{} : records_->record(used); !recorded) {
    spdlog::warn("image cleanup: could not record when {} image(s) were last used: {}", used.size(),
                 recorded.error().message);
  }
  if (auto forgotten = gone.empty() ? Result<void>{} : records_->forget(gone); !forgotten) {
    spdlog::warn("image cleanup: could not forget {} image(s) containerd no longer has: {}",
                 gone.size(), forgotten.error().message);
  }
}

void ImageCleaner::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { loop(); });
}

void ImageCleaner::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ImageCleaner::loop() {
  spdlog::info(
      "image cleanup: every {} s, images unused and pulled at least {} s ago, up to {} per cycle",
      std::chrono::duration_cast<std::chrono::seconds>(options_.interval).count(),
      std::chrono::duration_cast<std::chrono::seconds>(options_.minimum_age).count(),
      options_.images_per_cycle);
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (wake_.wait_for(lock, options_.interval, [this] { return stopping_; })) return;
    }
    runCycle();
  }
}

ImageCleanupReport ImageCleaner::runCycle() {
  std::lock_guard cycle(cycle_mutex_);
  ImageCleanupReport report;
  auto images = store_.listImages();
  if (!images) {
    spdlog::warn("image cleanup: list images: {}; trying again next cycle", images.error().message);
    report.skipped = true;
    return report;
  }
  // Without knowing which containers exist nothing is safe to delete.
  auto of_containers = store_.imagesOfContainers();
  if (!of_containers) {
    spdlog::warn("image cleanup: list containers: {}; trying again next cycle",
                 of_containers.error().message);
    report.skipped = true;
    return report;
  }

  const auto at = now();
  struct Candidate {
    TimePoint last_used;
    std::string name;
  };
  std::vector<Candidate> candidates;
  // What the records are to be brought up to date on: images in use now, and what containerd
  // no longer has.
  std::set<std::string> changed;
  {
    std::lock_guard lock(mutex_);
    std::set<std::string> in_use = *of_containers;
    for (const auto& [arn, task_images] : in_use_)
      in_use.insert(task_images.begin(), task_images.end());
    for (const auto& image : in_use) last_used_[image] = at;

    std::set<std::string> present;
    for (const auto& image : *images) {
      present.insert(image.name);
      // In use now: a restart that finds it no longer in use (its task gone while the agent
      // was down) still knows it was used this recently.
      if (in_use.contains(image.name)) changed.insert(image.name);
      if (!pulledByAgent(image) || exclude_.contains(image.name) || in_use.contains(image.name))
        continue;
      const auto pulled = std::max(image.created_at, image.updated_at);
      if (at - pulled < options_.minimum_age) continue;
      auto used = last_used_.find(image.name);
      candidates.push_back(
          {used == last_used_.end() ? pulled : std::max(pulled, used->second), image.name});
    }
    // What containerd no longer has need not be remembered.
    std::erase_if(last_used_, [&](const auto& entry) {
      if (present.contains(entry.first) || in_use.contains(entry.first)) return false;
      changed.insert(entry.first);
      return true;
    });
  }
  persist(changed);
  changed.clear();
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.last_used != b.last_used ? a.last_used < b.last_used : a.name < b.name;
  });

  const size_t budget = static_cast<size_t>(std::max(1, options_.images_per_cycle));
  for (size_t i = 0; i < candidates.size() && i < budget; ++i) {
    const auto& name = candidates[i].name;
    {
      // A task may have started with it since the list was made.
      std::lock_guard lock(mutex_);
      if (std::any_of(in_use_.begin(), in_use_.end(),
                      [&](const auto& task) { return task.second.contains(name); }))
        continue;
    }
    if (auto deleted = store_.deleteImage(name); !deleted) {
      spdlog::warn("image cleanup: delete {}: {}", name, deleted.error().message);
      report.failed.push_back(name);
      continue;
    }
    spdlog::info(
        "image cleanup: deleted {} (unused for {} min)", name,
        std::chrono::duration_cast<std::chrono::minutes>(at - candidates[i].last_used).count());
    report.deleted.push_back(name);
    changed.insert(name);
    std::lock_guard lock(mutex_);
    last_used_.erase(name);
  }
  persist(changed);
  return report;
}

}  // namespace ecs::images
