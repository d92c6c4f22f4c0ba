// replaceFile: the one way the agent rewrites a state or metadata file, so that a reader (another
// agent process, a container) and a crash only ever see the old content or the new, never a torn
// one.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace ecs {

// Writes `content` to `<path>.tmp` with exactly `mode` (not subject to the umask), fsyncs it,
// renames it over `path` and fsyncs the directory (best effort: the content is in place by
// then). The temporary file is removed on failure. Errors name the step and the file;
// ENOENT is kNotFound, EACCES/EPERM/EROFS kFailedPrecondition, anything else kInternal.
inline Result<void> replaceFile(const std::string& path, std::string_view content,
                                mode_t mode = 0644) {
  auto failure = [](int err, std::string_view what, const std::string& file) {
    ErrorCode code = ErrorCode::kInternal;
    if (err == ENOENT) code = ErrorCode::kNotFound;
    if (err == EACCES || err == EPERM || err == EROFS) code = ErrorCode::kFailedPrecondition;
    return Error{code, fmt::format("{} {}: {}", what, file, std::strerror(err))};
  };
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return fail(failure(errno, "create", tmp));
  auto abandon = [&](std::string_view what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(failure(err, what, tmp));
  };
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return abandon("write");
    content.remove_prefix(static_cast<size_t>(n));
  }
  if (::fchmod(fd, mode) != 0) return abandon("chmod");
  if (::fsync(fd) != 0) return abandon("fsync");
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(failure(err, "rename to", path));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return {};
}

}  // namespace ecs
