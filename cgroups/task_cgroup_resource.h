// The task cgroup as a task resource: `/ecs/<taskId>` with the task's cpu and memory limits,
// made before any container and removed after the last. Each container is placed in it
// (ContainerResources::cgroups_path), and an exit is checked against the cgroup's OOM-kill
// count, which catches kills the runtime's OOM event missed.
#pragma once

#include <memory>

#include "agent/engine/task_resource.h"
#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {

// The limits a task definition asks of its task cgroup.
TaskLimits taskLimits(const engine::TaskDefinition& definition);

class TaskCgroupFactory : public engine::TaskResourceFactory {
 public:
  // `manager` outlives the factory and every resource it makes.
  explicit TaskCgroupFactory(CgroupManager& manager) : manager_(manager) {}
  Result<std::unique_ptr<engine::TaskResource>> resourceFor(const engine::TaskInfo& task) override;

 private:
  CgroupManager& manager_;
};

}  // namespace ecs::cgroups
