// StatsSampler against fake cgroup trees (v1 per-controller directories and v2 unified) and a
// fake /proc in a temp dir, with an injected /proc/net/dev reader: the Docker StatsJSON key set,
// values from each control file, cpu/precpu from two samples, v4 network rates, one namespace
// read per tick for containers that share it, and what is (not) reported for host mode, stopped
// and removed tasks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "agent/metadata/stats_sampler.h"
#include "agent/metadata/task_metadata.h"
#include "tests/support/wait_for.h"

namespace ecs::metadata {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using engine::ContainerSnapshot;
using engine::ContainerStatus;
using engine::TaskSnapshot;
using Keys = std::set<std::string>;

Keys keys(const json::object& o) {
  Keys out;
  for (const auto& kv : o) out.insert(std::string(kv.key()));
  return out;
}

void writeFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

constexpr std::string_view kNetDev =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo:     500       5    0    0    0     0          0         0      500       5    0    "
    "0    0     0       0          0\n"
    "  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";

// Counts reads per namespace path and serves eth0 counters that the test moves on.
struct FakeNet {
  std::map<std::string, int> reads;
  uint64_t rx = 1000, tx = 2000;
  NetDevReader reader() {
    return [this](const std::string& path) -> Result<NetDevMap> {
      ++reads[path];
      if (path == "/run/netns/missing") return fail(ErrorCode::kNotFound, "no {}", path);
      NetDevMap m;
      m["lo"] = NetDevCounters{500, 5, 0, 0, 500, 5, 0, 0};
      m["eth0"] = NetDevCounters{rx, 10, 1, 2, tx, 20, 3, 4};
      return m;
    };
  }
};

class StatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/metadata-stats-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    writeFile(dir_ / "proc/stat",
              "cpu  100 0 50 1000 10 0 5 7 0 0\ncpu0 50 0 25 500 5 0 2 0 0 0\n"
              "cpu1 50 0 25 500 5 0 3 0 0 0\nintr 1 2 3\n");
    writeFile(dir_ / "proc/meminfo", "MemTotal:        8000000 kB\nMemFree:  100 kB\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path cg() const { return dir_ / "cgroup"; }

  // A v1 container cgroup with the files the sampler reads.
  void makeV1Container(const std::string& path, uint64_t cpu_ns = 5'000'000) {
    for (const char* c : {"cpu", "cpuacct", "memory", "blkio", "pids"}) {
      fs::create_directories(cg() / c / path.substr(1));
    }
    setV1Cpu(path, cpu_ns);
    writeFile(cg() / "cpu" / path.substr(1) / "cpu.stat",
              "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n");
    auto mem = cg() / "memory" / path.substr(1);
    writeFile(mem / "memory.usage_in_bytes", "1048576\n");
    writeFile(mem / "memory.max_usage_in_bytes", "2097152\n");
    writeFile(mem / "memory.failcnt", "0\n");
    writeFile(mem / "memory.limit_in_bytes", "9223372036854771712\n");  // unlimited
    writeFile(mem / "memory.stat", "cache 4096\nrss 8192\ntotal_cache 4096\n");
    auto blkio = cg() / "blkio" / path.substr(1);
    writeFile(blkio / "blkio.io_service_bytes_recursive", "Total 0\n");  // no CFQ data
    writeFile(blkio / "blkio.throttle.io_service_bytes",
              "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Total 12288\n"
              "Total 12288\n");
    writeFile(blkio / "blkio.throttle.io_serviced", "8:0 Read 1\n8:0 Write 2\nTotal 3\n");
    writeFile(cg() / "pids" / path.substr(1) / "pids.current", "3\n");
    writeFile(cg() / "pids" / path.substr(1) / "pids.max", "max\n");
  }
  void setV1Cpu(const std::string& path, uint64_t cpu_ns) {
    auto acct = cg() / "cpuacct" / path.substr(1);
    writeFile(acct / "cpuacct.usage", std::to_string(cpu_ns) + "\n");
    writeFile(acct / "cpuacct.usage_percpu",
              std::to_string(cpu_ns / 2) + " " + std::to_string(cpu_ns - cpu_ns / 2) + " \n");
    writeFile(acct / "cpuacct.stat", "user 3\nsystem 1\n");
  }

  StatsSamplerOptions options() {
    StatsSamplerOptions o;
    o.cgroup_root = cg().string();
    o.proc_root = (dir_ / "proc").string();
    o.net_dev_reader = net_.reader();
    o.interval = std::chrono::milliseconds(10);
    return o;
  }

  static ContainerSnapshot container(const std::string& id, const std::string& netns) {
    ContainerSnapshot c;
    c.name = id;
    c.runtime_id = id;
    c.known = ContainerStatus::kRunning;
    c.cgroup_path = "/ecs/t1/" + id;
    c.resources.netns_path = netns;
    c.resources.network_mode = "awsvpc";
    return c;
  }
  static engine::TaskSnapshotPtr task(std::vector<ContainerSnapshot> containers,
                                      std::string mode = "awsvpc") {
    auto t = std::make_shared<TaskSnapshot>();
    t->arn = t->id = "t1";
    t->cgroup_path = "/ecs/t1";
    t->network_mode = std::move(mode);
    t->containers = std::move(containers);
    return t;
  }

  fs::path dir_;
  FakeNet net_;
  boost::asio::io_context io_;
};

TEST_F(StatsTest, DockerStatsShapeFromV1) {
  makeV1Container("/ecs/t1/c1");
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  EXPECT_FALSE(sampler.containerStats("c1", false));  // not sampled yet
  sampler.sampleOnce();
  auto s = sampler.containerStats("c1", false);
  ASSERT_TRUE(s);
  EXPECT_EQ(keys(*s),
            (Keys{"read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
                  "cpu_stats", "precpu_stats", "memory_stats", "name", "id", "networks"}));
  EXPECT_EQ((*s)["id"], "c1");
  EXPECT_EQ((*s)["name"], "/c1");
  EXPECT_EQ((*s)["preread"], "0001-01-01T00:00:00Z");
  EXPECT_EQ((*s)["pids_stats"].as_object(), (json::object{{"current", 3}}));  // "max": no limit

  auto& cpu = (*s)["cpu_stats"].as_object();
  EXPECT_EQ(keys(cpu), (Keys{"cpu_usage", "system_cpu_usage", "online_cpus", "throttling_data"}));
  auto& usage = cpu["cpu_usage"].as_object();
  EXPECT_EQ(usage["total_usage"], 5'000'000);
  EXPECT_EQ(usage["percpu_usage"].as_array(), (json::array{2'500'000, 2'500'000}));
  uint64_t tick_ns = 1'000'000'000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  EXPECT_EQ(usage["usage_in_usermode"].as_uint64(), 3 * tick_ns);
  EXPECT_EQ(usage["usage_in_kernelmode"].as_uint64(), 1 * tick_ns);
  EXPECT_EQ(cpu["system_cpu_usage"].as_uint64(), (100 + 50 + 1000 + 10 + 5) * tick_ns);
  EXPECT_EQ(cpu["online_cpus"], 2);
  EXPECT_EQ(cpu["throttling_data"].as_object(),
            (json::object{{"periods", 10}, {"throttled_periods", 2}, {"throttled_time", 3000}}));
  // No previous sample: zeros, as Docker's first frame.
  EXPECT_EQ((*s)["precpu_stats"].as_object()["cpu_usage"].as_object()["total_usage"], 0);

  auto& mem = (*s)["memory_stats"].as_object();
  EXPECT_EQ(keys(mem), (Keys{"usage", "max_usage", "stats", "limit"}));  // failcnt 0: omitted
  EXPECT_EQ(mem["usage"], 1048576);
  EXPECT_EQ(mem["max_usage"], 2097152);
  EXPECT_EQ(mem["limit"], 8000000ULL * 1024);  // unlimited: the host's memory
  EXPECT_EQ(mem["stats"].as_object()["rss"], 8192);

  auto& blkio = (*s)["blkio_stats"].as_object();
  EXPECT_EQ(keys(blkio),
            (Keys{"io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                  "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                  "io_time_recursive", "sectors_recursive"}));
  auto& bytes = blkio["io_service_bytes_recursive"].as_array();
  ASSERT_EQ(bytes.size(), 5u);  // the device's five ops; the bare Total line is not a device
  EXPECT_EQ(bytes[0].as_object(),
            (json::object{{"major", 8}, {"minor", 0}, {"op", "Read"}, {"value", 4096}}));
  EXPECT_EQ(blkio["io_serviced_recursive"].as_array().size(), 2u);
  EXPECT_TRUE(blkio["io_queue_recursive"].is_null());

  // lo is not reported, as Docker does not.
  auto& nets = (*s)["networks"].as_object();
  EXPECT_EQ(keys(nets), (Keys{"eth0"}));
  EXPECT_EQ(nets["eth0"].as_object(), (json::object{{"rx_bytes", 1000},
                                                    {"rx_packets", 10},
                                                    {"rx_errors", 1},
                                                    {"rx_dropped", 2},
                                                    {"tx_bytes", 2000},
                                                    {"tx_packets", 20},
                                                    {"tx_errors", 3},
                                                    {"tx_dropped", 4}}));
  EXPECT_FALSE(s->contains("network_rate_stats"));  // v4 only
}

TEST_F(StatsTest, CpuAndPrecpuFromTwoSamplesAndNetworkRate) {
  makeV1Container("/ecs/t1/c1", 5'000'000);
  using Clock = std::chrono::system_clock;
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  const auto before_first = Clock::now();
  sampler.sampleOnce();
  const auto after_first = Clock::now();
  auto first = sampler.containerStats("c1", true);
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)["network_rate_stats"].as_object(),
            (json::object{{"rx_bytes_per_sec", 0.0}, {"tx_bytes_per_sec", 0.0}}));
  // The rate is over the time between the two reads: make sure the clock has moved on.
  ASSERT_TRUE(ecs::testing::waitFor([&] { return Clock::now() > after_first; },
                                    std::chrono::seconds(1), "the clock to advance"));
  setV1Cpu("/ecs/t1/c1", 9'000'000);
  writeFile(dir_ / "proc/stat", "cpu  200 0 50 1000 10 0 5 7 0 0\ncpu0 1\ncpu1 1\n");
  net_.rx += 10'000;
  const auto before_second = Clock::now();
  sampler.sampleOnce();
  const auto after_second = Clock::now();
  auto second = sampler.containerStats("c1", true);
  ASSERT_TRUE(second);
  EXPECT_EQ((*second)["preread"], (*first)["read"]);
  EXPECT_EQ((*second)["precpu_stats"], (*first)["cpu_stats"]);
  EXPECT_EQ((*second)["cpu_stats"].as_object()["cpu_usage"].as_object()["total_usage"], 9'000'000);
  EXPECT_GT((*second)["cpu_stats"].as_object()["system_cpu_usage"].as_uint64(),
            (*first)["cpu_stats"].as_object()["system_cpu_usage"].as_uint64());
  // 10000 bytes per second of time between the reads, which lies between what passed from the
  // end of the first sample to the start of the second and from its start to the end; tx did not
  // move.
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  auto& rate = (*second)["network_rate_stats"].as_object();
  EXPECT_GE(rate["rx_bytes_per_sec"].as_double(), 10'000 / seconds(after_second - before_first));
  EXPECT_LE(rate["rx_bytes_per_sec"].as_double(), 10'000 / seconds(before_second - after_first));
  EXPECT_EQ(rate["tx_bytes_per_sec"].as_double(), 0.0);
}

TEST_F(StatsTest, OneNamespaceReadPerTickAndHostModeHasNoNetworks) {
  makeV1Container("/ecs/t1/a");
  makeV1Container("/ecs/t1/b");
  makeV1Container("/ecs/t1/h");
  makeV1Container("/ecs/t1/n");
  StatsSampler sampler(io_, options());
  auto host = container("h", "");
  host.resources.network_mode = "host";
  auto own = container("n", "");  // its own namespace, which nothing in the snapshot names
  own.resources.network_mode = "bridge";
  sampler.update(
      task({container("a", "/run/netns/t1"), container("b", "/run/netns/t1"), host, own}));
  sampler.sampleOnce();
  sampler.sampleOnce();
  EXPECT_EQ(net_.reads, (std::map<std::string, int>{{"/run/netns/t1", 2}}));
  EXPECT_TRUE(sampler.containerStats("a", false)->contains("networks"));
  EXPECT_TRUE(sampler.containerStats("b", false)->contains("networks"));
  EXPECT_FALSE(sampler.containerStats("h", false)->contains("networks"));
  EXPECT_FALSE(sampler.containerStats("n", false)->contains("networks"));
  EXPECT_EQ(sampler.lastTickContainers(), 4u);
}

TEST_F(StatsTest, UnreadableNamespaceStillGivesCgroupStats) {
  makeV1Container("/ecs/t1/c1");
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/missing")}));
  sampler.sampleOnce();
  auto s = sampler.containerStats("c1", true);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->contains("networks"));
  EXPECT_EQ((*s)["memory_stats"].as_object()["usage"], 1048576);
}

TEST_F(StatsTest, V2Unified) {
  writeFile(cg() / "cgroup.controllers", "cpu memory io pids\n");
  auto c = cg() / "ecs/t1/c1";
  writeFile(c / "cpu.stat",
            "usage_usec 7000\nuser_usec 5000\nsystem_usec 2000\nnr_periods 4\nnr_throttled 1\n"
            "throttled_usec 50\n");
  writeFile(c / "memory.current", "4096\n");
  writeFile(c / "memory.max", "1048576\n");
  writeFile(c / "memory.stat", "anon 1024\nfile 2048\n");
  writeFile(c / "io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n");
  writeFile(c / "pids.current", "2\n");
  writeFile(c / "pids.max", "100\n");
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  sampler.sampleOnce();
  auto s = sampler.containerStats("c1", false);
  ASSERT_TRUE(s);
  auto& usage = (*s)["cpu_stats"].as_object()["cpu_usage"].as_object();
  EXPECT_EQ(keys(usage), (Keys{"total_usage", "usage_in_kernelmode", "usage_in_usermode"}));
  EXPECT_EQ(usage["total_usage"], 7'000'000);
  EXPECT_EQ(usage["usage_in_usermode"], 5'000'000);
  EXPECT_EQ(usage["usage_in_kernelmode"], 2'000'000);
  EXPECT_EQ((*s)["cpu_stats"].as_object()["throttling_data"].as_object()["throttled_time"], 50'000);
  auto& mem = (*s)["memory_stats"].as_object();
  EXPECT_EQ(keys(mem), (Keys{"usage", "stats", "limit"}));
  EXPECT_EQ(mem["limit"], 1048576);
  EXPECT_EQ(mem["stats"].as_object()["file"], 2048);
  EXPECT_EQ(
      (*s)["blkio_stats"].as_object()["io_service_bytes_recursive"].as_array(),
      (json::array{json::object{{"major", 8}, {"minor", 0}, {"op", "read"}, {"value", 100}},
                   json::object{{"major", 8}, {"minor", 0}, {"op", "write"}, {"value", 200}}}));
  EXPECT_EQ((*s)["pids_stats"].as_object(), (json::object{{"current", 2}, {"limit", 100}}));
}

TEST_F(StatsTest, UsageSamplesAreBoundedAndSubtractV1Cache) {
  makeV1Container("/ecs/t1/c1", 1'000'000);
  auto o = options();
  o.usage_history = 3;
  StatsSampler sampler(io_, o);
  EXPECT_TRUE(sampler.usageSamples("c1").empty());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  for (uint64_t i = 1; i <= 5; ++i) {
    setV1Cpu("/ecs/t1/c1", i * 1'000'000);
    sampler.sampleOnce();
  }
  auto samples = sampler.usageSamples("c1");
  ASSERT_EQ(samples.size(), 3u);  // the oldest two were dropped
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].cpu_usage_ns, (i + 3) * 1'000'000);
    EXPECT_EQ(samples[i].online_cpus, 2u);
    EXPECT_EQ(samples[i].memory_usage_bytes, 1048576u);
    EXPECT_EQ(samples[i].memory_cache_bytes, 4096u);  // "cache", not "total_cache" or "rss"
    if (i > 0) {
      EXPECT_GT(samples[i].tick, samples[i - 1].tick);
      EXPECT_GE(samples[i].read, samples[i - 1].read);
    }
  }
  auto removed = std::make_shared<TaskSnapshot>(*task({container("c1", "/run/netns/t1")}));
  removed->removed = true;
  sampler.update(removed);
  EXPECT_TRUE(sampler.usageSamples("c1").empty());
}

TEST_F(StatsTest, UsageSamplesSubtractV2InactiveFile) {
  writeFile(cg() / "cgroup.controllers", "cpu memory io pids\n");
  auto c = cg() / "ecs/t1/c1";
  writeFile(c / "cpu.stat", "usage_usec 7000\nuser_usec 5000\nsystem_usec 2000\n");
  writeFile(c / "memory.current", "8192000\n");
  writeFile(c / "memory.stat", "anon 1024\nfile 2048\nactive_file 1000\ninactive_file 3000\n");
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  sampler.sampleOnce();
  auto samples = sampler.usageSamples("c1");
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].cpu_usage_ns, 7'000'000u);
  EXPECT_EQ(samples[0].memory_usage_bytes, 8192000u);
  EXPECT_EQ(samples[0].memory_cache_bytes, 3000u);
}

TEST_F(StatsTest, TaskStatsStoppedAndRemoved) {
  makeV1Container("/ecs/t1/c1");
  makeV1Container("/ecs/t1/c2");
  StatsSampler sampler(io_, options());
  auto c1 = container("c1", "/run/netns/t1");
  auto c2 = container("c2", "/run/netns/t1");
  c2.cgroup_path.clear();  // derived from the task cgroup: /ecs/t1/c2
  auto pulled = container("c3", "/run/netns/t1");
  pulled.known = ContainerStatus::kPulled;
  auto created = container("c4", "/run/netns/t1");
  created.known = ContainerStatus::kCreated;
  auto t = task({c1, c2, pulled, created});
  sampler.update(t);
  sampler.sampleOnce();
  auto all = sampler.taskStats(*t, true);
  EXPECT_EQ(keys(all), (Keys{"c1", "c2", "c4"}));  // c3 does not exist in the runtime yet
  EXPECT_EQ(all["c2"].as_object()["id"], "c2");
  EXPECT_TRUE(all["c2"].as_object().contains("network_rate_stats"));
  EXPECT_EQ(all["c4"].as_object(), json::object{});  // created, never sampled

  // A stopped container is no longer read; its last numbers stay until the task goes.
  auto stopped = std::make_shared<TaskSnapshot>(*t);
  stopped->containers[0].known = ContainerStatus::kStopped;
  stopped->containers[0].created_at = std::chrono::system_clock::now();
  sampler.update(stopped);
  setV1Cpu("/ecs/t1/c1", 77);
  sampler.sampleOnce();
  EXPECT_EQ(sampler.containerStats("c1", false)
                ->at("cpu_stats")
                .as_object()
                .at("cpu_usage")
                .as_object()
                .at("total_usage"),
            5'000'000);
  EXPECT_EQ(sampler.lastTickContainers(), 1u);

  auto removed = std::make_shared<TaskSnapshot>(*stopped);
  removed->removed = true;
  sampler.update(removed);
  EXPECT_FALSE(sampler.containerStats("c1", false));
  EXPECT_FALSE(sampler.containerStats("c2", false));
  sampler.sampleOnce();
  EXPECT_EQ(sampler.lastTickContainers(), 0u);
}

TEST_F(StatsTest, MissingCgroupGivesNoStats) {
  StatsSampler sampler(io_, options());
  sampler.update(task({container("gone", "/run/netns/t1")}));
  sampler.sampleOnce();
  EXPECT_FALSE(sampler.containerStats("gone", false));
}

TEST_F(StatsTest, WorkerTicksOnItsOwnTimer) {
  makeV1Container("/ecs/t1/c1");
  StatsSampler sampler(io_, options());
  sampler.update(task({container("c1", "/run/netns/t1")}));
  sampler.start();
  // Two samples: preread is a real time once the second tick has run.
  EXPECT_TRUE(ecs::testing::waitFor(
      [&] {
        auto s = sampler.containerStats("c1", false);
        return s && (*s)["preread"] != "0001-01-01T00:00:00Z";
      },
      std::chrono::seconds(5), "a second tick"));
  sampler.stop();
  EXPECT_GE(net_.reads["/run/netns/t1"], 2);
}

// 150 containers (the real agent's bad case) read in one tick; prints the figure.
TEST_F(StatsTest, OneTickOver150Containers) {
  std::vector<ContainerSnapshot> cs;
  for (int i = 0; i < 150; ++i) {
    auto id = "c" + std::to_string(i);
    makeV1Container("/ecs/t1/" + id);
    cs.push_back(container(id, "/run/netns/t" + std::to_string(i)));
  }
  StatsSampler sampler(io_, options());
  sampler.update(task(cs));
  sampler.sampleOnce();
  sampler.sampleOnce();
  EXPECT_EQ(sampler.lastTickContainers(), 150u);
  EXPECT_LT(sampler.lastTickCpuTime(), std::chrono::milliseconds(300));
  std::printf("stats tick over 150 containers: %lld us wall, %lld us cpu\n",
              static_cast<long long>(sampler.lastTickDuration().count()),
              static_cast<long long>(sampler.lastTickCpuTime().count()));
  EXPECT_TRUE(sampler.containerStats("c149", false));
}

TEST(ProcNetDev, ParsesTheKernelFormat) {
  auto m = parseProcNetDev(kNetDev);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m["eth0"].rx_bytes, 1000u);
  EXPECT_EQ(m["eth0"].rx_dropped, 2u);
  EXPECT_EQ(m["eth0"].tx_bytes, 2000u);
  EXPECT_EQ(m["eth0"].tx_dropped, 4u);
  EXPECT_EQ(m["lo"].tx_packets, 5u);
  EXPECT_TRUE(parseProcNetDev("garbage\n").empty());
}

TEST(ProcNetDev, ReadsTheAgentsOwnNamespaceAndFailsOnAMissingOne) {
  // Our own namespace through its /proc path: the setns round trip works and has loopback.
  auto own = readNetDevInNetns("/proc/self/ns/net");
  ASSERT_TRUE(own) << own.error().message;
  EXPECT_TRUE(own->contains("lo"));
  auto missing = readNetDevInNetns("/run/netns/metadata-test-does-not-exist");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, ::testing::HasSubstr("metadata-test-does-not-exist"));
}

}  // namespace
}  // namespace ecs::metadata
