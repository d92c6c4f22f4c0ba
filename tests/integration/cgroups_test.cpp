// Task cgroups on this machine's real cgroup v1 hierarchy (as root): the kernel reads back the
// limits, a real process shows up in the stats, the OOM killer is counted, a busy cgroup is
// reported and, once empty, removed from every hierarchy, including what runc leaves behind.
// Each test works under its own parent ("ecs-test-<random>") and a sweeper removes it, killing
// whatever is inside, however the test ends. Needs no harness peer.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kRoot = "/sys/fs/cgroup";
constexpr int64_t kMiB = 1024 * 1024;

std::string randomHex() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One write(2), as cgroupfs wants; false on failure.
bool writeFile(const fs::path& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  return ok;
}

// Every hierarchy under /sys/fs/cgroup (v1 controllers, name=systemd, the hybrid cgroup2 mount),
// symlinks (cpu -> cpu,cpuacct) resolved and listed once. Not the code under test's discovery.
std::vector<fs::path> allHierarchies() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(kRoot)) {
    const auto target = fs::canonical(entry.path());
    if (fs::is_directory(target) && std::find(out.begin(), out.end(), target) == out.end()) {
      out.push_back(target);
    }
  }
  return out;
}

// Removes `<hierarchy>/<parent>` everywhere on destruction (or on sweep()), first killing the
// processes in it and the children the test adopted, so no test leaves a cgroup behind.
class CgroupSweeper {
 public:
  explicit CgroupSweeper(std::string parent) : parent_(std::move(parent)) {}
  CgroupSweeper(const CgroupSweeper&) = delete;
  CgroupSweeper& operator=(const CgroupSweeper&) = delete;
  ~CgroupSweeper() { sweep(); }

  void adopt(pid_t pid) { children_.push_back(pid); }

  // Returns the directories it could not remove.
  std::vector<std::string> sweep() {
    for (const pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    children_.clear();
    std::vector<std::string> left;
    for (const auto& h : allHierarchies()) {
      const auto dir = h / parent_;
      if (!fs::exists(dir)) continue;
      killAll(dir);
      if (!removeTree(dir)) left.push_back(dir.string());
    }
    return left;
  }

 private:
  static void killAll(const fs::path& dir) {
    std::ifstream procs(dir / "cgroup.procs");
    for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_directory() && !entry.is_symlink()) killAll(entry.path());
    }
  }

  static bool removeTree(const fs::path& dir) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_directory() && !entry.is_symlink()) removeTree(entry.path());
    }
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
      std::this_thread::sleep_for(40ms);
    }
    return false;
  }

  std::string parent_;
  std::vector<pid_t> children_;
};

// A child process that waits, then runs `argv`, so the test can move it into cgroups before it
// execs (and so charges its memory and CPU there).
class HeldChild {
 public:
  HeldChild(CgroupSweeper& sweeper, std::vector<const char*> argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec.
      ::close(fds[1]);
      char byte;
      if (::read(fds[0], &byte, 1) != 1) ::_exit(126);
      ::execv(argv[0], const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    ::close(fds[0]);
    release_fd_ = fds[1];
    if (pid_ > 0) sweeper.adopt(pid_);
  }
  HeldChild(const HeldChild&) = delete;
  HeldChild& operator=(const HeldChild&) = delete;
  ~HeldChild() {
    if (release_fd_ >= 0) ::close(release_fd_);
  }

  pid_t pid() const { return pid_; }

  // Moves the child into `dir` (a cgroup directory).
  bool moveTo(const fs::path& dir) const {
    return writeFile(dir / "cgroup.procs", std::to_string(pid_));
  }

  void release() {
    const char byte = 1;
    EXPECT_EQ(::write(release_fd_, &byte, 1), 1);
    ::close(release_fd_);
    release_fd_ = -1;
  }

  // Waits for the child; returns its wait status.
  int wait() const {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    return status;
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
};

class CgroupV1KernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!fs::exists(kRoot / "memory/memory.limit_in_bytes") || !fs::exists(kRoot / "cpu") ||
        !fs::exists(kRoot / "pids")) {
      GTEST_SKIP() << kRoot << " is not a cgroup v1 hierarchy with cpu, memory and pids";
    }
    options_.parent = parent_;
    options_.pids_limit = 100;
    auto manager = CgroupManager::create(options_);
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
    ASSERT_EQ(manager_->version(), Version::kV1);
    auto init = manager_->init();
    ASSERT_TRUE(init) << init.error().message;
  }

  // A directory of the test's task cgroup in one controller's hierarchy.
  fs::path taskDir(const std::string& controller, const std::string& below = "") const {
    auto dir = kRoot / controller / parent_ / task_;
    return below.empty() ? dir : dir / below;
  }

  const std::string parent_ = "ecs-test-" + randomHex();
  const std::string task_ = "task-" + randomHex();
  CgroupSweeper sweeper_{parent_};
  CgroupOptions options_;
  std::unique_ptr<CgroupManager> manager_;
};

TEST_F(CgroupV1KernelTest, LimitsStatsAndRemovalOfARealTask) {
  for (const char* controller : {"cpu", "cpuacct", "memory", "pids"}) {
    EXPECT_TRUE(fs::is_directory(kRoot / controller / parent_)) << controller;
  }
  EXPECT_EQ(readFile(kRoot / "memory" / parent_ / "memory.use_hierarchy"), "1\n");

  auto created = manager_->createTask(task_, TaskLimits{512, 64 * kMiB, 0});
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.cfs_period_us"), "100000\n");
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.cfs_quota_us"), "50000\n");
  EXPECT_EQ(readFile(taskDir("memory") / "memory.limit_in_bytes"), "67108864\n");
  EXPECT_EQ(readFile(taskDir("memory") / "memory.use_hierarchy"), "1\n");
  EXPECT_EQ(readFile(taskDir("pids") / "pids.max"), "100\n");
  EXPECT_TRUE(fs::is_directory(taskDir("cpuacct")));

  // A container as runc makes it: its cgroupsPath in every hierarchy (MkdirAll), the process in
  // the controllers' ones.
  const auto container = manager_->containerCgroupsPath(task_, "web");
  for (const auto& h : allHierarchies()) fs::create_directories(h.string() + container);
  HeldChild child(sweeper_, {"/bin/sleep", "30"});
  ASSERT_GT(child.pid(), 0);
  for (const char* controller : {"cpu", "cpuacct", "memory", "pids"}) {
    ASSERT_TRUE(child.moveTo(taskDir(controller, "web"))) << controller;
  }
  child.release();

  // The task's stats include the container's (hierarchical); wait for exec to be charged.
  CgroupStats stats;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    auto read = manager_->stats("/" + parent_ + "/" + task_);
    ASSERT_TRUE(read) << read.error().message;
    stats = *read;
    if (stats.memory_usage_bytes > 0 && stats.cpu_usage_ns > 0) break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_GT(stats.memory_usage_bytes, 0u);
  EXPECT_GE(stats.memory_max_usage_bytes, stats.memory_usage_bytes);
  EXPECT_EQ(stats.memory_limit_bytes, uint64_t{64 * kMiB});
  EXPECT_GT(stats.cpu_usage_ns, 0u);
  EXPECT_GE(stats.pids_current, 1u);
  EXPECT_EQ(stats.oom_kills, 0u);

  auto web = manager_->stats(container);
  ASSERT_TRUE(web) << web.error().message;
  EXPECT_EQ(web->pids_current, 1u);
  EXPECT_GT(web->memory_usage_bytes, 0u);
  EXPECT_EQ(web->memory_limit_bytes, UINT64_MAX);  // no limit of its own

  // Busy: reported with the path after the retries; the idle hierarchies are cleaned anyway.
  const auto started = std::chrono::steady_clock::now();
  auto busy = manager_->removeTask(task_);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(busy.error().message, HasSubstr("Device or resource busy"));
  EXPECT_THAT(busy.error().message, HasSubstr(parent_ + "/" + task_ + "/web"));
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
  if (fs::exists(kRoot / "blkio")) {
    EXPECT_FALSE(fs::exists(taskDir("blkio")));
  }

  ::kill(child.pid(), SIGKILL);
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  auto removed = manager_->removeTask(task_);
  ASSERT_TRUE(removed) << removed.error().message;
  for (const auto& h : allHierarchies()) {
    EXPECT_FALSE(fs::exists(h / parent_ / task_)) << h;
  }
  auto tasks = manager_->listTasks();
  ASSERT_TRUE(tasks) << tasks.error().message;
  EXPECT_TRUE(tasks->empty());
  EXPECT_EQ(manager_->stats("/" + parent_ + "/" + task_).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(manager_->removeTask(task_));  // again: fine

  EXPECT_TRUE(sweeper_.sweep().empty());
  for (const auto& h : allHierarchies()) {
    EXPECT_FALSE(fs::exists(h / parent_)) << h;
  }
}

TEST_F(CgroupV1KernelTest, SharesAndQuotaAsTheKernelKeepsThem) {
  ASSERT_TRUE(manager_->createTask(task_, TaskLimits{std::nullopt, std::nullopt, 300000}));
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.shares"), "262144\n");
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.cfs_quota_us"), "-1\n");

  // Idempotent: the existing cgroup takes new limits; the smallest quota is accepted.
  auto again = manager_->createTask(task_, TaskLimits{1, 8 * kMiB, 0});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.cfs_quota_us"), "1000\n");
  EXPECT_EQ(readFile(taskDir("memory") / "memory.limit_in_bytes"), "8388608\n");
  ASSERT_TRUE(manager_->removeTask(task_));
}

TEST_F(CgroupV1KernelTest, TheOomKillerIsCountedForTheTaskAndTheContainer) {
  ASSERT_TRUE(manager_->createTask(task_, TaskLimits{std::nullopt, 16 * kMiB, 0}));
  writeFile(taskDir("memory") / "memory.swappiness", "0");  // no way out through swap
  const auto container = manager_->containerCgroupsPath(task_, "web");
  fs::create_directories(kRoot.string() + "/memory" + container);
  // dd fills a 64 MiB buffer from /dev/zero: four times the task's limit.
  HeldChild child(sweeper_, {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(child.moveTo(taskDir("memory", "web")));
  child.release();
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  // The kernel counted the kill in the container's cgroup only; the task's stats include it.
  EXPECT_THAT(readFile(taskDir("memory") / "memory.oom_control"), HasSubstr("oom_kill 0\n"));
  auto stats = manager_->stats("/" + parent_ + "/" + task_);
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->oom_kills, 1u);
  EXPECT_EQ(stats->memory_limit_bytes, uint64_t{16 * kMiB});
  EXPECT_GE(stats->memory_max_usage_bytes, uint64_t{15 * kMiB});
  auto web = manager_->stats(container);
  ASSERT_TRUE(web) << web.error().message;
  EXPECT_EQ(web->oom_kills, 1u);
  auto removed = manager_->removeTask(task_);
  EXPECT_TRUE(removed) << removed.error().message;
}

TEST_F(CgroupV1KernelTest, KernelRefusalsNameThePathAndTheErrno) {
  // On v1 a child may not get more CFS bandwidth than its parent has: half a CPU for the agent's
  // cgroup, a whole one asked for the task.
  ASSERT_TRUE(writeFile(kRoot / "cpu" / parent_ / "cpu.cfs_quota_us", "50000"));
  auto created = manager_->createTask(task_, TaskLimits{1024, std::nullopt, 0});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(
      created.error().message,
      "write 100000 to " + (taskDir("cpu") / "cpu.cfs_quota_us").string() + ": Invalid argument");
  ASSERT_TRUE(manager_->createTask(task_, TaskLimits{512, std::nullopt, 0}));  // fits
  EXPECT_EQ(readFile(taskDir("cpu") / "cpu.cfs_quota_us"), "50000\n");
  ASSERT_TRUE(manager_->removeTask(task_));
}

// The v2 manager on the real cgroup2 filesystem of a hybrid host (/sys/fs/cgroup/unified), where
// v1 holds cpu, memory and pids: the tree, processes, busy removal and missing controllers.
TEST(CgroupV2UnifiedTest, TreeOperationsOnTheHybridCgroup2Mount) {
  const fs::path unified = kRoot / "unified";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  if (!fs::exists(unified / "cgroup.controllers")) GTEST_SKIP() << "no " << unified;
  const auto parent = "ecs-test-" + randomHex();
  const auto task = "task-" + randomHex();
  CgroupSweeper sweeper(parent);
  CgroupOptions options;
  options.root = unified.string();
  options.parent = parent;
  auto manager = CgroupManager::create(options);
  ASSERT_TRUE(manager) << manager.error().message;
  ASSERT_EQ((*manager)->version(), Version::kV2);
  ASSERT_TRUE((*manager)->init());
  ASSERT_TRUE((*manager)->createTask(task, {}));
  EXPECT_TRUE(fs::is_directory(unified / parent / task));
  if (readFile(unified / "cgroup.controllers").find("memory") == std::string::npos) {
    auto limited = (*manager)->createTask(task, TaskLimits{std::nullopt, 64 * kMiB, 0});
    ASSERT_FALSE(limited);
    EXPECT_THAT(limited.error().message, HasSubstr("memory controller is not available"));
  }

  const auto web = unified / parent / task / "web";
  fs::create_directories(web);
  HeldChild child(sweeper, {"/bin/sleep", "30"});
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(child.moveTo(web));
  child.release();
  auto stats = (*manager)->stats((*manager)->containerCgroupsPath(task, "web"));
  ASSERT_TRUE(stats) << stats.error().message;

  auto busy = (*manager)->removeTask(task);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().message, "remove cgroup " + web.string() + ": Device or resource busy");
  ::kill(child.pid(), SIGKILL);
  child.wait();
  auto removed = (*manager)->removeTask(task);
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(fs::exists(unified / parent / task));
  auto tasks = (*manager)->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_TRUE(tasks->empty());
  EXPECT_TRUE(sweeper.sweep().empty());
  EXPECT_FALSE(fs::exists(unified / parent));
}

}  // namespace
}  // namespace ecs::cgroups
