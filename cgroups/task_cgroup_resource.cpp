#include "cgroups/task_cgroup_resource.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace ecs::cgroups {
namespace {

std::string withoutTrailingSlash(std::string path) {
  while (path.ends_with('/')) path.pop_back();
  return path;
}

class TaskCgroup : public engine::TaskResource {
 public:
  TaskCgroup(CgroupManager& manager, const engine::TaskInfo& task)
      : manager_(manager), task_id_(task.id), limits_(taskLimits(*task.definition)) {}

  std::string_view name() const override { return "task cgroup"; }

  Result<void> create() override { return manager_.createTask(task_id_, limits_); }

  Result<void> recover() override {
    auto tasks = manager_.listTasks();
    if (!tasks) return fail(tasks.error());
    if (std::find(tasks->begin(), tasks->end(), task_id_) == tasks->end()) {
      return fail(ErrorCode::kNotFound, "the cgroup of task {} is gone", task_id_);
    }
    return {};
  }

  Result<void> contribute(const engine::ContainerInfo& container,
                          engine::ContainerResources& out) override {
    out.cgroups_path = manager_.containerCgroupsPath(task_id_, container.runtime_id);
    out.task_cgroups_path = withoutTrailingSlash(manager_.containerCgroupsPath(task_id_, ""));
    return {};
  }

  void inspectExit(const engine::ContainerInfo& container, engine::ContainerExit& exit) override {
    auto stats = manager_.stats(manager_.containerCgroupsPath(task_id_, container.runtime_id));
    if (stats && stats->oom_kills > 0) exit.oom_killed = true;
  }

  void cleanup() override {
    if (auto removed = manager_.removeTask(task_id_); !removed) {
      spdlog::warn("cleanup: {}", removed.error().message);
    }
  }

 private:
  CgroupManager& manager_;
  std::string task_id_;
  TaskLimits limits_;
};

}  // namespace

TaskLimits taskLimits(const engine::TaskDefinition& definition) {
  TaskLimits limits;
  limits.cpu_units = definition.cpu_units;
  if (definition.memory_mib) limits.memory_bytes = int64_t{*definition.memory_mib} << 20;
  for (const auto& c : definition.container_definitions) {
    limits.container_cpu_shares += std::max(c.cpu, 2);
  }
  return limits;
}

Result<std::unique_ptr<engine::TaskResource>> TaskCgroupFactory::resourceFor(
    const engine::TaskInfo& task) {
  return std::make_unique<TaskCgroup>(manager_, task);
}

}  // namespace ecs::cgroups
