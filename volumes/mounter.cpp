#include "volumes/mounter.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

extern char** environ;

namespace ecs::volumes {

namespace {

// Closes an fd on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

std::string trimOutput(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  constexpr size_t kMax = 2000;
  if (text.size() > kMax) text = text.substr(0, kMax) + "...";
  return text;
}

class SystemMounter final : public Mounter {
 public:
  Result<void> mount(const std::string& source, const std::string& target,
                     const std::string& fstype, unsigned long flags,
                     const std::string& data) override {
    if (::mount(source.empty() ? nullptr : source.c_str(), target.c_str(),
                fstype.empty() ? nullptr : fstype.c_str(), flags,
                data.empty() ? nullptr : data.c_str()) != 0) {
      int err = errno;
      return fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kFailedPrecondition,
                  "mount {} on {} (type {:?}, options {:?}): {}", source, target, fstype, data,
                  std::strerror(err));
    }
    return {};
  }

  Result<void> unmount(const std::string& target, bool lazy) override {
    if (::umount2(target.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      int err = errno;
      return fail(
          err == EINVAL || err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kFailedPrecondition,
          "unmount {}: {}", target, std::strerror(err));
    }
    return {};
  }

  Result<void> run(const std::vector<std::string>& argv,
                   std::chrono::milliseconds timeout) override {
    if (argv.empty()) return fail(ErrorCode::kInvalidArgument, "empty mount command");
    int out_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
      return fail(ErrorCode::kInternal, "pipe: {}", std::strerror(errno));
    }
    Fd read_end(out_pipe[0]);
    Fd write_end(out_pipe[1]);
    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
      return fail(ErrorCode::kInternal, "pipe: {}", std::strerror(errno));
    }
    Fd err_read(err_pipe[0]);
    Fd err_write(err_pipe[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own process group, so a timeout kills the helper and whatever it started.
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);

    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    write_end.reset();
    err_write.reset();
    if (rc != 0) {
      return fail(ErrorCode::kFailedPrecondition, "run {}: {}", argv[0], std::strerror(rc));
    }

    std::string out, err;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    bool timed_out = false;
    std::array<pollfd, 2> fds{pollfd{read_end.get(), POLLIN, 0}, pollfd{err_read.get(), POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        break;
      }
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buffer[4096];
        ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
        if (got > 0) {
          (i == 0 ? out : err).append(buffer, static_cast<size_t>(got));
        } else if (got == 0 || errno != EINTR) {
          fds[i].fd = -1;
          --open_fds;
        }
      }
    }
    if (timed_out) ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
      return fail(ErrorCode::kUnavailable, "{} timed out after {} ms", argv[0], timeout.count());
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    std::string detail = trimOutput(err.empty() ? out : err);
    std::string how = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                        : fmt::format("signal {}", WTERMSIG(status));
    return fail(ErrorCode::kFailedPrecondition, "{}{}{}", how, detail.empty() ? "" : ": ", detail);
  }

  std::vector<std::string> mountPoints() override { return currentMountPoints(); }
};

}  // namespace

std::unique_ptr<Mounter> makeSystemMounter() {
  return std::make_unique<SystemMounter>();
}

MountFlags parseMountOptions(const std::string& options) {
  // The flags mount(8) turns into MS_* bits; `true` sets, `false` clears.
  static const std::map<std::string, std::pair<unsigned long, bool>> kFlags = {
      {"ro", {MS_RDONLY, true}},
      {"rw", {MS_RDONLY, false}},
      {"nosuid", {MS_NOSUID, true}},
      {"suid", {MS_NOSUID, false}},
      {"nodev", {MS_NODEV, true}},
      {"dev", {MS_NODEV, false}},
      {"noexec", {MS_NOEXEC, true}},
      {"exec", {MS_NOEXEC, false}},
      {"sync", {MS_SYNCHRONOUS, true}},
      {"async", {MS_SYNCHRONOUS, false}},
      {"noatime", {MS_NOATIME, true}},
      {"atime", {MS_NOATIME, false}},
      {"nodiratime", {MS_NODIRATIME, true}},
      {"diratime", {MS_NODIRATIME, false}},
      {"relatime", {MS_RELATIME, true}},
      {"norelatime", {MS_RELATIME, false}},
      {"strictatime", {MS_STRICTATIME, true}},
      {"bind", {MS_BIND, true}},
      {"rbind", {MS_BIND | MS_REC, true}},
      {"defaults", {0, true}},
  };
  MountFlags result;
  std::istringstream in(options);
  for (std::string option; std::getline(in, option, ',');) {
    if (option.empty()) continue;
    if (auto it = kFlags.find(option); it != kFlags.end()) {
      if (it->second.second) {
        result.flags |= it->second.first;
      } else {
        result.flags &= ~it->second.first;
      }
      continue;
    }
    if (!result.data.empty()) result.data += ",";
    result.data += option;
  }
  return result;
}

bool hasMountAtOrBelow(const std::vector<std::string>& mount_points, const std::string& path) {
  std::string prefix = path;
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  for (const auto& m : mount_points) {
    if (m == prefix) return true;
    if (m.size() > prefix.size() && m.compare(0, prefix.size(), prefix) == 0 &&
        (prefix == "/" || m[prefix.size()] == '/')) {
      return true;
    }
  }
  return false;
}

}  // namespace ecs::volumes
