// A cgroup parent of the test's own ("ecs-test-<random>") on this host's real cgroups, v1 or v2,
// made and found through the cgroups module: the test creates task cgroups with its manager and
// places processes in container cgroups the way runc does; on destruction everything in it is
// killed and removed in every hierarchy, however the test ended. Needs root. Header-only, for the
// integration tests that touch the kernel's cgroups.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "cgroups/task_cgroup.h"
#include "tests/support/wait_for.h"

namespace ecs::testing {

class CgroupSandbox {
 public:
  // A manager over `options.root` whose parent cgroup is the sandbox (options.parent is replaced).
  explicit CgroupSandbox(cgroups::CgroupOptions options = {}) : options_(std::move(options)) {
    std::random_device random;
    std::ostringstream name;
    name << "ecs-test-" << std::hex << random() << random();
    options_.parent = name.str();
    auto manager = cgroups::CgroupManager::create(options_);
    if (manager) {
      manager_ = std::move(*manager);
    } else {
      error_ = manager.error().message;
    }
  }
  ~CgroupSandbox() { sweep(); }
  CgroupSandbox(const CgroupSandbox&) = delete;
  CgroupSandbox& operator=(const CgroupSandbox&) = delete;

  // Null if the manager could not be created; error() says why.
  cgroups::CgroupManager* manager() const { return manager_.get(); }
  const std::string& error() const { return error_; }
  const std::string& parent() const { return options_.parent; }
  // The cgroups path of the sandbox itself, or of a task in it.
  std::string path() const { return "/" + options_.parent; }
  std::string taskPath(const std::string& task_id) const { return path() + "/" + task_id; }

  // The directories of `cgroups_path` (see CgroupManager::directories); none without a manager.
  std::vector<cgroups::CgroupDirectory> directories(const std::string& cgroups_path) const {
    if (!manager_) return {};
    auto found = manager_->directories(cgroups_path);
    if (!found) {
      ADD_FAILURE() << found.error().message;
      return {};
    }
    return *found;
  }

  // Those that carry `controller` (each of a v1 hierarchy's, or the one v2 directory).
  std::vector<std::string> directoriesWith(const std::string& cgroups_path,
                                           std::string_view controller) const {
    std::vector<std::string> out;
    for (const auto& d : directories(cgroups_path)) {
      if (std::find(d.controllers.begin(), d.controllers.end(), controller) !=
          d.controllers.end()) {
        out.push_back(d.path);
      }
    }
    return out;
  }

  // Creates `cgroups_path` in each of its directories, as runc's MkdirAll does.
  ::testing::AssertionResult makeCgroup(const std::string& cgroups_path) const {
    const auto dirs = directories(cgroups_path);
    if (dirs.empty()) return ::testing::AssertionFailure() << "no directories for " << cgroups_path;
    for (const auto& d : dirs) {
      std::error_code ec;
      std::filesystem::create_directories(d.path, ec);
      if (ec) return ::testing::AssertionFailure() << "mkdir " << d.path << ": " << ec.message();
    }
    return ::testing::AssertionSuccess();
  }

  // Moves `pid` into `cgroups_path` in the directories that carry one of `controllers` (all of
  // them when empty), each once, as runc does when it starts a container.
  ::testing::AssertionResult moveInto(const std::string& cgroups_path, pid_t pid,
                                      const std::vector<std::string>& controllers = {}) const {
    std::vector<std::string> targets;
    for (const auto& d : directories(cgroups_path)) {
      const bool wanted =
          controllers.empty() || std::any_of(controllers.begin(), controllers.end(), [&](auto& c) {
            return std::find(d.controllers.begin(), d.controllers.end(), c) != d.controllers.end();
          });
      if (wanted) targets.push_back(d.path);
    }
    if (targets.empty()) return ::testing::AssertionFailure() << "no directory of " << cgroups_path;
    for (const auto& dir : targets) {
      if (!writeControl(dir + "/cgroup.procs", std::to_string(pid))) {
        return ::testing::AssertionFailure()
               << "move " << pid << " into " << dir << ": " << std::strerror(errno);
      }
    }
    return ::testing::AssertionSuccess();
  }

  // A child of the test, killed and reaped by sweep() unless the test reaped it.
  void adopt(pid_t pid) { children_.push_back(pid); }

  // Kills the adopted children and every process left in the sandbox, then removes its cgroups in
  // every hierarchy, deepest first (an emptied cgroup stays busy for a moment after its last
  // process is reaped). Returns the directories it could not remove.
  std::vector<std::string> sweep() {
    for (const pid_t pid : children_) {
      // Only a child not yet reaped: a reaped one's pid may belong to someone else by now.
      if (::waitpid(pid, nullptr, WNOHANG) != 0) continue;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    children_.clear();
    std::vector<std::string> left;
    for (const auto& d : directories(path())) {
      if (!std::filesystem::exists(d.path)) continue;
      killAll(d.path);
      if (!removeTree(d.path)) left.push_back(d.path);
    }
    return left;
  }

  // One write(2), as cgroupfs wants; false (errno set) on failure.
  static bool writeControl(const std::string& path, std::string_view value) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
  }

 private:
  static void killAll(const std::filesystem::path& dir) {
    std::ifstream procs(dir / "cgroup.procs");
    for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.is_directory() && !entry.is_symlink()) killAll(entry.path());
    }
  }

  static bool removeTree(const std::filesystem::path& dir) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.is_directory() && !entry.is_symlink()) removeTree(entry.path());
    }
    return pollUntil([&] { return ::rmdir(dir.c_str()) == 0 || errno == ENOENT; },
                     std::chrono::seconds(2));
  }

  cgroups::CgroupOptions options_;
  std::unique_ptr<cgroups::CgroupManager> manager_;
  std::string error_;
  std::vector<pid_t> children_;
};

}  // namespace ecs::testing
