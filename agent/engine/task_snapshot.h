// TaskSnapshot: an immutable picture of one task as the engine knows it, published after every
// change. Readers on other threads (the metadata and introspection endpoints, later the state
// store) hold a shared_ptr to the last one they were given and never touch engine state.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/engine/task_resource.h"

namespace ecs::engine {

enum class ContainerStatus { kNone, kManifestPulled, kPulled, kCreated, kRunning, kStopped };
enum class HealthStatus { kUnknown, kHealthy, kUnhealthy };

std::string_view toString(ContainerStatus status);
std::string_view toString(HealthStatus status);

struct ContainerSnapshot {
  using TimePoint = std::chrono::system_clock::time_point;

  std::string name;
  std::string runtime_id;  // containerd container ID (Docker ID in the endpoints' wire formats)
  std::string image;       // as in the definition
  std::string image_id;    // "sha256:..." of the image config; empty until pulled
  std::string image_name;  // the containerd image record it runs from; empty until pulled
  ContainerStatus known = ContainerStatus::kNone;
  ContainerStatus desired = ContainerStatus::kRunning;
  std::optional<int> exit_code;
  std::string reason;
  bool essential = true;
  std::map<std::string, std::string> labels;  // the containerd container's labels
  std::optional<TimePoint> created_at;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
  int cpu = 0;
  std::optional<int> memory_mib;
  std::optional<int> memory_reservation_mib;
  HealthStatus health = HealthStatus::kUnknown;
  std::string health_output;
  std::optional<TimePoint> health_checked_at;
  int restart_count = 0;
  std::string log_driver;
  std::map<std::string, std::string> log_options;
  std::string cgroup_path;  // the container's cgroup relative to each hierarchy's root; may be ""
  ContainerResources resources;  // network, ports, env and mounts the task's resources gave it
};

struct TaskSnapshot {
  using TimePoint = std::chrono::system_clock::time_point;

  std::string arn;
  std::string id;
  std::string cluster;
  std::string family;
  int revision = 0;
  std::string task_role_arn;
  std::string execution_role_arn;
  std::string network_mode;
  ContainerStatus known = ContainerStatus::kNone;
  ContainerStatus desired = ContainerStatus::kRunning;
  std::string stop_reason;
  std::optional<int> cpu_units;
  std::optional<int> memory_mib;
  std::optional<TimePoint> pull_started_at;
  std::optional<TimePoint> pull_stopped_at;
  std::optional<TimePoint> started_at;  // first RUNNING
  std::optional<TimePoint> stopped_at;
  std::string cgroup_path;  // the task cgroup relative to each hierarchy's root ("/ecs/<id>")
  bool removed = false;     // the last snapshot of a task the engine has cleaned up and forgotten
  std::vector<ContainerSnapshot> containers;

  const ContainerSnapshot* container(std::string_view name) const {
    for (const auto& c : containers) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }
};

using TaskSnapshotPtr = std::shared_ptr<const TaskSnapshot>;

}  // namespace ecs::engine
