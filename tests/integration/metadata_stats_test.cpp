// StatsSampler against the real kernel (as root, cgroup v1 or v2): a busy child process in a
// real container cgroup (<parent>/task/ctr of a CgroupSandbox, made through the cgroups module)
// and a real network namespace (`ip netns add`) with a veth to the host that the child sends UDP
// through. Checks that cpu usage grows between samples, memory is non-zero, the pids count the
// child, net counters are read from inside the namespace (and the reading thread comes back to
// its own namespace), and times one tick over 150 real container cgroups. Every cgroup, namespace
// and link is removed and checked gone. Needs no harness peer.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "agent/metadata/stats_sampler.h"
#include "tests/support/cgroup_sandbox.h"
#include "tests/support/wait_for.h"

namespace ecs::metadata {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::CgroupSandbox;
using ecs::testing::waitFor;

int sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

std::string ownNetns() {
  std::error_code ec;
  return fs::read_symlink("/proc/thread-self/ns/net", ec).string();
}

// The test's kernel objects: a cgroup sandbox with one task cgroup, and a netns with a veth whose
// host end is 172.31.250.1/30. All removed on destruction (children killed first).
class Fixture {
 public:
  Fixture() : name_(sandbox_.parent()) {}
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;
  ~Fixture() { cleanup(); }

  CgroupSandbox& sandbox() { return sandbox_; }
  std::string netnsPath() const { return "/run/netns/" + name_; }
  std::string hostVeth() const { return "vm" + std::to_string(::getpid() % 100000) + "h"; }

  // The task cgroup "task" and a container cgroup `name` in it; returns the container's path.
  std::string makeContainerCgroup(const std::string& name) {
    auto* manager = sandbox_.manager();
    if (manager == nullptr) {
      ADD_FAILURE() << sandbox_.error();
      return {};
    }
    auto created = manager->createTask("task", {});
    EXPECT_TRUE(created) << created.error().message;
    const auto path = manager->containerCgroupsPath("task", name);
    EXPECT_TRUE(sandbox_.makeCgroup(path));
    return path;
  }
  bool makeNetns() {
    made_netns_ = sh("ip netns add " + name_) == 0;
    if (!made_netns_) return false;
    std::string in = "ip netns exec " + name_ + " ";
    return sh("ip link add " + hostVeth() + " type veth peer name eth0 netns " + name_) == 0 &&
           sh("ip addr add 172.31.250.1/30 dev " + hostVeth()) == 0 &&
           sh("ip link set " + hostVeth() + " up") == 0 &&
           sh(in + "ip addr add 172.31.250.2/30 dev eth0") == 0 &&
           sh(in + "ip link set eth0 up") == 0 && sh(in + "ip link set lo up") == 0;
  }

  // Removes everything; returns what survived, for the leak check.
  std::vector<std::string> cleanup() {
    std::vector<std::string> left = sandbox_.sweep();
    // Deleting the veth explicitly: the kernel tears a deleted namespace's devices down
    // asynchronously, so the host end would outlive `ip netns del` for a moment.
    if (fs::exists("/sys/class/net/" + hostVeth())) sh("ip link del " + hostVeth());
    if (made_netns_) sh("ip netns del " + name_);
    made_netns_ = false;
    if (fs::exists(netnsPath())) left.push_back(netnsPath());
    if (fs::exists("/sys/class/net/" + hostVeth())) left.push_back("link " + hostVeth());
    return left;
  }

 private:
  CgroupSandbox sandbox_;
  std::string name_;
  bool made_netns_ = false;
};

engine::TaskSnapshotPtr snapshot(const std::vector<std::pair<std::string, std::string>>& ids,
                                 const std::string& netns) {
  auto t = std::make_shared<engine::TaskSnapshot>();
  t->arn = t->id = "task";
  t->network_mode = "awsvpc";
  for (const auto& [id, cgroup] : ids) {
    engine::ContainerSnapshot c;
    c.name = c.runtime_id = id;
    c.known = engine::ContainerStatus::kRunning;
    c.cgroup_path = cgroup;
    c.resources.netns_path = netns;
    c.resources.network_mode = "awsvpc";
    t->containers.push_back(std::move(c));
  }
  return t;
}

class MetadataStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  }
  boost::asio::io_context io_;
};

TEST_F(MetadataStatsTest, SamplesARealProcessAndNamespace) {
  std::vector<std::string> leftovers;
  {
    Fixture fx;
    const std::string cgroup = fx.makeContainerCgroup("ctr");
    ASSERT_FALSE(cgroup.empty());
    ASSERT_TRUE(fx.makeNetns());

    // The child: joins the cgroup (the parent writes it in before releasing it), enters the
    // namespace, sends UDP to the host end of the veth, then burns cpu holding 8 MiB.
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      char byte;
      ::close(go[1]);
      if (::read(go[0], &byte, 1) != 1) ::_exit(1);
      int ns = ::open(fx.netnsPath().c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) ::_exit(2);
      std::vector<char> memory(8 << 20, 1);
      int s = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(9);  // discard
      ::inet_pton(AF_INET, "172.31.250.1", &to.sin_addr);
      char payload[1000] = {};
      volatile uint64_t spin = 0;
      for (;;) {
        ::sendto(s, payload, sizeof payload, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        for (int i = 0; i < 2'000'000; ++i)
          spin = spin + static_cast<uint64_t>(memory[i % memory.size()]);
      }
    }
    fx.sandbox().adopt(pid);
    ::close(go[0]);
    ASSERT_TRUE(fx.sandbox().moveInto(cgroup, pid, {"cpu", "cpuacct", "memory", "blkio", "pids"}));
    ASSERT_EQ(::write(go[1], "x", 1), 1);
    ::close(go[1]);

    StatsSamplerOptions options;
    options.interval = 100ms;
    StatsSampler sampler(io_, options);
    sampler.update(snapshot({{"ctr", cgroup}}, fx.netnsPath()));
    sampler.start();
    auto total = [](const json::object& s) {
      return s.at("cpu_stats").at("cpu_usage").at("total_usage").as_uint64();
    };
    auto tx_packets = [](const json::object& s) -> uint64_t {
      const auto* networks = s.if_contains("networks");
      const auto* eth0 = networks ? networks->as_object().if_contains("eth0") : nullptr;
      return eth0 ? eth0->at("tx_packets").as_uint64() : 0;
    };
    // A first sample in which the child has run and sent, then one in which its cpu time has grown
    // by at least 10 ms and it has sent more: what the checks below compare.
    std::optional<json::object> first, second;
    EXPECT_TRUE(waitFor(
        [&] {
          first = sampler.containerStats("ctr", true);
          return first && total(*first) > 0 && tx_packets(*first) > 0;
        },
        20s, "a sample with the child's cpu time and packets"));
    ASSERT_TRUE(first);
    EXPECT_TRUE(waitFor(
        [&] {
          second = sampler.containerStats("ctr", true);
          return second && total(*second) > total(*first) + 10'000'000ULL &&
                 tx_packets(*second) > tx_packets(*first);
        },
        20s, "the child's cpu time to grow by 10 ms"));
    sampler.stop();
    ASSERT_TRUE(second);

    EXPECT_GT(total(*first), 0u);
    EXPECT_GT(total(*second), total(*first) + 10'000'000ULL);
    EXPECT_GT(second->at("cpu_stats").at("system_cpu_usage").as_uint64(),
              first->at("cpu_stats").at("system_cpu_usage").as_uint64());
    EXPECT_GT(second->at("precpu_stats").at("cpu_usage").at("total_usage").as_uint64(), 0u);
    EXPECT_GE(second->at("memory_stats").at("usage").as_uint64(), 8ULL << 20);
    EXPECT_GE(second->at("pids_stats").at("current").as_uint64(), 1u);
    ASSERT_TRUE(second->contains("networks")) << json::serialize(*second);
    auto& eth0 = second->at("networks").at("eth0").as_object();
    EXPECT_GT(eth0.at("tx_packets").as_uint64(), 0u);
    EXPECT_GT(eth0.at("tx_bytes").as_uint64(), 1000u);
    EXPECT_GT(eth0.at("rx_packets").as_uint64(), 0u);  // ARP replies from the host end
    EXPECT_FALSE(second->at("networks").as_object().contains("lo"));
    EXPECT_GT(second->at("network_rate_stats").at("tx_bytes_per_sec").as_double(), 0.0);

    // A read on this thread leaves it in its own namespace.
    const auto before = ownNetns();
    sampler.sampleOnce();
    EXPECT_EQ(ownNetns(), before);

    leftovers = fx.cleanup();
  }
  EXPECT_TRUE(leftovers.empty()) << leftovers.front();
}

// The figure behind "one timer, not a stream per container": one tick over 150 real (idle)
// container cgroups, all in one namespace.
TEST_F(MetadataStatsTest, OneTickOver150RealCgroups) {
  std::vector<std::string> leftovers;
  {
    Fixture fx;
    ASSERT_TRUE(fx.makeNetns());
    std::vector<std::pair<std::string, std::string>> ids;
    for (int i = 0; i < 150; ++i) {
      auto id = "c" + std::to_string(i);
      const auto cgroup = fx.makeContainerCgroup(id);
      ASSERT_FALSE(cgroup.empty());
      ids.emplace_back(id, cgroup);
    }
    StatsSampler sampler(io_, StatsSamplerOptions{});
    sampler.update(snapshot(ids, fx.netnsPath()));
    sampler.sampleOnce();
    sampler.sampleOnce();
    EXPECT_EQ(sampler.lastTickContainers(), 150u);
    EXPECT_TRUE(sampler.containerStats("c149", false));
    std::printf("stats tick over 150 real cgroups: %lld us wall, %lld us cpu\n",
                static_cast<long long>(sampler.lastTickDuration().count()),
                static_cast<long long>(sampler.lastTickCpuTime().count()));
    // Cpu time, not wall time: the figure must not depend on what else the machine is doing.
    EXPECT_LT(sampler.lastTickCpuTime(), 100ms);
    leftovers = fx.cleanup();
  }
  EXPECT_TRUE(leftovers.empty()) << leftovers.front();
}

}  // namespace
}  // namespace ecs::metadata
