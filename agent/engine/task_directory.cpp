#include "agent/engine/task_directory.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "agent/common/mount_info.h"

namespace ecs::engine {
namespace fs = std::filesystem;
namespace {

// Mount points at or under `dir`.
std::vector<std::string> mountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& point : currentMountPoints()) {
    if (point == dir || point.starts_with(dir + "/")) out.push_back(std::move(point));
  }
  return out;
}

Result<void> makeDirectory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(ErrorCode::kInternal, "create {}: {}", dir, ec.message());
  return {};
}

class TaskDirectory : public TaskResource {
 public:
  explicit TaskDirectory(std::string dir) : dir_(std::move(dir)) {}

  std::string_view name() const override { return "task directory"; }

  Result<void> create() override { return makeDirectory(dir_); }

  Result<void> recover() override {
    std::error_code ec;
    if (!fs::is_directory(dir_, ec)) {
      return fail(ErrorCode::kNotFound, "{} is gone", dir_);
    }
    return {};
  }

  Result<void> contribute(const ContainerInfo& container, ContainerResources&) override {
    return makeDirectory(container.dir);
  }

  void cleanup() override { removeTaskDirectory(dir_); }

 private:
  std::string dir_;
};

}  // namespace

Result<std::unique_ptr<TaskResource>> TaskDirectoryFactory::resourceFor(const TaskInfo& task) {
  return std::make_unique<TaskDirectory>(task.dir);
}

void removeTaskDirectory(const std::string& dir) {
  auto mounts = mountsUnder(dir);
  std::error_code ec;
  if (mounts.empty()) {
    fs::remove_all(dir, ec);
    if (ec) spdlog::warn("cleanup: remove {}: {}", dir, ec.message());
    return;
  }
  spdlog::warn("cleanup: {} still has {} mount(s) under it (first {}); leaving them", dir,
               mounts.size(), mounts.front());
  std::function<bool(const fs::path&)> remove = [&](const fs::path& path) -> bool {
    if (std::find(mounts.begin(), mounts.end(), path.string()) != mounts.end()) return false;
    bool emptied = true;
    if (fs::is_directory(fs::symlink_status(path, ec))) {
      for (const auto& entry : fs::directory_iterator(path, ec)) emptied &= remove(entry.path());
    }
    if (emptied) fs::remove(path, ec);
    return emptied;
  };
  remove(dir);
}

}  // namespace ecs::engine
