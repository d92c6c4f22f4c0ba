#include "netns/allocation_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "agent/common/replace_file.h"

namespace ecs::netns {
namespace {

Error errnoError(int err, std::string_view what, const std::string& path) {
  ErrorCode code = ErrorCode::kInternal;
  if (err == ENOENT) code = ErrorCode::kNotFound;
  if (err == EACCES || err == EPERM || err == EROFS) code = ErrorCode::kFailedPrecondition;
  return Error{code, fmt::format("{} {}: {}", what, path, std::strerror(err))};
}

// Opens `path` and takes a flock of `operation` (LOCK_EX or LOCK_SH) on the inode that is still
// at `path` once the lock is held. An empty fd (no error) when the file is missing and `flags`
// has no O_CREAT.
Result<UniqueFd> openLocked(const std::string& path, int flags, int operation) {
  for (;;) {
    UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
    if (!fd) {
      if (errno == ENOENT && !(flags & O_CREAT)) return UniqueFd();
      return fail(errnoError(errno, "open", path));
    }
    while (::flock(fd.get(), operation) != 0) {
      if (errno != EINTR) return fail(errnoError(errno, "flock", path));
    }
    struct stat locked {};
    struct stat current {};
    if (::fstat(fd.get(), &locked) != 0) return fail(errnoError(errno, "stat", path));
    if (::stat(path.c_str(), &current) != 0) {
      if (errno == ENOENT) continue;  // removed while we waited: start over
      return fail(errnoError(errno, "stat", path));
    }
    // Replaced by a writer's rename while we waited for the lock: the lock we hold guards
    // nothing any more.
    if (locked.st_dev != current.st_dev || locked.st_ino != current.st_ino) continue;
    return fd;
  }
}

Result<std::string> readAll(int fd, const std::string& path) {
  std::string content;
  char buffer[16384];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errnoError(errno, "read", path));
    }
    if (n == 0) return content;
    content.append(buffer, static_cast<size_t>(n));
    offset += n;
  }
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<ProcessIdentity> processFromJson(const boost::json::object& record) {
  const boost::json::value* pid = record.if_contains("pid");
  const boost::json::value* start = record.if_contains("start_time");
  if (!pid || !start) return fail(ErrorCode::kDataLoss, "record without pid or start_time");
  boost::system::error_code pid_ec;
  boost::system::error_code start_ec;
  ProcessIdentity process{pid->to_number<int>(pid_ec), start->to_number<uint64_t>(start_ec)};
  if (pid_ec || start_ec || process.pid <= 0) {
    return fail(ErrorCode::kDataLoss, "record with a bad pid or start_time");
  }
  return process;
}

Result<void> parseOwners(std::string_view content, const OwnerRecordReader& each) {
  if (content.empty()) return {};
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(content, ec);
  if (ec) return fail(ErrorCode::kDataLoss, "not JSON: {}", ec.message());
  const boost::json::object* top = root.if_object();
  const boost::json::value* owners = top ? top->if_contains("owners") : nullptr;
  if (!owners || !owners->is_object()) return fail(ErrorCode::kDataLoss, "no \"owners\" object");
  for (const auto& [owner, value] : owners->get_object()) {
    const std::string name(owner);
    const boost::json::object* record = value.if_object();
    if (!record) return fail(ErrorCode::kDataLoss, "owner {}: not an object", name);
    auto process = processFromJson(*record);
    if (!process) return fail(process.error().wrap(fmt::format("owner {}", name)));
    if (auto read = each(name, *record, *process); !read) {
      return fail(read.error().wrap(fmt::format("owner {}", name)));
    }
  }
  return {};
}

void processToJson(const ProcessIdentity& process, boost::json::object& record) {
  record["pid"] = process.pid;
  record["start_time"] = process.start_time;
}

Result<void> AllocationFile::update(const Change& change) const {
  auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return fail(ErrorCode::kFailedPrecondition, "create directory {}: {}", parent.string(),
                  ec.message());
    }
  }
  auto fd = openLocked(path_, O_RDWR | O_CREAT, LOCK_EX);
  if (!fd) return fail(fd.error());
  auto content = readAll(fd->get(), path_);
  if (!content) return fail(content.error());
  auto next = change(*content);
  if (!next) return fail(next.error());
  if (*next == *content) return {};
  return replaceFile(path_, *next);
}

Result<std::string> AllocationFile::read() const {
  auto fd = openLocked(path_, O_RDONLY, LOCK_SH);
  if (!fd) return fail(fd.error());
  if (!*fd) return std::string();
  return readAll(fd->get(), path_);
}

}  // namespace ecs::netns
