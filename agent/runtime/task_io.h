// Where a task's (or exec'd process's) stdout and stderr go, as the URIs the runc shim takes.
//
// containerd 1.6's shim honours `file://PATH` only for stdout: it sends stderr to the same file
// and ignores the stderr URI. Output goes through a `binary://` logger: `<shell> -c '<script>'`
// started by the shim with the container's stdout and stderr pipes on fds 3 and 4 (and its
// readiness pipe on fd 5). With a log writer binary (the agent itself), the script execs
// `<writer> log-writer ...`, which keeps each file under its OutputLimits (see log_writer.h), one
// file for both streams included; without one, it appends each stream to its file with `cat`,
// unbounded (for tools and tests that run the client without the agent), one file for both
// included: never a `file://` URI, whose two streams were seen to lose each other's lines.
// The logger belongs to the shim, so output keeps flowing across agent restarts.
#pragma once

#include <string>

#include "agent/common/result.h"
#include "agent/runtime/log_writer.h"

namespace ecs::runtime {

struct TaskIo {
  std::string stdout_uri;  // both empty: no output at all (the shim's null IO)
  std::string stderr_uri;
};

// Paths must be absolute; either may be empty (that stream is discarded). Creates the files'
// parent directories. `log_writer`: absolute path of the agent binary, or empty (`cat`).
Result<TaskIo> makeTaskIo(const std::string& stdout_path, const std::string& stderr_path,
                          const std::string& logger_shell, const std::string& log_writer = "",
                          const OutputLimits& limits = {});

}  // namespace ecs::runtime
