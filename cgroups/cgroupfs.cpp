#include "cgroups/cgroupfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>
#include <thread>

namespace ecs::cgroups::cgroupfs {
namespace {

ErrorCode codeFor(int err) {
  switch (err) {
    case ENOENT:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case EINVAL:
    case ERANGE:
      return ErrorCode::kInvalidArgument;
    case EACCES:
    case EPERM:
    case EBUSY:
    case EROFS:
    case ENOTDIR:
    case EISDIR:
    case ENOSPC:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kInternal;
  }
}

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Closes a directory stream when it goes out of scope.
class Dir {
 public:
  explicit Dir(DIR* dir) : dir_(dir) {}
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  ~Dir() {
    if (dir_ != nullptr) ::closedir(dir_);
  }
  DIR* get() const { return dir_; }

 private:
  DIR* dir_;
};

struct Entry {
  std::string name;
  bool directory = false;
};

// The entries of a directory except . and .., with whether each is a directory (not following
// symlinks). A missing directory yields ENOENT as an error with code kNotFound.
Result<std::vector<Entry>> listDirectory(const std::string& path) {
  Dir dir(::opendir(path.c_str()));
  if (dir.get() == nullptr) return fail(errnoError(errno, "list", path));
  std::vector<Entry> entries;
  errno = 0;
  while (const dirent* ent = ::readdir(dir.get())) {
    const std::string_view name = ent->d_name;
    if (name == "." || name == "..") continue;
    Entry entry{std::string(name)};
    if (ent->d_type == DT_UNKNOWN) {
      struct stat st {};
      const auto child = path + "/" + entry.name;
      if (::lstat(child.c_str(), &st) == 0) entry.directory = S_ISDIR(st.st_mode);
    } else {
      entry.directory = ent->d_type == DT_DIR;
    }
    entries.push_back(std::move(entry));
    errno = 0;
  }
  if (errno != 0) return fail(errnoError(errno, "list", path));
  return entries;
}

// rmdir, retrying EBUSY until the deadline with a growing pause. ENOENT counts as removed.
Result<void> removeDirectory(const std::string& path, Deadline deadline) {
  auto pause = std::chrono::milliseconds(10);
  while (true) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return {};
    const int err = errno;
    if (err != EBUSY || std::chrono::steady_clock::now() + pause > deadline) {
      return fail(errnoError(err, "remove cgroup", path));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace

Error errnoError(int err, std::string_view what, const std::string& path) {
  return Error{codeFor(err),
               fmt::format("{} {}: {}", what, path, std::generic_category().message(err))};
}

bool isCgroupFs(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return false;
  return st.f_type == CGROUP_SUPER_MAGIC || st.f_type == CGROUP2_SUPER_MAGIC;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

bool isDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool isSafeName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

Result<std::optional<std::string>> readFileIfExists(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return fail(errnoError(errno, "read", path));
  }
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errnoError(errno, "read", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return std::optional<std::string>(std::move(out));
}

Result<std::string> readFile(const std::string& path) {
  auto content = readFileIfExists(path);
  if (!content) return fail(content.error());
  if (!*content) return fail(errnoError(ENOENT, "read", path));
  return std::move(**content);
}

Result<void> writeFile(const std::string& path, std::string_view value, bool create) {
  const int flags = O_WRONLY | O_TRUNC | O_CLOEXEC | (create ? O_CREAT : 0);
  Fd fd(::open(path.c_str(), flags, 0644));
  if (fd.get() < 0) return fail(errnoError(errno, fmt::format("write {} to", value), path));
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(errnoError(errno, fmt::format("write {} to", value), path));
  if (static_cast<size_t>(n) != value.size()) {
    return fail(ErrorCode::kInternal, "write {} to {}: short write ({} of {} bytes)", value, path,
                n, value.size());
  }
  return {};
}

Result<bool> makeDirectory(const std::string& path, std::string_view what) {
  if (::mkdir(path.c_str(), 0755) == 0) return true;
  if (errno == EEXIST && isDirectory(path)) return false;
  return fail(errnoError(errno, what, path));
}

Result<void> removeCgroup(const std::string& path, bool remove_files, Deadline deadline) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fail(errnoError(errno, "remove cgroup", path));
  }
  if (!S_ISDIR(st.st_mode)) return fail(errnoError(ENOTDIR, "remove cgroup", path));

  auto entries = listDirectory(path);
  if (!entries) {
    if (entries.error().code == ErrorCode::kNotFound) return {};
    return fail(entries.error());
  }
  for (const auto& entry : *entries) {
    const auto child = path + "/" + entry.name;
    if (entry.directory) {
      if (auto removed = removeCgroup(child, remove_files, deadline); !removed) return removed;
    } else if (remove_files && ::unlink(child.c_str()) != 0 && errno != ENOENT) {
      return fail(errnoError(errno, "remove", child));
    }
  }
  return removeDirectory(path, deadline);
}

Result<std::vector<std::string>> subdirectories(const std::string& path) {
  auto entries = listDirectory(path);
  if (!entries) {
    if (entries.error().code == ErrorCode::kNotFound) return std::vector<std::string>();
    return fail(entries.error());
  }
  std::vector<std::string> names;
  for (auto& entry : *entries) {
    if (entry.directory) names.push_back(std::move(entry.name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> readOptionalFile(const std::string& path) {
  auto content = readFileIfExists(path);
  if (!content) return fail(content.error());
  return content->value_or("");
}

Result<uint64_t> readCounter(const std::string& path) {
  auto content = readFileIfExists(path);
  if (!content) return fail(content.error());
  if (!*content) return 0;
  auto value = parseUint(**content);
  if (!value) return fail(ErrorCode::kInternal, "parse {}: not a number: {:?}", path, **content);
  return *value;
}

Result<uint64_t> readLimit(const std::string& path) {
  auto content = readFileIfExists(path);
  if (!content) return fail(content.error());
  if (!*content) return UINT64_MAX;
  if (auto value = parseUint(**content)) return *value;
  const auto& text = **content;
  const auto begin = text.find_first_not_of(" \t\n");
  const auto end = text.find_last_not_of(" \t\n");
  const auto word = begin == std::string::npos
                        ? std::string_view()
                        : std::string_view(text).substr(begin, end - begin + 1);
  if (word == "max" || word == "-1") return UINT64_MAX;
  return fail(ErrorCode::kInternal, "parse {}: not a limit: {:?}", path, text);
}

std::optional<uint64_t> parseUint(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t\n");
  if (begin == std::string_view::npos) return std::nullopt;
  const auto end = text.find_last_not_of(" \t\n");
  text = text.substr(begin, end - begin + 1);
  uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<uint64_t> keyedValue(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    const auto eol = text.find('\n');
    const auto line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ') {
      return parseUint(line.substr(key.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace ecs::cgroups::cgroupfs
