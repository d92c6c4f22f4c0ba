#include "agent/common/fd_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace ecs {

namespace {

uint64_t fromRlim(rlim_t value) {
  return value == RLIM_INFINITY ? UINT64_MAX : static_cast<uint64_t>(value);
}

// The most any process may open (fs.nr_open); 1,048,576 is the kernel's default.
uint64_t nrOpen() {
  uint64_t value = 0;
  std::ifstream in("/proc/sys/fs/nr_open");
  if (in >> value && value > 0) return value;
  return 1024 * 1024;
}

}  // namespace

Result<FdLimit> fdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return fail(ErrorCode::kInternal, "getrlimit(RLIMIT_NOFILE): {}", std::strerror(errno));
  }
  return FdLimit{fromRlim(limit.rlim_cur), fromRlim(limit.rlim_max)};
}

Result<FdLimitChange> raiseFdLimit() {
  auto before = fdLimit();
  if (!before) return fail(before.error());
  FdLimitChange change{*before, *before};
  uint64_t target = before->hard == UINT64_MAX ? nrOpen() : before->hard;
  if (before->soft >= target) return change;
  rlimit limit{static_cast<rlim_t>(target),
               before->hard == UINT64_MAX ? RLIM_INFINITY : static_cast<rlim_t>(before->hard)};
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return fail(ErrorCode::kInternal, "setrlimit(RLIMIT_NOFILE, {}): {}", target,
                std::strerror(errno));
  }
  change.after.soft = target;
  return change;
}

}  // namespace ecs
