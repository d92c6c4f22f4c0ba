#include "cgroups/task_cgroup.h"

#include "cgroups/cgroup_v1.h"
#include "cgroups/cgroup_v2.h"
#include "cgroups/cgroupfs.h"

namespace ecs::cgroups {
namespace {

Result<void> checkOptions(const CgroupOptions& options) {
  if (!cgroupfs::isSafeName(options.parent)) {
    return fail(ErrorCode::kInvalidArgument,
                "cgroup parent {:?} is not a single safe path component", options.parent);
  }
  // The kernel's bounds for a CFS period.
  if (options.cpu_period < std::chrono::milliseconds(1) ||
      options.cpu_period > std::chrono::seconds(1)) {
    return fail(ErrorCode::kInvalidArgument, "cpu period {}us is outside [1000, 1000000]",
                options.cpu_period.count());
  }
  if (options.pids_limit < 0) {
    return fail(ErrorCode::kInvalidArgument, "task pids limit {} is negative", options.pids_limit);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<CgroupManager>> CgroupManager::create(const CgroupOptions& options) {
  if (auto ok = checkOptions(options); !ok) return fail(ok.error());
  if (!cgroupfs::isDirectory(options.root)) {
    return fail(ErrorCode::kFailedPrecondition, "cgroup root {} is not a directory", options.root);
  }
  if (cgroupfs::exists(options.root + "/cgroup.controllers")) return makeCgroupV2(options);
  auto hierarchies = discoverV1Hierarchies(options.root);
  if (!hierarchies) return fail(hierarchies.error());
  return makeCgroupV1(options, std::move(*hierarchies));
}

}  // namespace ecs::cgroups
