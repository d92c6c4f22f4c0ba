// ProcessIdentity: an agent process as records on disk name it — its pid and its start time —
// so that what a crashed agent left can be told apart from what a live one holds, across pid
// reuse. Shared by the network allocation stores and the volume state.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace ecs {

// A process: its pid and its start time (field 22 of /proc/<pid>/stat, in clock ticks since
// boot). The start time makes the pair unique across pid reuse.
struct ProcessIdentity {
  int pid = 0;
  uint64_t start_time = 0;

  bool operator==(const ProcessIdentity&) const = default;
};

// The calling process (read each time: a forked child is a different process).
ProcessIdentity currentProcess();
// The start time of process `pid`; nullopt if there is no such process or it has exited and
// not yet been reaped (a zombie holds nothing).
std::optional<uint64_t> processStartTime(int pid);
// Whether `process` is still running: same pid, same start time, not a zombie.
bool isAlive(const ProcessIdentity& process);
// When process `pid` started, on the wall clock: the boot time (/proc/stat btime, whole
// seconds) plus its start time. To the second; nullopt as processStartTime().
std::optional<std::chrono::system_clock::time_point> processStartedAt(int pid);

}  // namespace ecs
