// The volume layer: a task's `volumes` made real on the host and handed to its containers as
// bind mounts, as a TaskResource the engine drives (create / contribute / cleanup).
//
//   host.sourcePath          bind of the host path (created 0755 if missing), untouched after
//   host {} / no config      <root>/task/<taskId>/<name>, removed at task cleanup
//   docker, scope task       the same directory; driverOpts mount a file system on it
//   docker, scope shared     <root>/shared/<name>/data (+ volume.json), reused by name, never
//                            removed; its driverOpts mount lives while a task uses it
//   efs                      mounted once per task at <root>/efs/<taskId>/<name> (efs.h)
//
// Everything mounted lives under the volumes root, never under the task directory the engine
// removes. Every host mount is recorded in VolumeState before it is made; cleanup() unmounts
// before removing and never recurses into a directory that still has a mount below it. Each
// task is recorded with the agent process that answers for it, from create() until cleanup();
// recover(), in a restarted agent, checks what create() made is still there and adopts the task.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/engine/task_resource.h"
#include "volumes/efs.h"
#include "volumes/mounter.h"
#include "volumes/volume_state.h"

namespace ecs::volumes {

struct VolumesOptions {
  std::string root = "/var/lib/ecs/data/volumes";  // <ECS_DATADIR>/volumes
  // ECS_EFS_MOUNT_COMMAND, split on spaces ("mount", "/usr/local/bin/helper --flag").
  std::vector<std::string> efs_mount_command = {"mount"};
  // Docker local-driver volumes of a type other than tmpfs or bind ("type=nfs", "type=ext4").
  std::vector<std::string> mount_command = {"mount"};
  // Whether amazon-efs-utils is installed; unset: efsUtilsInstalled() (mount.efs on the PATH dirs).
  std::function<bool()> efs_utils_installed;
  std::string region;  // AWS_DEFAULT_REGION / the instance's region
  std::string dns_suffix = "amazonaws.com";
  // The task's credentials relative URI ("/v2/credentials/<id>") for efs-utils' awscredsuri=.
  // Unset or empty: `iam` alone, and efs-utils uses its default chain (the instance role).
  std::function<std::string(const engine::TaskInfo&)> credentials_relative_uri;
  // ECS_SHARED_VOLUME_MATCH_FULL_CONFIG: an existing shared volume must match driver, opts and
  // labels, not only the name.
  bool shared_volume_match_full_config = false;
  std::chrono::milliseconds mount_timeout{std::chrono::minutes(2)};
};

// One container's view of a task volume, after volumesFrom.
struct ResolvedMount {
  std::string volume;  // sourceVolume
  std::string container_path;
  bool read_only = false;
};

// `container`'s mountPoints, then those it gets through volumesFrom, transitively: a read-only
// volumesFrom makes everything it brings read-only. A path already mounted wins (own
// mountPoints first, then volumesFrom in order). Cycles and unknown containers are errors.
Result<std::vector<ResolvedMount>> resolveContainerMounts(
    const engine::TaskDefinition& definition, const engine::ContainerDefinition& container);

// How a Docker `local` driver volume is made from its driverOpts (Docker's own rules: keys
// type, device, o; no options: a plain directory).
struct LocalVolumePlan {
  enum class Kind { kDirectory, kSyscall, kCommand };
  Kind kind = Kind::kDirectory;
  std::string source;       // device
  std::string fstype;       // "tmpfs", "none" (bind), "nfs", ...
  unsigned long flags = 0;  // kSyscall
  std::string data;         // kSyscall
  std::string options;      // kCommand: the raw `o`
};
Result<LocalVolumePlan> planLocalVolume(const engine::DockerVolumeConfiguration& config);

class TaskVolumes;

class TaskVolumesFactory final : public engine::TaskResourceFactory {
 public:
  // Creates the root and loads the state. `mounter` null: the system's. The factory must
  // outlive every resource it made (the engine's lifetime).
  static Result<std::unique_ptr<TaskVolumesFactory>> create(VolumesOptions options,
                                                            std::unique_ptr<Mounter> mounter = {});

  Result<std::unique_ptr<engine::TaskResource>> resourceFor(const engine::TaskInfo& task) override;

  // At agent start: releases every mount and directory that belongs to a task not in
  // `live_task_ids` (from the state file and from the mount table under the root), and shared
  // volume mounts no live task uses. Returns how many mounts it released; logs what it could not.
  int sweep(const std::set<std::string>& live_task_ids);

  std::vector<TrackedMount> trackedMounts();

  // The tasks whose volumes an agent process that is gone answers for (pid + start time, as
  // recorded from create() until cleanup()), releasing nothing. A restarted agent asks this
  // before any sweep; recover() makes the calling process answer for a task, so that it is no
  // longer among them.
  std::vector<std::string> deadOwners();
  // Every task recorded, whatever its agent process.
  std::vector<std::string> recordedTasks();
  const VolumesOptions& options() const { return options_; }

 private:
  friend class TaskVolumes;
  TaskVolumesFactory(VolumesOptions options, std::unique_ptr<Mounter> mounter, VolumeState state);

  // Records then mounts; on failure forgets the record. Called without mu_ held.
  Result<void> mountTracked(const TrackedMount& record, const std::function<Result<void>()>& make);
  // Makes the calling process answer for `task_id` (recorded and saved).
  void recordOwner(const std::string& task_id);
  bool ownerOf(const std::string& task_id);
  // Whether the state records a mount on `target` used by `task_id`.
  bool tracksMountFor(const std::string& target, const std::string& task_id);
  // Drops `task_id` from every record and the owners; unmounts those nobody uses any more.
  void releaseTask(const std::string& task_id);
  // Unmounts everything at or below `target`, deepest first. False if something stayed.
  bool unmountAll(const std::string& target);
  // Removes `path` unless a mount is at or below it.
  bool removeUnmounted(const std::string& path);
  void saveLocked();

  VolumesOptions options_;
  std::unique_ptr<Mounter> mounter_;
  std::mutex shared_mu_;  // creating, finding and mounting shared volumes; taken before mu_
  std::mutex mu_;         // state_
  VolumeState state_;
};

}  // namespace ecs::volumes
