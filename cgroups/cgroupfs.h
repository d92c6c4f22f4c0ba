// File operations on cgroupfs, and on the plain directory trees that stand in for it in tests.
// Every error names the path and the errno text. Internal to the cgroups module.
//
// The two differ in three ways, all decided by `statfs` (no test-only switches): on cgroupfs the
// kernel makes the control files, a missing one is an error, and rmdir takes them away with the
// directory; in a plain tree files are created on first write and removed before rmdir.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::cgroups::cgroupfs {

using Deadline = std::chrono::steady_clock::time_point;

// An Error for `errno` value `err`: "<what> <path>: <strerror>", with a code that fits the errno.
Error errnoError(int err, std::string_view what, const std::string& path);

// True if `path` is on a cgroup (v1) or cgroup2 filesystem.
bool isCgroupFs(const std::string& path);

bool exists(const std::string& path);
bool isDirectory(const std::string& path);  // follows symlinks

// A name that is safe as one cgroup directory: [A-Za-z0-9_.-], not starting with '.', ≤ 255 bytes.
bool isSafeName(std::string_view name);

Result<std::string> readFile(const std::string& path);
// Like readFile, but a missing file is nullopt rather than an error.
Result<std::optional<std::string>> readFileIfExists(const std::string& path);

// Writes `value` with a single write(2), as cgroupfs wants. `create`: make the file when missing
// (plain trees only; on cgroupfs O_CREAT turns a missing control file into EACCES).
Result<void> writeFile(const std::string& path, std::string_view value, bool create);

// mkdir(2) with mode 0755; an existing directory is fine. Returns true if this call created it.
Result<bool> makeDirectory(const std::string& path, std::string_view what);

// Removes the cgroup at `path` and every cgroup below it, deepest first. A missing cgroup is fine.
// rmdir that fails with EBUSY is retried until `deadline` (the kernel frees a cgroup shortly after
// its last process is reaped). `remove_files`: unlink the regular files and symlinks found (plain
// trees; on cgroupfs the control files go with the directory).
Result<void> removeCgroup(const std::string& path, bool remove_files, Deadline deadline);

// Names of the directories directly in `path` (symlinks not followed); a missing `path`: none.
Result<std::vector<std::string>> subdirectories(const std::string& path);

// The text of a file, or "" when it is missing (an optional stat file).
Result<std::string> readOptionalFile(const std::string& path);
// The number in a single-value file, or 0 when it is missing; kInternal if it is not a number.
Result<uint64_t> readCounter(const std::string& path);

// A limit file's value (memory.max, pids.max, cpu.cfs_quota_us ...): the number, or UINT64_MAX
// for no limit ("max", "-1") and for a missing file; kInternal if it is neither.
Result<uint64_t> readLimit(const std::string& path);

// A decimal unsigned integer, surrounding whitespace allowed.
std::optional<uint64_t> parseUint(std::string_view text);
// The value of `key` in a flat-keyed file ("key value" per line), if present and numeric.
std::optional<uint64_t> keyedValue(std::string_view text, std::string_view key);

}  // namespace ecs::cgroups::cgroupfs
