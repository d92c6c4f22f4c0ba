// Task cgroups on this machine's real cgroups (as root), v1 or v2, whichever the host has: the
// kernel reads back the limits, a real process shows up in the stats, the OOM killer is counted,
// a busy cgroup is reported and, once empty, removed from every hierarchy, including what runc
// leaves behind; and the v2 manager on a cgroup2 mount (the host's own, or a hybrid host's
// unified one). Everything is read through the cgroups module, so the same checks hold on both
// versions. Each test works in a CgroupSandbox, which kills and removes whatever is left in it
// however the test ends. Needs no harness peer.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>

#include "cgroups/task_cgroup.h"
#include "tests/support/cgroup_sandbox.h"
#include "tests/support/wait_for.h"

namespace ecs::cgroups {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ecs::testing::CgroupSandbox;
using ecs::testing::waitFor;
using ::testing::HasSubstr;

constexpr int64_t kMiB = 1024 * 1024;
// The controllers that carry a task's limits and usage; runc puts a container's process in the
// cgroups of these (and of every other hierarchy, which the tests leave idle on purpose).
const std::vector<std::string> kTaskControllers = {"cpu", "cpuacct", "memory", "pids"};

std::string randomHex() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

bool carriesTaskController(const CgroupDirectory& d) {
  return std::any_of(kTaskControllers.begin(), kTaskControllers.end(), [&](const auto& c) {
    return std::find(d.controllers.begin(), d.controllers.end(), c) != d.controllers.end();
  });
}

// A child process that waits, then runs `argv`, so the test can move it into cgroups before it
// execs (and so charges its memory and CPU there). Killed by the sandbox if the test does not.
class HeldChild {
 public:
  HeldChild(CgroupSandbox& sandbox, std::vector<const char*> argv) {
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
    if (pid_ > 0) sandbox.adopt(pid_);
  }
  HeldChild(const HeldChild&) = delete;
  HeldChild& operator=(const HeldChild&) = delete;
  ~HeldChild() {
    if (release_fd_ >= 0) ::close(release_fd_);
  }

  pid_t pid() const { return pid_; }

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

class CgroupKernelTest : public ::testing::Test {
 protected:
  static CgroupOptions options() {
    CgroupOptions options;
    options.pids_limit = 100;
    return options;
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    manager_ = sandbox_.manager();
    ASSERT_NE(manager_, nullptr) << sandbox_.error();
    auto init = manager_->init();
    ASSERT_TRUE(init) << init.error().message;
  }

  bool v1() const { return manager_->version() == Version::kV1; }
  std::string taskPath() const { return sandbox_.taskPath(task_); }

  const std::string task_ = "task-" + randomHex();
  CgroupSandbox sandbox_{options()};
  CgroupManager* manager_ = nullptr;
};

TEST_F(CgroupKernelTest, LimitsStatsAndRemovalOfARealTask) {
  for (const char* controller : {"cpu", "memory", "pids"}) {
    const auto dirs = sandbox_.directoriesWith(sandbox_.path(), controller);
    EXPECT_FALSE(dirs.empty()) << controller;
    for (const auto& dir : dirs) EXPECT_TRUE(fs::is_directory(dir)) << dir;
  }

  auto created = manager_->createTask(task_, TaskLimits{512, 64 * kMiB, 0});
  ASSERT_TRUE(created) << created.error().message;
  auto limits = manager_->limits(taskPath());
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_period_us, 100000u);
  EXPECT_EQ(limits->cpu_quota_us, 50000u);
  EXPECT_EQ(limits->memory_limit_bytes, uint64_t{64 * kMiB});
  EXPECT_EQ(limits->pids_limit, 100u);

  // A container as runc makes it: its cgroupsPath in every hierarchy (MkdirAll), the process in
  // the task controllers' ones.
  const auto container = manager_->containerCgroupsPath(task_, "web");
  ASSERT_TRUE(sandbox_.makeCgroup(container));
  HeldChild child(sandbox_, {"/bin/sleep", "30"});
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(sandbox_.moveInto(container, child.pid(), kTaskControllers));
  child.release();

  // The task's stats include the container's (hierarchical), once exec has been charged.
  Result<CgroupStats> stats;
  EXPECT_TRUE(waitFor(
      [&] {
        stats = manager_->stats(taskPath());
        return !stats || (stats->memory_usage_bytes > 0 && stats->cpu_usage_ns > 0);
      },
      5s, "the child's memory and cpu in the task's stats"));
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_GT(stats->memory_usage_bytes, 0u);
  if (stats->memory_max_usage_bytes != 0) {  // 0: v2 before Linux 5.19 keeps no peak
    EXPECT_GE(stats->memory_max_usage_bytes, stats->memory_usage_bytes);
  }
  EXPECT_EQ(stats->memory_limit_bytes, uint64_t{64 * kMiB});
  EXPECT_GT(stats->cpu_usage_ns, 0u);
  EXPECT_GE(stats->pids_current, 1u);
  EXPECT_EQ(stats->oom_kills, 0u);

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
  EXPECT_THAT(busy.error().message, HasSubstr(sandbox_.parent() + "/" + task_ + "/web"));
  EXPECT_GE(std::chrono::steady_clock::now() - started, 900ms);
  for (const auto& d : sandbox_.directories(taskPath())) {
    if (!carriesTaskController(d)) {
      EXPECT_FALSE(fs::exists(d.path)) << d.path;
    }
  }

  ::kill(child.pid(), SIGKILL);
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  auto removed = manager_->removeTask(task_);
  ASSERT_TRUE(removed) << removed.error().message;
  for (const auto& d : sandbox_.directories(taskPath())) {
    EXPECT_FALSE(fs::exists(d.path)) << d.path;
  }
  auto tasks = manager_->listTasks();
  ASSERT_TRUE(tasks) << tasks.error().message;
  EXPECT_TRUE(tasks->empty());
  EXPECT_EQ(manager_->stats(taskPath()).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(manager_->limits(taskPath()).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(manager_->removeTask(task_));  // again: fine

  EXPECT_TRUE(sandbox_.sweep().empty());
  for (const auto& d : sandbox_.directories(sandbox_.path())) {
    EXPECT_FALSE(fs::exists(d.path)) << d.path;
  }
}

TEST_F(CgroupKernelTest, SharesAndQuotaAsTheKernelKeepsThem) {
  ASSERT_TRUE(manager_->createTask(task_, TaskLimits{std::nullopt, std::nullopt, 300000}));
  auto limits = manager_->limits(taskPath());
  ASSERT_TRUE(limits) << limits.error().message;
  if (v1()) {
    EXPECT_EQ(limits->cpu_shares, 262144u);
  } else {
    EXPECT_EQ(limits->cpu_weight, 10000u);
  }
  EXPECT_EQ(limits->cpu_quota_us, CgroupLimits::kUnlimited);

  // Idempotent: the existing cgroup takes new limits; the smallest quota is accepted.
  auto again = manager_->createTask(task_, TaskLimits{1, 8 * kMiB, 0});
  ASSERT_TRUE(again) << again.error().message;
  limits = manager_->limits(taskPath());
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, 1000u);
  EXPECT_EQ(limits->memory_limit_bytes, uint64_t{8 * kMiB});
  ASSERT_TRUE(manager_->removeTask(task_));
}

TEST_F(CgroupKernelTest, TheOomKillerIsCountedForTheTaskAndTheContainer) {
  ASSERT_TRUE(manager_->createTask(task_, TaskLimits{std::nullopt, 16 * kMiB, 0}));
  // No way out through swap, where the host has swap: v1 swappiness, v2 swap.max.
  for (const auto& dir : sandbox_.directoriesWith(taskPath(), "memory")) {
    for (const char* file : {"/memory.swappiness", "/memory.swap.max"}) {
      if (fs::exists(dir + file)) {
        EXPECT_TRUE(CgroupSandbox::writeControl(dir + file, "0")) << dir + file;
      }
    }
  }
  const auto container = manager_->containerCgroupsPath(task_, "web");
  ASSERT_TRUE(sandbox_.makeCgroup(container));
  // dd fills a 64 MiB buffer from /dev/zero: four times the task's limit.
  HeldChild child(sandbox_, {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(sandbox_.moveInto(container, child.pid(), {"memory"}));
  child.release();
  const int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  // v1 counts the kill in the container's cgroup only, v2 up the tree: the task's count has it on
  // both.
  auto stats = manager_->stats(taskPath());
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->oom_kills, 1u);
  EXPECT_EQ(stats->memory_limit_bytes, uint64_t{16 * kMiB});
  if (stats->memory_max_usage_bytes != 0) {  // 0: v2 before Linux 5.19 keeps no peak
    EXPECT_GE(stats->memory_max_usage_bytes, uint64_t{15 * kMiB});
  }
  auto web = manager_->stats(container);
  ASSERT_TRUE(web) << web.error().message;
  EXPECT_EQ(web->oom_kills, 1u);
  auto removed = manager_->removeTask(task_);
  EXPECT_TRUE(removed) << removed.error().message;
}

TEST_F(CgroupKernelTest, KernelRefusalsNameThePathAndTheErrno) {
  if (v1()) {
    // On v1 a child may not get more CFS bandwidth than its parent has: half a CPU for the
    // agent's cgroup, a whole one asked for the task.
    const auto parent_cpu = sandbox_.directoriesWith(sandbox_.path(), "cpu");
    ASSERT_EQ(parent_cpu.size(), 1u);
    ASSERT_TRUE(CgroupSandbox::writeControl(parent_cpu[0] + "/cpu.cfs_quota_us", "50000"));
    auto created = manager_->createTask(task_, TaskLimits{1024, std::nullopt, 0});
    ASSERT_FALSE(created);
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument);
    const auto task_cpu = sandbox_.directoriesWith(taskPath(), "cpu").at(0);
    EXPECT_EQ(created.error().message,
              "write 100000 to " + task_cpu + "/cpu.cfs_quota_us: Invalid argument");
    ASSERT_TRUE(manager_->createTask(task_, TaskLimits{512, std::nullopt, 0}));  // fits
    auto limits = manager_->limits(taskPath());
    ASSERT_TRUE(limits) << limits.error().message;
    EXPECT_EQ(limits->cpu_quota_us, 50000u);
  } else {
    // On v2 a cgroup with processes of its own may not hand controllers to children: a task
    // cgroup that something else made and put a process in.
    ASSERT_TRUE(sandbox_.makeCgroup(taskPath()));
    HeldChild child(sandbox_, {"/bin/sleep", "30"});
    ASSERT_GT(child.pid(), 0);
    ASSERT_TRUE(sandbox_.moveInto(taskPath(), child.pid()));
    auto created = manager_->createTask(task_, {});
    ASSERT_FALSE(created);
    EXPECT_EQ(created.error().code, ErrorCode::kFailedPrecondition);
    const auto task_dir = sandbox_.directories(taskPath()).at(0).path;
    EXPECT_THAT(created.error().message,
                HasSubstr(" to " + task_dir + "/cgroup.subtree_control: Device or resource busy"));
    ::kill(child.pid(), SIGKILL);
    child.wait();
    auto again = manager_->createTask(task_, {});
    ASSERT_TRUE(again) << again.error().message;
  }
  ASSERT_TRUE(manager_->removeTask(task_));
}

// The v2 manager on a real cgroup2 mount: the host's own on a v2 host, the unified one on a hybrid
// host (where v1 holds cpu, memory and pids). The tree, processes, busy removal, and a limit that
// is set where the mount has its controller and refused by name where it has not.
TEST(CgroupV2MountTest, TreeOperationsOnACgroup2Mount) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  CgroupOptions options;
  {
    auto host = CgroupManager::create(options);
    ASSERT_TRUE(host) << host.error().message;
    if ((*host)->version() == Version::kV1) options.root += "/unified";
  }
  if (!fs::is_directory(options.root)) GTEST_SKIP() << "no cgroup2 mount at " << options.root;
  CgroupSandbox sandbox(options);
  auto* manager = sandbox.manager();
  ASSERT_NE(manager, nullptr) << sandbox.error();
  ASSERT_EQ(manager->version(), Version::kV2);
  const auto task = "task-" + randomHex();
  const auto task_path = sandbox.taskPath(task);
  ASSERT_TRUE(manager->init());
  ASSERT_TRUE(manager->createTask(task, {}));
  for (const auto& d : sandbox.directories(task_path)) EXPECT_TRUE(fs::is_directory(d.path));
  auto limited = manager->createTask(task, TaskLimits{std::nullopt, 64 * kMiB, 0});
  if (limited) {
    auto limits = manager->limits(task_path);
    ASSERT_TRUE(limits) << limits.error().message;
    EXPECT_EQ(limits->memory_limit_bytes, uint64_t{64 * kMiB});
  } else {
    EXPECT_THAT(limited.error().message, HasSubstr("memory controller is not available"));
  }

  const auto web = manager->containerCgroupsPath(task, "web");
  ASSERT_TRUE(sandbox.makeCgroup(web));
  HeldChild child(sandbox, {"/bin/sleep", "30"});
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE(sandbox.moveInto(web, child.pid()));
  child.release();
  auto stats = manager->stats(web);
  ASSERT_TRUE(stats) << stats.error().message;

  auto busy = manager->removeTask(task);
  ASSERT_FALSE(busy);
  const auto web_dir = sandbox.directories(web).at(0).path;
  EXPECT_EQ(busy.error().message, "remove cgroup " + web_dir + ": Device or resource busy");
  ::kill(child.pid(), SIGKILL);
  child.wait();
  auto removed = manager->removeTask(task);
  ASSERT_TRUE(removed) << removed.error().message;
  for (const auto& d : sandbox.directories(task_path)) EXPECT_FALSE(fs::exists(d.path));
  auto tasks = manager->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_TRUE(tasks->empty());
  EXPECT_TRUE(sandbox.sweep().empty());
  for (const auto& d : sandbox.directories(sandbox.path())) EXPECT_FALSE(fs::exists(d.path));
}

}  // namespace
}  // namespace ecs::cgroups
