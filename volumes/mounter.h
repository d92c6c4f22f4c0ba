// Mounter: the volume layer's only door to the kernel's mount table — mount(2), umount2(2), the
// mount table as /proc/self/mountinfo shows it, and running an external mount command (EFS,
// NFS, any `mount -t` type). Behind an interface so the volume logic is unit-tested with a fake;
// SystemMounter is the real one, tested as root.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "agent/common/mount_info.h"
#include "agent/common/result.h"

namespace ecs::volumes {

class Mounter {
 public:
  virtual ~Mounter() = default;
  // mount(2). `flags` are MS_* flags; `data` the filesystem-specific options ("size=64m").
  virtual Result<void> mount(const std::string& source, const std::string& target,
                             const std::string& fstype, unsigned long flags,
                             const std::string& data) = 0;
  // umount2(2) with MNT_DETACH when `lazy`. Not mounted: kNotFound.
  virtual Result<void> unmount(const std::string& target, bool lazy) = 0;
  // Runs argv (argv[0] looked up on PATH), waiting at most `timeout`. A non-zero exit is an
  // error whose message carries the command's stderr (or stdout when stderr is empty).
  virtual Result<void> run(const std::vector<std::string>& argv,
                           std::chrono::milliseconds timeout) = 0;
  // Every mount point, decoded, in mount order (a path appears more than once when stacked).
  virtual std::vector<std::string> mountPoints() = 0;
};

// The kernel's mount(2) and /proc/self/mountinfo; commands run with posix_spawn.
std::unique_ptr<Mounter> makeSystemMounter();

// Mount points from /proc/self/mountinfo-formatted text (agent/common/mount_info.h).
using ecs::parseMountInfo;

// MS_* flags and the remaining data string for a comma-separated option list as mount(8) and
// Docker's local driver read it: "ro,nosuid,size=64m" -> MS_RDONLY|MS_NOSUID, "size=64m".
struct MountFlags {
  unsigned long flags = 0;
  std::string data;
};
MountFlags parseMountOptions(const std::string& options);

// True when `path` or anything below it is a mount point in `mount_points`.
bool hasMountAtOrBelow(const std::vector<std::string>& mount_points, const std::string& path);

}  // namespace ecs::volumes
