// The task directory as a task resource: <ECS_DATADIR>/tasks/<taskId>, with one directory per
// container for its output and health-check files. It is the first resource a task gets (the
// others may keep files in it) and the last to go. Removal never goes through a mount point: a
// volume left mounted under it (a cleanup that failed) keeps its contents.
#pragma once

#include <memory>
#include <string>

#include "agent/engine/task_resource.h"

namespace ecs::engine {

class TaskDirectoryFactory : public TaskResourceFactory {
 public:
  Result<std::unique_ptr<TaskResource>> resourceFor(const TaskInfo& task) override;
};

// Removes `dir` and everything under it except mount points and what lies beneath them.
void removeTaskDirectory(const std::string& dir);

}  // namespace ecs::engine
