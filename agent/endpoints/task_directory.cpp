#include "agent/endpoints/task_directory.h"

namespace ecs::endpoints {

void TaskDirectory::update(const engine::TaskSnapshotPtr& task) {
  if (!task) return;
  std::unique_lock lock(mutex_);
  if (task->removed) {
    tasks_.erase(task->arn);
    std::erase_if(endpoints_, [&](const auto& kv) { return kv.second.first == task->arn; });
    return;
  }
  auto entry = std::make_shared<Entry>();
  entry->snapshot = task;
  // A fresh entry, not a cleared cache: a reader holding the old entry keeps a consistent pair.
  tasks_.insert_or_assign(task->arn, std::move(entry));
}

void TaskDirectory::registerEndpoint(std::string endpoint_id, std::string task_arn,
                                     std::string container_name) {
  std::unique_lock lock(mutex_);
  endpoints_.insert_or_assign(std::move(endpoint_id),
                              std::pair{std::move(task_arn), std::move(container_name)});
}

void TaskDirectory::forgetEndpoints(std::string_view task_arn) {
  std::unique_lock lock(mutex_);
  std::erase_if(endpoints_, [&](const auto& kv) { return kv.second.first == task_arn; });
}

std::optional<ContainerRef> TaskDirectory::byEndpoint(std::string_view endpoint_id) const {
  std::shared_lock lock(mutex_);
  auto it = endpoints_.find(std::string(endpoint_id));
  if (it == endpoints_.end()) return std::nullopt;
  auto task = tasks_.find(it->second.first);
  if (task == tasks_.end()) return std::nullopt;
  return ContainerRef{task->second->snapshot, it->second.second};
}

engine::TaskSnapshotPtr TaskDirectory::byArn(std::string_view task_arn) const {
  std::shared_lock lock(mutex_);
  auto it = tasks_.find(task_arn);
  return it == tasks_.end() ? nullptr : it->second->snapshot;
}

engine::TaskSnapshotPtr TaskDirectory::byIp(std::string_view ip) const {
  if (ip.empty()) return nullptr;
  std::shared_lock lock(mutex_);
  for (const auto& [arn, entry] : tasks_) {
    for (const auto& c : entry->snapshot->containers) {
      if (c.resources.ip_address == ip) return entry->snapshot;
    }
  }
  return nullptr;
}

Result<ContainerRef> TaskDirectory::byContainerId(std::string_view id) const {
  if (id.empty()) return fail(ErrorCode::kNotFound, "no container id");
  std::shared_lock lock(mutex_);
  std::optional<ContainerRef> found;
  for (const auto& [arn, entry] : tasks_) {
    for (const auto& c : entry->snapshot->containers) {
      if (c.runtime_id.empty()) continue;
      if (c.runtime_id == id) return ContainerRef{entry->snapshot, c.name};
      if (id.size() <= 12 && c.runtime_id.starts_with(id)) {
        if (found) {
          return fail(ErrorCode::kInvalidArgument, "multiple containers match short id {}", id);
        }
        found = ContainerRef{entry->snapshot, c.name};
      }
    }
  }
  if (!found) return fail(ErrorCode::kNotFound, "no container with id {}", id);
  return *found;
}

std::vector<engine::TaskSnapshotPtr> TaskDirectory::tasks() const {
  std::shared_lock lock(mutex_);
  std::vector<engine::TaskSnapshotPtr> out;
  out.reserve(tasks_.size());
  for (const auto& [arn, entry] : tasks_) out.push_back(entry->snapshot);
  return out;
}

std::shared_ptr<const std::string> TaskDirectory::cachedBody(
    const engine::TaskSnapshotPtr& task, const std::string& key,
    const std::function<std::string()>& render) const {
  std::shared_ptr<Entry> entry;
  {
    std::shared_lock lock(mutex_);
    auto it = tasks_.find(task->arn);
    if (it != tasks_.end() && it->second->snapshot == task) entry = it->second;
  }
  if (!entry) return std::make_shared<const std::string>(render());
  {
    std::lock_guard lock(entry->cache_mutex);
    if (auto it = entry->cache.find(key); it != entry->cache.end()) return it->second;
  }
  // Rendered outside the lock; two racing readers render twice, harmlessly.
  auto body = std::make_shared<const std::string>(render());
  std::lock_guard lock(entry->cache_mutex);
  return entry->cache.try_emplace(key, body).first->second;
}

}  // namespace ecs::endpoints
