// VolumeState: every host mount the volume layer has made, persisted as JSON under the volumes
// root (state.json) so that an agent restarted after a crash can find and release the mounts of
// tasks that no longer exist (TaskVolumesFactory::sweep). A mount is recorded before it is made
// and forgotten after it is gone, so a crash in between leaves a record, never an orphan mount.
// Not thread-safe: its owner (TaskVolumesFactory) serialises access.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/common/process_identity.h"
#include "agent/common/result.h"

namespace ecs::volumes {

struct TrackedMount {
  std::string target;              // absolute host path of the mount point
  std::string volume;              // the task definition's volume name, for messages
  std::string kind;                // "efs", "local" (a docker volume's mount), "shared"
  std::vector<std::string> tasks;  // IDs of the tasks using it; released when none is left
};

// What the file records of one task: the agent process that answers for its volumes. A task
// is recorded from the start of its create() until its cleanup(); a restarted agent adopts it
// (recover()), and the sweep takes the tasks whose process is gone (deadOwners()).
using TaskOwners = std::map<std::string, ProcessIdentity>;  // task ID -> agent process

class VolumeState {
 public:
  // Reads `path`; a missing file is an empty state. Unreadable or malformed: an error (the
  // caller starts empty and relies on the mount-table scan of sweep()).
  static Result<VolumeState> load(std::string path);
  explicit VolumeState(std::string path) : path_(std::move(path)) {}

  const std::vector<TrackedMount>& mounts() const { return mounts_; }
  TrackedMount* find(const std::string& target);
  void add(TrackedMount mount);
  void remove(const std::string& target);

  const TaskOwners& owners() const { return owners_; }
  void setOwner(const std::string& task_id, const ProcessIdentity& process) {
    owners_[task_id] = process;
  }
  void removeOwner(const std::string& task_id) { owners_.erase(task_id); }
  // Writes the file atomically (temporary file, fsync, rename).
  Result<void> save() const;

  std::string toJson() const;
  // A file without "owners" (written before tasks were recorded) has none.
  struct Parsed {
    std::vector<TrackedMount> mounts;
    TaskOwners owners;
  };
  static Result<Parsed> parse(const std::string& json);

 private:
  std::string path_;
  std::vector<TrackedMount> mounts_;
  TaskOwners owners_;
};

}  // namespace ecs::volumes
