// The process's descriptor limit (RLIMIT_NOFILE). The agent raises its soft limit to the hard
// limit at start, as Go programs like the real agent do, so that a host with many tasks does not
// run out at the distribution's default of 1,024; servers size their connection caps from what
// the limit then is, keeping a reserve for the agent's own files and sockets.
#pragma once

#include <cstdint>

#include "agent/common/result.h"

namespace ecs {

struct FdLimit {
  uint64_t soft = 0;
  uint64_t hard = 0;  // UINT64_MAX for "unlimited"
};

// The current soft and hard limits.
Result<FdLimit> fdLimit();

// Raises the soft limit to the hard limit (to the kernel's fs.nr_open when the hard limit is
// unlimited) and returns the limits before and after. Never lowers the soft limit.
struct FdLimitChange {
  FdLimit before;
  FdLimit after;
};
Result<FdLimitChange> raiseFdLimit();

}  // namespace ecs
