// Task cgroups against plain directory trees laid out like cgroupfs: v1 (co-mounted and separate
// cpu/cpuacct) and v2 detection, parent and task creation with the exact values written, removal
// of nested and runc-leftover cgroups, stats and limits parsing, where a cgroup's directories are,
// errors, and /proc/self/mountinfo parsing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cgroups/cgroup_v1.h"
#include "cgroups/cgroup_v2.h"
#include "cgroups/task_cgroup.h"

namespace ecs::cgroups {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMiB = 1024 * 1024;

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

class CgroupTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cgroups-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  // /sys/fs/cgroup on a v1 host: cpu and cpuacct co-mounted (with the usual symlinks) or
  // separate, plus hierarchies the manager does not set limits in.
  void makeV1Tree(bool comounted) {
    if (comounted) {
      fs::create_directories(root_ / "cpu,cpuacct");
      fs::create_directory_symlink("cpu,cpuacct", root_ / "cpu");
      fs::create_directory_symlink("cpu,cpuacct", root_ / "cpuacct");
    } else {
      fs::create_directories(root_ / "cpu");
      fs::create_directories(root_ / "cpuacct");
    }
    for (const char* dir : {"memory", "pids", "blkio", "systemd", "unified"}) {
      fs::create_directories(root_ / dir);
    }
  }

  void makeV2Tree(const std::string& controllers = "cpuset cpu io memory hugetlb pids rdma misc") {
    writeFile(root_ / "cgroup.controllers", controllers + "\n");
    writeFile(root_ / "cgroup.subtree_control", "");
  }

  std::unique_ptr<CgroupManager> make(CgroupOptions options = {}) {
    options.root = root_.string();
    auto manager = CgroupManager::create(options);
    EXPECT_TRUE(manager) << manager.error().message;
    return manager ? std::move(*manager) : nullptr;
  }

  Error makeError(CgroupOptions options = {}) {
    options.root = root_.string();
    auto manager = CgroupManager::create(options);
    EXPECT_FALSE(manager);
    return manager ? Error{} : manager.error();
  }

  fs::path root_;
};

// --- detection and options -----------------------------------------------------------------------

TEST_F(CgroupTreeTest, DirectoriesOfControllersAreV1) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  EXPECT_EQ(manager->version(), Version::kV1);
}

TEST_F(CgroupTreeTest, CgroupControllersAtTheRootIsV2) {
  makeV2Tree();
  auto manager = make();
  ASSERT_TRUE(manager);
  EXPECT_EQ(manager->version(), Version::kV2);
}

TEST_F(CgroupTreeTest, MissingRootFails) {
  CgroupOptions options;
  options.root = (root_ / "nope").string();
  auto manager = CgroupManager::create(options);
  ASSERT_FALSE(manager);
  EXPECT_EQ(manager.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(manager.error().message, HasSubstr(options.root));
}

TEST_F(CgroupTreeTest, V1WithoutMemoryFails) {
  fs::create_directories(root_ / "cpu");
  auto error = makeError();
  EXPECT_EQ(error.code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(error.message, HasSubstr("no memory hierarchy under " + root_.string()));
}

TEST_F(CgroupTreeTest, PidsLimitNeedsPids) {
  fs::create_directories(root_ / "cpu");
  fs::create_directories(root_ / "memory");
  CgroupOptions options;
  options.pids_limit = 10;
  EXPECT_THAT(makeError(options).message, HasSubstr("no pids hierarchy"));

  options.pids_limit = 0;  // without a pids limit, pids is optional
  EXPECT_TRUE(make(options));
}

TEST_F(CgroupTreeTest, BadOptionsAreInvalidArguments) {
  makeV1Tree(true);
  for (const char* parent : {"", "a/b", "..", "/ecs"}) {
    CgroupOptions options;
    options.parent = parent;
    EXPECT_EQ(makeError(options).code, ErrorCode::kInvalidArgument) << parent;
  }
  for (const auto period : {999, 1000001}) {
    CgroupOptions options;
    options.cpu_period = std::chrono::microseconds(period);
    EXPECT_EQ(makeError(options).code, ErrorCode::kInvalidArgument) << period;
  }
}

// --- v1 ------------------------------------------------------------------------------------------

TEST_F(CgroupTreeTest, V1InitCreatesTheParentInTheLimitHierarchiesOnly) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->init());
  EXPECT_TRUE(fs::is_directory(root_ / "cpu,cpuacct/ecs"));
  EXPECT_TRUE(fs::is_directory(root_ / "memory/ecs"));
  EXPECT_TRUE(fs::is_directory(root_ / "pids/ecs"));
  EXPECT_FALSE(fs::exists(root_ / "blkio/ecs"));
  EXPECT_FALSE(fs::exists(root_ / "unified/ecs"));
  ASSERT_TRUE(manager->init());  // again: fine
}

TEST_F(CgroupTreeTest, V1InitTurnsOnMemoryHierarchy) {
  makeV1Tree(true);
  writeFile(root_ / "memory/ecs/memory.use_hierarchy", "0\n");
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->init());
  EXPECT_EQ(readFile(root_ / "memory/ecs/memory.use_hierarchy"), "1");
}

TEST_F(CgroupTreeTest, V1TaskCpuIsACfsQuotaAndMemoryAHardLimit) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->init());
  auto created = manager->createTask("t1", TaskLimits{512, 64 * kMiB, 4096});
  ASSERT_TRUE(created) << created.error().message;

  const auto cpu = root_ / "cpu,cpuacct/ecs/t1";
  EXPECT_EQ(readFile(cpu / "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(readFile(cpu / "cpu.cfs_quota_us"), "50000");
  EXPECT_FALSE(fs::exists(cpu / "cpu.shares"));  // task cpu wins over container shares
  EXPECT_EQ(readFile(root_ / "memory/ecs/t1/memory.limit_in_bytes"), "67108864");
  EXPECT_TRUE(fs::is_directory(root_ / "pids/ecs/t1"));
  EXPECT_FALSE(fs::exists(root_ / "pids/ecs/t1/pids.max"));  // no pids limit configured
  EXPECT_FALSE(fs::exists(root_ / "blkio/ecs"));
}

TEST_F(CgroupTreeTest, V1QuotaFollowsThePeriodAndHasAFloor) {
  makeV1Tree(false);
  CgroupOptions options;
  options.cpu_period = std::chrono::microseconds(50000);
  auto manager = make(options);
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("big", TaskLimits{2048, std::nullopt, 0}));
  EXPECT_EQ(readFile(root_ / "cpu/ecs/big/cpu.cfs_period_us"), "50000");
  EXPECT_EQ(readFile(root_ / "cpu/ecs/big/cpu.cfs_quota_us"), "100000");
  EXPECT_TRUE(fs::is_directory(root_ / "cpuacct/ecs/big"));  // separate cpuacct gets one too
  EXPECT_FALSE(fs::exists(root_ / "memory/ecs/big/memory.limit_in_bytes"));

  ASSERT_TRUE(manager->createTask("tiny", TaskLimits{10, std::nullopt, 0}));
  EXPECT_EQ(readFile(root_ / "cpu/ecs/tiny/cpu.cfs_quota_us"), "1000");  // kernel minimum 1 ms
}

TEST_F(CgroupTreeTest, V1SharesWithoutTaskCpuAreClamped) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  const std::pair<int64_t, std::string> cases[] = {
      {1, "2"}, {2, "2"}, {1024, "1024"}, {262144, "262144"}, {300000, "262144"}};
  for (const auto& [shares, expected] : cases) {
    const auto id = "s" + std::to_string(shares);
    ASSERT_TRUE(manager->createTask(id, TaskLimits{std::nullopt, std::nullopt, shares}));
    EXPECT_EQ(readFile(root_ / "cpu,cpuacct/ecs" / id / "cpu.shares"), expected) << shares;
    EXPECT_FALSE(fs::exists(root_ / "cpu,cpuacct/ecs" / id / "cpu.cfs_quota_us"));
  }
  ASSERT_TRUE(manager->createTask("none", TaskLimits{0, 0, 0}));  // 0 means unset
  EXPECT_TRUE(fs::is_empty(root_ / "cpu,cpuacct/ecs/none"));
  EXPECT_FALSE(fs::exists(root_ / "memory/ecs/none/memory.limit_in_bytes"));
}

TEST_F(CgroupTreeTest, V1PidsLimit) {
  makeV1Tree(true);
  CgroupOptions options;
  options.pids_limit = 100;
  auto manager = make(options);
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", {}));
  EXPECT_EQ(readFile(root_ / "pids/ecs/t1/pids.max"), "100");
}

TEST_F(CgroupTreeTest, V1CreateTaskIsIdempotentAndCreatesTheParent) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", TaskLimits{1024, 128 * kMiB, 0}));  // without init()
  auto again = manager->createTask("t1", TaskLimits{1024, 256 * kMiB, 0});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(readFile(root_ / "memory/ecs/t1/memory.limit_in_bytes"), std::to_string(256 * kMiB));
}

TEST_F(CgroupTreeTest, TaskIdsMustBeOneSafePathComponent) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  const std::vector<std::string> bad = {"",
                                        ".",
                                        "..",
                                        "../x",
                                        "a/b",
                                        "/abs",
                                        "a\nb",
                                        ".hidden",
                                        "a b",
                                        "arn:aws:ecs:us-west-2:1:task/c/abc",
                                        std::string(256, 'a')};
  for (const auto& id : bad) {
    auto created = manager->createTask(id, {});
    ASSERT_FALSE(created) << id;
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(manager->removeTask(id).error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(fs::exists(root_ / "memory/x"));
  EXPECT_TRUE(manager->createTask(std::string(255, 'a'), {}));
  EXPECT_TRUE(manager->createTask("0123456789abcdef0123456789abcdef", {}));
  EXPECT_TRUE(manager->createTask("web_1.v2-a", {}));
}

TEST_F(CgroupTreeTest, NegativeLimitsAreInvalid) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  EXPECT_EQ(manager->createTask("t", TaskLimits{-1, std::nullopt, 0}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(manager->createTask("t", TaskLimits{std::nullopt, -5, 0}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(manager->createTask("t", TaskLimits{std::nullopt, std::nullopt, -2}).error().code,
            ErrorCode::kInvalidArgument);
}

TEST_F(CgroupTreeTest, V1ErrorsNameThePathAndTheErrno) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);

  writeFile(root_ / "pids/ecs/t1", "not a directory");
  auto created = manager->createTask("t1", {});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().message,
            "create task cgroup " + (root_ / "pids/ecs/t1").string() + ": File exists");

  fs::create_directories(root_ / "memory/ecs/t2/memory.limit_in_bytes");
  created = manager->createTask("t2", TaskLimits{std::nullopt, 64 * kMiB, 0});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().message, "write 67108864 to " +
                                         (root_ / "memory/ecs/t2/memory.limit_in_bytes").string() +
                                         ": Is a directory");
}

TEST_F(CgroupTreeTest, V1RemoveTaskRemovesNestedAndLeftoverCgroupsEverywhere) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", TaskLimits{512, 64 * kMiB, 0}));
  ASSERT_TRUE(manager->createTask("t2", {}));
  // Container cgroups as runc makes them, in every hierarchy, and what it leaves in the ones the
  // manager never touches.
  writeFile(root_ / "cpu,cpuacct/ecs/t1/web/cpu.shares", "1024");
  writeFile(root_ / "memory/ecs/t1/web/nested/memory.limit_in_bytes", "1");
  fs::create_directories(root_ / "blkio/ecs/t1/web");
  fs::create_directories(root_ / "unified/ecs/t1");
  fs::create_directories(root_ / "systemd/ecs/t3");  // a leak the sweeper must see

  auto tasks = manager->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_THAT(*tasks, ElementsAre("t1", "t2", "t3"));

  auto removed = manager->removeTask("t1");
  ASSERT_TRUE(removed) << removed.error().message;
  for (const char* h : {"cpu,cpuacct", "memory", "pids", "blkio", "unified"}) {
    EXPECT_FALSE(fs::exists(root_ / h / "ecs/t1")) << h;
  }
  EXPECT_TRUE(fs::is_directory(root_ / "memory/ecs/t2"));
  EXPECT_TRUE(fs::is_directory(root_ / "memory/ecs"));  // the parent stays

  ASSERT_TRUE(manager->removeTask("t1"));  // missing: fine
  ASSERT_TRUE(manager->removeTask("t3"));
  ASSERT_TRUE(manager->removeTask("t2"));
  tasks = manager->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_THAT(*tasks, IsEmpty());
}

TEST_F(CgroupTreeTest, ListTasksWithoutParentIsEmpty) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  auto tasks = manager->listTasks();
  ASSERT_TRUE(tasks) << tasks.error().message;
  EXPECT_THAT(*tasks, IsEmpty());
}

TEST_F(CgroupTreeTest, ContainerCgroupsPath) {
  makeV1Tree(true);
  CgroupOptions options;
  options.parent = "agent";
  auto manager = make(options);
  ASSERT_TRUE(manager);
  EXPECT_EQ(manager->containerCgroupsPath("t1", "web"), "/agent/t1/web");
}

TEST_F(CgroupTreeTest, V1StatsReadEveryController) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  const auto memory = root_ / "memory/ecs/t1";
  writeFile(memory / "memory.usage_in_bytes", "1000\n");
  writeFile(memory / "memory.max_usage_in_bytes", "2000\n");
  writeFile(memory / "memory.limit_in_bytes", "9223372036854771712\n");
  writeFile(memory / "memory.stat", "cache 10\nrss 20\ntotal_cache 30\ntotal_rss 40\n");
  writeFile(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  const auto cpu = root_ / "cpu,cpuacct/ecs/t1";
  writeFile(cpu / "cpuacct.usage", "123456789\n");
  writeFile(cpu / "cpuacct.stat", "user 150\nsystem 50\n");
  writeFile(root_ / "pids/ecs/t1/pids.current", "3\n");
  // v1 counts OOM kills in the victim's cgroup only: the task's count includes its containers'.
  writeFile(memory / "web/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  writeFile(memory / "web/sidecar/memory.oom_control", "oom_kill 4\n");

  auto stats = manager->stats("/ecs/t1");
  ASSERT_TRUE(stats) << stats.error().message;
  const uint64_t ns_per_tick = 1000000000 / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  EXPECT_EQ(stats->memory_usage_bytes, 1000u);
  EXPECT_EQ(stats->memory_max_usage_bytes, 2000u);
  EXPECT_EQ(stats->memory_limit_bytes, UINT64_MAX);  // the kernel's "unlimited"
  EXPECT_EQ(stats->memory_cache_bytes, 30u);         // hierarchical: containers included
  EXPECT_EQ(stats->oom_kills, 7u);
  EXPECT_EQ(stats->cpu_usage_ns, 123456789u);
  EXPECT_EQ(stats->cpu_user_ns, 150 * ns_per_tick);
  EXPECT_EQ(stats->cpu_system_ns, 50 * ns_per_tick);
  EXPECT_EQ(stats->pids_current, 3u);

  // An older kernel: no oom_kill line, no total_ keys; a set limit.
  writeFile(memory / "memory.limit_in_bytes", "67108864\n");
  writeFile(memory / "memory.stat", "cache 10\nrss 20\n");
  writeFile(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
  fs::remove_all(memory / "web");
  stats = manager->stats("/ecs/t1");
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_limit_bytes, 67108864u);
  EXPECT_EQ(stats->memory_cache_bytes, 10u);
  EXPECT_EQ(stats->oom_kills, 0u);
}

TEST_F(CgroupTreeTest, V1StatsOfAContainerCgroupWithMissingFilesAreZero) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  writeFile(root_ / "memory/ecs/t1/web/memory.usage_in_bytes", "4096\n");
  auto stats = manager->stats(manager->containerCgroupsPath("t1", "web"));
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_usage_bytes, 4096u);
  EXPECT_EQ(stats->cpu_usage_ns, 0u);
  EXPECT_EQ(stats->pids_current, 0u);
}

TEST_F(CgroupTreeTest, StatsErrors) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  auto stats = manager->stats("/ecs/missing");
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(stats.error().message, HasSubstr("/ecs/missing"));

  for (const char* path : {"", "/", "ecs/t1", "/ecs/../..", "/ecs//t1", "/ecs/t1/"}) {
    stats = manager->stats(path);
    ASSERT_FALSE(stats) << path;
    EXPECT_EQ(stats.error().code, ErrorCode::kInvalidArgument) << path;
  }

  writeFile(root_ / "memory/ecs/t1/memory.usage_in_bytes", "lots\n");
  stats = manager->stats("/ecs/t1");
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, ErrorCode::kInternal);
  EXPECT_THAT(stats.error().message,
              HasSubstr((root_ / "memory/ecs/t1/memory.usage_in_bytes").string()));
}

TEST_F(CgroupTreeTest, V1LimitsReadBackTheControlFiles) {
  makeV1Tree(true);
  CgroupOptions options;
  options.pids_limit = 100;
  auto manager = make(options);
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", TaskLimits{512, 64 * kMiB, 0}));
  auto limits = manager->limits("/ecs/t1");
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, 50000u);
  EXPECT_EQ(limits->cpu_period_us, 100000u);
  EXPECT_EQ(limits->cpu_shares, 0u);  // a plain tree has only the files written
  EXPECT_EQ(limits->cpu_weight, 0u);
  EXPECT_EQ(limits->memory_limit_bytes, uint64_t{64 * kMiB});
  EXPECT_EQ(limits->pids_limit, 100u);

  // No limits, as the kernel shows them: -1, PAGE_COUNTER_MAX rounded to pages, "max".
  const auto cpu = root_ / "cpu,cpuacct/ecs/t2";
  writeFile(cpu / "cpu.cfs_quota_us", "-1\n");
  writeFile(cpu / "cpu.cfs_period_us", "100000\n");
  writeFile(cpu / "cpu.shares", "1024\n");
  writeFile(root_ / "memory/ecs/t2/memory.limit_in_bytes", "9223372036854771712\n");
  writeFile(root_ / "pids/ecs/t2/pids.max", "max\n");
  limits = manager->limits("/ecs/t2");
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->cpu_period_us, 100000u);
  EXPECT_EQ(limits->cpu_shares, 1024u);
  EXPECT_EQ(limits->memory_limit_bytes, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->pids_limit, CgroupLimits::kUnlimited);

  // A cgroup in one hierarchy only, without control files: nothing limited.
  fs::create_directories(root_ / "memory/ecs/t2/web");
  limits = manager->limits(manager->containerCgroupsPath("t2", "web"));
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->cpu_period_us, 0u);
  EXPECT_EQ(limits->memory_limit_bytes, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->pids_limit, CgroupLimits::kUnlimited);
}

TEST_F(CgroupTreeTest, V1LimitsErrors) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  auto limits = manager->limits("/ecs/missing");
  ASSERT_FALSE(limits);
  EXPECT_EQ(limits.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(limits.error().message, HasSubstr("/ecs/missing"));
  EXPECT_EQ(manager->limits("ecs/t1").error().code, ErrorCode::kInvalidArgument);

  writeFile(root_ / "pids/ecs/t1/pids.max", "lots\n");
  limits = manager->limits("/ecs/t1");
  ASSERT_FALSE(limits);
  EXPECT_EQ(limits.error().code, ErrorCode::kInternal);
  EXPECT_THAT(limits.error().message, HasSubstr((root_ / "pids/ecs/t1/pids.max").string()));
}

TEST_F(CgroupTreeTest, V1DirectoriesAreOnePerHierarchy) {
  makeV1Tree(true);
  auto manager = make();
  ASSERT_TRUE(manager);
  auto directories = manager->directories("/ecs/t1/web");
  ASSERT_TRUE(directories) << directories.error().message;
  const auto root = fs::canonical(root_);
  std::vector<std::string> paths;
  for (const auto& d : *directories) paths.push_back(d.path);
  const auto at = [&](const char* hierarchy) { return (root / hierarchy / "ecs/t1/web").string(); };
  EXPECT_THAT(paths, ElementsAre(at("blkio"), at("cpu,cpuacct"), at("memory"), at("pids"),
                                 at("systemd"), at("unified")));
  EXPECT_THAT((*directories)[1].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_THAT((*directories)[4].controllers, ElementsAre("name=systemd"));
  EXPECT_THAT((*directories)[5].controllers, IsEmpty());
  EXPECT_FALSE(fs::exists(root / "memory/ecs"));  // only named, not made

  EXPECT_EQ(manager->directories("/ecs/../t1").error().code, ErrorCode::kInvalidArgument);
}

// --- mountinfo -----------------------------------------------------------------------------------

TEST(V1MountsTest, SeparateControllersAsOnThisKindOfHost) {
  const char* mountinfo =
      "23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw\n"
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  const auto mounts = parseV1Mounts(mountinfo, "/sys/fs/cgroup");
  ASSERT_EQ(mounts.size(), 6u);
  EXPECT_EQ(mounts[0].path, "/sys/fs/cgroup/cpu");
  EXPECT_THAT(mounts[0].controllers, ElementsAre("cpu"));
  EXPECT_THAT(mounts[1].controllers, ElementsAre("cpuacct"));
  EXPECT_THAT(mounts[2].controllers, ElementsAre("memory"));
  EXPECT_THAT(mounts[4].controllers, ElementsAre("name=systemd"));
  EXPECT_EQ(mounts[5].path, "/sys/fs/cgroup/unified");
  EXPECT_THAT(mounts[5].controllers, IsEmpty());
}

TEST(V1MountsTest, CoMountedWithOptionalFieldsAndOptions) {
  const char* mountinfo =
      "28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 "
      "master:2 - cgroup cgroup rw,cpu,cpuacct\n"
      "29 24 0:26 /docker/abc /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup "
      "rw,memory,clone_children\n"
      "30 24 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,noprefix,"
      "release_agent=/sbin/x\n"
      "31 24 0:28 / /elsewhere/pids rw - cgroup cgroup rw,pids\n"
      "32 24 0:29 / /sys/fs/cgroup/a/b rw - cgroup cgroup rw,blkio\n"
      "33 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
      "garbage line\n";
  const auto mounts = parseV1Mounts(mountinfo, "/sys/fs/cgroup");
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].path, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_THAT(mounts[0].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_TRUE(mounts[0].has("cpuacct"));
  EXPECT_THAT(mounts[1].controllers, ElementsAre("memory"));
  EXPECT_THAT(mounts[2].controllers, ElementsAre("cpuset"));
}

TEST(V1MountsTest, EscapedMountPoints) {
  const char* mountinfo = "32 31 0:29 / /tmp/my\\040root/memory rw - cgroup cgroup rw,memory\n";
  const auto mounts = parseV1Mounts(mountinfo, "/tmp/my root");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].path, "/tmp/my root/memory");
}

TEST_F(CgroupTreeTest, DiscoveryOfAPlainTreeFollowsSymlinksOnce) {
  makeV1Tree(true);
  auto hierarchies = discoverV1Hierarchies(root_.string());
  ASSERT_TRUE(hierarchies) << hierarchies.error().message;
  std::vector<std::string> names;
  for (const auto& h : *hierarchies) {
    names.push_back(fs::path(h.path).filename().string());
    EXPECT_FALSE(h.cgroupfs);
  }
  EXPECT_THAT(names, ElementsAre("blkio", "cpu,cpuacct", "memory", "pids", "systemd", "unified"));
  EXPECT_THAT((*hierarchies)[1].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_THAT((*hierarchies)[4].controllers, ElementsAre("name=systemd"));
  EXPECT_THAT((*hierarchies)[5].controllers, IsEmpty());
}

// --- v2 ------------------------------------------------------------------------------------------

TEST_F(CgroupTreeTest, V2InitEnablesControllersAtTheRootAndTheParent) {
  makeV2Tree();
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->init());
  EXPECT_EQ(readFile(root_ / "cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(readFile(root_ / "ecs/cgroup.subtree_control"), "+cpu +memory +pids");
}

TEST_F(CgroupTreeTest, V2EnablesOnlyWhatIsAvailableAndMissing) {
  makeV2Tree("cpuset memory io");
  writeFile(root_ / "cgroup.subtree_control", "memory io\n");  // already on at the root
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->init());
  EXPECT_EQ(readFile(root_ / "cgroup.subtree_control"), "memory io\n");  // untouched
  EXPECT_EQ(readFile(root_ / "ecs/cgroup.subtree_control"), "+memory");

  // A limit whose controller is missing is an error naming it.
  auto created = manager->createTask("t1", TaskLimits{512, std::nullopt, 0});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(created.error().message, HasSubstr("cpu controller is not available"));
  EXPECT_TRUE(manager->createTask("t2", TaskLimits{std::nullopt, 64 * kMiB, 0}));
}

TEST_F(CgroupTreeTest, V2TaskLimits) {
  makeV2Tree();
  CgroupOptions options;
  options.pids_limit = 64;
  auto manager = make(options);
  ASSERT_TRUE(manager);
  auto created = manager->createTask("t1", TaskLimits{512, 64 * kMiB, 0});
  ASSERT_TRUE(created) << created.error().message;
  const auto dir = root_ / "ecs/t1";
  EXPECT_EQ(readFile(dir / "cpu.max"), "50000 100000");
  EXPECT_FALSE(fs::exists(dir / "cpu.weight"));
  EXPECT_EQ(readFile(dir / "memory.max"), "67108864");
  EXPECT_EQ(readFile(dir / "pids.max"), "64");
  EXPECT_EQ(readFile(dir / "cgroup.subtree_control"), "+cpu +memory +pids");
}

TEST_F(CgroupTreeTest, V2SharesBecomeWeights) {
  makeV2Tree();
  auto manager = make();
  ASSERT_TRUE(manager);
  const std::pair<int64_t, std::string> cases[] = {
      {1, "1"}, {2, "1"}, {1024, "39"}, {262144, "10000"}, {500000, "10000"}};
  for (const auto& [shares, expected] : cases) {
    const auto id = "s" + std::to_string(shares);
    ASSERT_TRUE(manager->createTask(id, TaskLimits{std::nullopt, std::nullopt, shares}));
    EXPECT_EQ(readFile(root_ / "ecs" / id / "cpu.weight"), expected) << shares;
    EXPECT_FALSE(fs::exists(root_ / "ecs" / id / "cpu.max"));
  }
}

TEST(CpuSharesToWeightTest, LinearOverTheKernelRanges) {
  EXPECT_EQ(cpuSharesToWeight(0), 0u);
  EXPECT_EQ(cpuSharesToWeight(2), 1u);
  EXPECT_EQ(cpuSharesToWeight(128), 5u);
  EXPECT_EQ(cpuSharesToWeight(1024), 39u);
  EXPECT_EQ(cpuSharesToWeight(131073), 5000u);
  EXPECT_EQ(cpuSharesToWeight(262144), 10000u);
  EXPECT_EQ(cpuSharesToWeight(-3), 0u);
}

TEST_F(CgroupTreeTest, V2LimitsReadBackTheControlFiles) {
  makeV2Tree();
  CgroupOptions options;
  options.pids_limit = 64;
  auto manager = make(options);
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", TaskLimits{512, 64 * kMiB, 0}));
  auto limits = manager->limits("/ecs/t1");
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, 50000u);
  EXPECT_EQ(limits->cpu_period_us, 100000u);
  EXPECT_EQ(limits->cpu_weight, 0u);
  EXPECT_EQ(limits->cpu_shares, 0u);
  EXPECT_EQ(limits->memory_limit_bytes, uint64_t{64 * kMiB});
  EXPECT_EQ(limits->pids_limit, 64u);

  ASSERT_TRUE(manager->createTask("t2", TaskLimits{std::nullopt, std::nullopt, 1024}));
  limits = manager->limits("/ecs/t2");
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_weight, 39u);
  EXPECT_EQ(limits->cpu_quota_us, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->memory_limit_bytes, CgroupLimits::kUnlimited);  // no memory.max written

  // No limits, as the kernel shows them.
  writeFile(root_ / "ecs/t2/cpu.max", "max 100000\n");
  writeFile(root_ / "ecs/t2/memory.max", "max\n");
  writeFile(root_ / "ecs/t2/pids.max", "max\n");
  limits = manager->limits("/ecs/t2");
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->cpu_quota_us, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->cpu_period_us, 100000u);
  EXPECT_EQ(limits->memory_limit_bytes, CgroupLimits::kUnlimited);
  EXPECT_EQ(limits->pids_limit, CgroupLimits::kUnlimited);

  writeFile(root_ / "ecs/t2/cpu.max", "50000\n");
  limits = manager->limits("/ecs/t2");
  ASSERT_FALSE(limits);
  EXPECT_EQ(limits.error().code, ErrorCode::kInternal);
  EXPECT_THAT(limits.error().message, HasSubstr((root_ / "ecs/t2/cpu.max").string()));
  EXPECT_EQ(manager->limits("/ecs/t9").error().code, ErrorCode::kNotFound);
}

TEST_F(CgroupTreeTest, V2DirectoriesAreTheOneTree) {
  makeV2Tree("cpuset cpu io memory");
  auto manager = make();
  ASSERT_TRUE(manager);
  auto directories = manager->directories("/ecs/t1/web");
  ASSERT_TRUE(directories) << directories.error().message;
  ASSERT_EQ(directories->size(), 1u);
  EXPECT_EQ((*directories)[0].path, (root_ / "ecs/t1/web").string());
  EXPECT_THAT((*directories)[0].controllers, ElementsAre("cpu", "memory"));
  EXPECT_EQ(manager->directories("/").error().code, ErrorCode::kInvalidArgument);
}

TEST_F(CgroupTreeTest, V2RemoveAndList) {
  makeV2Tree();
  auto manager = make();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->createTask("t1", TaskLimits{256, 32 * kMiB, 0}));
  ASSERT_TRUE(manager->createTask("t2", {}));
  writeFile(root_ / "ecs/t1/web/memory.max", "max");
  auto tasks = manager->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_THAT(*tasks, ElementsAre("t1", "t2"));
  auto removed = manager->removeTask("t1");
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(fs::exists(root_ / "ecs/t1"));
  ASSERT_TRUE(manager->removeTask("t1"));
  tasks = manager->listTasks();
  ASSERT_TRUE(tasks);
  EXPECT_THAT(*tasks, ElementsAre("t2"));
}

TEST_F(CgroupTreeTest, V2Stats) {
  makeV2Tree();
  auto manager = make();
  ASSERT_TRUE(manager);
  const auto dir = root_ / "ecs/t1";
  writeFile(dir / "memory.current", "5000\n");
  writeFile(dir / "memory.peak", "7000\n");
  writeFile(dir / "memory.max", "max\n");
  writeFile(dir / "memory.stat", "anon 100\nfile 4096\nkernel 8\n");
  writeFile(dir / "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
  writeFile(dir / "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n");
  writeFile(dir / "pids.current", "4\n");

  auto stats = manager->stats("/ecs/t1");
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_usage_bytes, 5000u);
  EXPECT_EQ(stats->memory_max_usage_bytes, 7000u);
  EXPECT_EQ(stats->memory_limit_bytes, UINT64_MAX);
  EXPECT_EQ(stats->memory_cache_bytes, 4096u);
  EXPECT_EQ(stats->cpu_usage_ns, 1500000u);
  EXPECT_EQ(stats->cpu_user_ns, 1000000u);
  EXPECT_EQ(stats->cpu_system_ns, 500000u);
  EXPECT_EQ(stats->pids_current, 4u);
  EXPECT_EQ(stats->oom_kills, 1u);

  writeFile(dir / "memory.max", "67108864\n");
  stats = manager->stats("/ecs/t1");
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->memory_limit_bytes, 67108864u);

  writeFile(dir / "memory.max", "plenty\n");
  EXPECT_EQ(manager->stats("/ecs/t1").error().code, ErrorCode::kInternal);
  EXPECT_EQ(manager->stats("/ecs/t9").error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace ecs::cgroups
