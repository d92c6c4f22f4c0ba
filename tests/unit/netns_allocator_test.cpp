// The host-port allocator and IPAM of netns/: static and dynamic ports (reserved, held, in use on
// the host, contiguous runs, all-or-nothing), persistence across reopen, byte-identical state
// after churn, sweeping allocations of dead agent processes (forked children), processes
// allocating concurrently from one file, the default dynamic range derived from
// ip_local_port_range, the real bind probe, and IPAM over small and large subnets.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "netns/allocation_file.h"
#include "netns/host_port_allocator.h"
#include "netns/ipam.h"

namespace ecs::netns {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const fs::path& path, const std::string& content) {
  std::ofstream(path) << content;
}

PortRequest tcp(std::optional<int> host_port = std::nullopt, int count = 1) {
  return PortRequest{Protocol::kTcp, count, host_port};
}
PortRequest udp(std::optional<int> host_port = std::nullopt, int count = 1) {
  return PortRequest{Protocol::kUdp, count, host_port};
}

// Runs `body` in a forked child, which exits 0 when it returns true. Returns the child's pid.
pid_t forkChild(const std::function<bool()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body() ? 0 : 1);
  return pid;
}

// Waits for `pid`; true if it exited 0.
bool reap(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A pid that belonged to a process that has exited and been reaped.
int deadPid() {
  pid_t pid = forkChild([] { return true; });
  EXPECT_TRUE(reap(pid));
  return pid;
}

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/netns-alloc-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

// --- AllocationFile ------------------------------------------------------------------------------

TEST(ProcessIdentityTest, CurrentProcessIsAliveAndAReapedChildIsNot) {
  ProcessIdentity self = currentProcess();
  EXPECT_EQ(self.pid, ::getpid());
  EXPECT_GT(self.start_time, 0u);
  EXPECT_TRUE(isAlive(self));
  // Same pid, another start time: the pid was reused by another process.
  EXPECT_FALSE(isAlive(ProcessIdentity{self.pid, self.start_time + 1}));
  EXPECT_FALSE(isAlive(ProcessIdentity{deadPid(), self.start_time}));
  EXPECT_FALSE(isAlive(ProcessIdentity{0, 0}));
}

TEST(ProcessIdentityTest, AZombieIsNotAlive) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  pid_t pid = forkChild([&] {
    ::close(pipe_fds[0]);
    auto start = processStartTime(::getpid());
    uint64_t value = start.value_or(0);
    return ::write(pipe_fds[1], &value, sizeof value) == sizeof value;
  });
  ::close(pipe_fds[1]);
  uint64_t start = 0;
  ASSERT_EQ(::read(pipe_fds[0], &start, sizeof start), static_cast<ssize_t>(sizeof start));
  ::close(pipe_fds[0]);
  ASSERT_GT(start, 0u);
  // Not reaped yet: wait until it is a zombie, which holds nothing.
  for (int i = 0; i < 500 && processStartTime(pid); ++i) ::usleep(2000);
  EXPECT_FALSE(isAlive(ProcessIdentity{pid, start}));
  EXPECT_TRUE(reap(pid));
}

TEST_F(TempDirTest, AllocationFileCreatesDirectoryAndRewritesAtomically) {
  AllocationFile file((dir_ / "sub" / "state.json").string());
  ASSERT_TRUE(file.update([](std::string_view content) -> Result<std::string> {
    EXPECT_EQ(content, "");
    return std::string("one\n");
  }));
  EXPECT_EQ(readFile(dir_ / "sub" / "state.json"), "one\n");
  // An error from the change writes nothing.
  auto failed = file.update(
      [](std::string_view) -> Result<std::string> { return fail(ErrorCode::kInternal, "no"); });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "no");
  EXPECT_EQ(*file.read(), "one\n");
  EXPECT_FALSE(fs::exists(dir_ / "sub" / "state.json.tmp"));
  // A missing file reads as empty and is not created by reading.
  AllocationFile missing((dir_ / "missing.json").string());
  EXPECT_EQ(*missing.read(), "");
  EXPECT_FALSE(fs::exists(dir_ / "missing.json"));
}

// --- parsing ranges ------------------------------------------------------------------------------

TEST(HostPortRangeTest, Parses) {
  auto range = parseHostPortRange("61000-65535");
  ASSERT_TRUE(range) << range.error().message;
  EXPECT_EQ(range->first, 61000);
  EXPECT_EQ(range->last, 65535);
  range = parseHostPortRange(" 100 - 100 ");
  ASSERT_TRUE(range) << range.error().message;
  EXPECT_EQ(range->first, 100);
  EXPECT_EQ(range->last, 100);
  EXPECT_EQ(toString(Protocol::kTcp), "tcp");
  EXPECT_EQ(toString(Protocol::kUdp), "udp");
}

TEST(HostPortRangeTest, RejectsBadRanges) {
  for (const char* text :
       {"", "8080", "200-100", "0-10", "1-65536", "a-b", "100-200x", "-5-10", "100-", "-100"}) {
    auto range = parseHostPortRange(text);
    ASSERT_FALSE(range) << text;
    EXPECT_EQ(range.error().code, ErrorCode::kInvalidArgument) << text;
    EXPECT_THAT(range.error().message, HasSubstr("host port range")) << text;
  }
}

TEST_F(TempDirTest, DefaultDynamicRangeAvoidsTheKernelEphemeralRange) {
  struct Case {
    std::string content;
    int first;
    int last;
  };
  for (const Case& c : std::vector<Case>{
           {"32768\t60999\n", 61000, 65535},  // Linux default: the run above
           {"49152\t65535\n", 1024, 49151},   // nothing above: below it
           {"1024 64000\n", 64001, 65535},    // above holds >= 1024 ports: preferred
           {"40000 65000\n", 1024, 39999},    // 535 above: the larger run below wins
           {"1 65000\n", 65001, 65535},       // nothing below 1024 counts
       }) {
    writeFile(dir_ / "range", c.content);
    auto range = defaultDynamicPortRange((dir_ / "range").string());
    ASSERT_TRUE(range) << c.content << ": " << range.error().message;
    EXPECT_EQ(range->first, c.first) << c.content;
    EXPECT_EQ(range->last, c.last) << c.content;
  }
}

TEST_F(TempDirTest, DefaultDynamicRangeErrors) {
  writeFile(dir_ / "range", "1024\t65535\n");
  auto range = defaultDynamicPortRange((dir_ / "range").string());
  ASSERT_FALSE(range);
  EXPECT_EQ(range.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(range.error().message, HasSubstr("ECS_DYNAMIC_HOST_PORT_RANGE"));
  EXPECT_THAT(range.error().message, HasSubstr("1024-65535"));

  for (const char* bad : {"", "garbage", "100", "60999 32768", "1 2 3", "0 100", "1 70000"}) {
    writeFile(dir_ / "range", bad);
    range = defaultDynamicPortRange((dir_ / "range").string());
    ASSERT_FALSE(range) << bad;
    EXPECT_EQ(range.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  range = defaultDynamicPortRange((dir_ / "missing").string());
  ASSERT_FALSE(range);
  EXPECT_THAT(range.error().message, HasSubstr("missing"));
}

TEST(DefaultDynamicRangeTest, ThisHostsRangeDoesNotOverlapTheKernels) {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  int high = 0;
  ASSERT_TRUE(in >> low >> high);
  auto range = defaultDynamicPortRange();
  if (!range) GTEST_SKIP() << range.error().message;
  EXPECT_TRUE(range->last < low || range->first > high)
      << range->first << "-" << range->last << " vs " << low << "-" << high;
  EXPECT_GE(range->first, 1024);
  EXPECT_LE(range->last, 65535);
}

// --- HostPortAllocator ---------------------------------------------------------------------------

class HostPortAllocatorTest : public TempDirTest {
 protected:
  // Ports the fake host has bound; every probe is counted.
  std::set<std::pair<Protocol, int>> busy_;
  std::map<std::pair<Protocol, int>, int> probes_;
  std::mutex probe_mutex_;

  fs::path statePath() const { return dir_ / "host-ports.json"; }

  HostPortAllocatorOptions options(HostPortRange range = {20000, 20099}) {
    HostPortAllocatorOptions o;
    o.state_path = statePath().string();
    o.dynamic_range = range;
    o.reserved_tcp = {22, 2375, 2376, 51678, 51679};
    o.reserved_udp = {53};
    o.port_in_use = [this](Protocol protocol, int port) {
      std::lock_guard lock(probe_mutex_);
      ++probes_[{protocol, port}];
      return busy_.contains({protocol, port});
    };
    return o;
  }

  std::unique_ptr<HostPortAllocator> open(HostPortAllocatorOptions o) {
    auto allocator = HostPortAllocator::open(std::move(o));
    EXPECT_TRUE(allocator) << allocator.error().message;
    return allocator ? std::move(*allocator) : nullptr;
  }
  std::unique_ptr<HostPortAllocator> open(HostPortRange range = {20000, 20099}) {
    return open(options(range));
  }
};

TEST_F(HostPortAllocatorTest, OpenValidatesOptions) {
  auto o = options();
  o.state_path = "";
  EXPECT_EQ(HostPortAllocator::open(o).error().code, ErrorCode::kInvalidArgument);
  for (HostPortRange bad : {HostPortRange{0, 0}, HostPortRange{0, 100}, HostPortRange{100, 99},
                            HostPortRange{60000, 65536}}) {
    auto result = HostPortAllocator::open(options(bad));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(result.error().message, HasSubstr("ECS_DYNAMIC_HOST_PORT_RANGE"));
  }
  o = options();
  o.reserved_tcp.push_back(0);
  EXPECT_THAT(HostPortAllocator::open(o).error().message, HasSubstr("ECS_RESERVED_PORTS"));
  o = options();
  o.reserved_udp.push_back(65536);
  EXPECT_THAT(HostPortAllocator::open(o).error().message, HasSubstr("ECS_RESERVED_PORTS_UDP"));
  EXPECT_FALSE(fs::exists(statePath()));  // nothing written for a bad configuration
}

TEST_F(HostPortAllocatorTest, OpenFailsOnACorruptStateFileAndLeavesIt) {
  for (const char* bad : {"{", "[]", "{\"owners\":[]}",
                          "{\"owners\":{\"t\":{\"pid\":1,\"start_time\":1,\"ports\":[{\"protocol\":"
                          "\"sctp\",\"first\":1,\"count\":1}]}}}",
                          "{\"owners\":{\"t\":{\"pid\":1,\"start_time\":1,\"ports\":[{\"protocol\":"
                          "\"tcp\",\"first\":65535,\"count\":2}]}}}",
                          "{\"owners\":{\"t\":{\"start_time\":1,\"ports\":[]}}}"}) {
    writeFile(statePath(), bad);
    auto result = HostPortAllocator::open(options());
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kDataLoss) << bad;
    EXPECT_THAT(result.error().message, HasSubstr(statePath().string())) << bad;
    EXPECT_EQ(readFile(statePath()), bad);
  }
}

TEST_F(HostPortAllocatorTest, StaticPortsAndConflicts) {
  auto allocator = open();
  auto ports = allocator->allocate("task-a", {tcp(8080), udp(8080)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(8080, 8080));

  auto conflict = allocator->allocate("task-b", {tcp(8080)});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(conflict.error().message, "host port 8080/tcp is already used by task task-a");
  conflict = allocator->allocate("task-b", {udp(8080)});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().message, "host port 8080/udp is already used by task task-a");

  // The same owner cannot hold one port twice either.
  conflict = allocator->allocate("task-a", {tcp(8080)});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().message, "host port 8080/tcp is already used by task task-a");
  conflict = allocator->allocate("task-c", {tcp(9090), tcp(9090)});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().message, "host port 9090/tcp is already used by task task-c");

  // host_port 0 is dynamic, not port 0.
  ports = allocator->allocate("task-c", {tcp(0)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(20000));
  EXPECT_THAT(allocator->owners(), ElementsAre("task-a", "task-c"));
}

TEST_F(HostPortAllocatorTest, ReservedPortsAreRefusedPerProtocol) {
  auto allocator = open();
  auto result = allocator->allocate("task", {tcp(22)});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(result.error().message, "host port 22/tcp is reserved (ECS_RESERVED_PORTS)");
  result = allocator->allocate("task", {udp(53)});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "host port 53/udp is reserved (ECS_RESERVED_PORTS_UDP)");
  // The lists are per protocol.
  result = allocator->allocate("task", {udp(22), tcp(53)});
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_THAT(*result, ElementsAre(22, 53));
}

TEST_F(HostPortAllocatorTest, PortsInUseOnTheHostAreRefused) {
  busy_ = {{Protocol::kTcp, 9000}};
  auto allocator = open();
  auto result = allocator->allocate("task", {tcp(9000)});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(result.error().message, "host port 9000/tcp is in use on the host");
  result = allocator->allocate("task", {udp(9000)});
  ASSERT_TRUE(result) << result.error().message;
}

TEST_F(HostPortAllocatorTest, DynamicPortsAreTheLowestFreeOnes) {
  auto o = options({20000, 20010});
  o.reserved_tcp.push_back(20000);
  busy_ = {{Protocol::kTcp, 20001}};
  auto allocator = open(o);
  ASSERT_TRUE(allocator->allocate("other", {tcp(20002)}));
  probes_.clear();  // the static port was probed
  auto ports = allocator->allocate("task", {tcp(), tcp(), udp()});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(20003, 20004, 20000));
  // Reserved and held ports are skipped without asking the host.
  EXPECT_FALSE(probes_.contains({Protocol::kTcp, 20000}));
  EXPECT_FALSE(probes_.contains({Protocol::kTcp, 20002}));
  EXPECT_TRUE(probes_.contains({Protocol::kTcp, 20001}));
}

TEST_F(HostPortAllocatorTest, DynamicExhaustionNamesTheRange) {
  auto allocator = open({30000, 30002});
  ASSERT_TRUE(allocator->allocate("a", {tcp(), tcp()}));
  ASSERT_TRUE(allocator->allocate("b", {tcp()}));
  auto result = allocator->allocate("c", {tcp()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(result.error().message, HasSubstr("30000-30002"));
  EXPECT_THAT(result.error().message, HasSubstr("ECS_DYNAMIC_HOST_PORT_RANGE"));
  EXPECT_THAT(result.error().message, HasSubstr("tcp"));
  // UDP is a separate space.
  EXPECT_TRUE(allocator->allocate("c", {udp()}));
  allocator->release("a");
  result = allocator->allocate("c", {tcp()});
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_THAT(*result, ElementsAre(30000));
}

TEST_F(HostPortAllocatorTest, RangesAreContiguous) {
  busy_ = {{Protocol::kTcp, 40003}};
  auto allocator = open({40000, 40020});
  ASSERT_TRUE(allocator->allocate("holder", {tcp(40010)}));
  // 40000-40002 is too short (40003 is bound), 40004-40009 too (40010 is held).
  auto ports = allocator->allocate("task", {tcp(std::nullopt, 7)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(40011));
  // Single ports and short runs fill the gaps from the bottom.
  ports = allocator->allocate("task", {tcp(), tcp(std::nullopt, 3)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(40000, 40004));
  // Every port of a run is held: 40017 was taken by the run 40011-40017.
  auto conflict = allocator->allocate("other", {tcp(40017)});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().message, "host port 40017/tcp is already used by task task");
  // Gaps left: 40001-40002, 40007-40009, 40018-40020. A run longer than any of them fails.
  auto none = allocator->allocate("other", {tcp(std::nullopt, 4)});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(none.error().message, HasSubstr("no run of 4 free tcp host ports"));
  ports = allocator->allocate("other", {tcp(std::nullopt, 3), tcp(std::nullopt, 3)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(40007, 40018));
}

TEST_F(HostPortAllocatorTest, StaticRangeConflictNamesThePortAndTheRange) {
  auto allocator = open();
  ASSERT_TRUE(allocator->allocate("a", {tcp(8001)}));
  auto result = allocator->allocate("b", {tcp(8000, 3)});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(result.error().message,
            "host ports 8000-8002/tcp: host port 8001/tcp is already used by task a");
  result = allocator->allocate("b", {tcp(8002, 3)});
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_THAT(*result, ElementsAre(8002));
}

TEST_F(HostPortAllocatorTest, StaticRequestsAreServedBeforeDynamicOnes) {
  auto allocator = open({50000, 50001});
  auto ports = allocator->allocate("task", {tcp(), tcp(50000)});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(50001, 50000));
}

TEST_F(HostPortAllocatorTest, AllOrNothing) {
  auto allocator = open({20000, 20001});
  ASSERT_TRUE(allocator->allocate("holder", {tcp(8081)}));
  std::string before = readFile(statePath());
  // The second static port fails: the first is not kept.
  auto result = allocator->allocate("task", {tcp(8080), udp(), tcp(8081)});
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("8081/tcp"));
  // The dynamic range runs out after two: the two are not kept.
  result = allocator->allocate("task", {tcp(), tcp(), tcp(8080), tcp()});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(readFile(statePath()), before);
  EXPECT_THAT(allocator->owners(), ElementsAre("holder"));
  auto ports = allocator->allocate("other", {tcp(8080), tcp(), tcp()});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(8080, 20000, 20001));
}

TEST_F(HostPortAllocatorTest, InvalidRequestsAreRejected) {
  auto allocator = open();
  for (const PortRequest& bad : {tcp(-1), tcp(65536), tcp(65535, 2), tcp(std::nullopt, 0),
                                 tcp(8080, -3), tcp(std::nullopt, 70000)}) {
    auto result = allocator->allocate("task", {tcp(7000), bad});
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << result.error().message;
  }
  EXPECT_EQ(allocator->allocate("", {tcp()}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(allocator->owners(), IsEmpty());
  auto last = allocator->allocate("task", {tcp(65534, 2)});
  ASSERT_TRUE(last) << last.error().message;
}

TEST_F(HostPortAllocatorTest, AllocationsPersistAcrossReopen) {
  {
    auto allocator = open();
    ASSERT_TRUE(allocator->allocate("task-a", {tcp(8080), tcp(), udp(std::nullopt, 3)}));
  }
  auto allocator = open();
  EXPECT_THAT(allocator->owners(), ElementsAre("task-a"));
  auto conflict = allocator->allocate("task-b", {tcp(8080)});
  ASSERT_FALSE(conflict);
  EXPECT_THAT(conflict.error().message, HasSubstr("task task-a"));
  auto ports = allocator->allocate("task-b", {tcp(), udp()});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(20001, 20003));
}

TEST_F(HostPortAllocatorTest, TwoInstancesOnOneFileSeeEachOther) {
  auto first = open();
  auto second = open();
  ASSERT_TRUE(first->allocate("a", {tcp(8080)}));
  auto conflict = second->allocate("b", {tcp(8080)});
  ASSERT_FALSE(conflict);
  EXPECT_THAT(second->owners(), ElementsAre("a"));
  second->release("a");
  EXPECT_THAT(first->owners(), IsEmpty());
}

TEST_F(HostPortAllocatorTest, ReleaseIsIdempotent) {
  auto allocator = open();
  ASSERT_TRUE(allocator->allocate("task", {tcp(8080), tcp()}));
  allocator->release("task");
  allocator->release("task");
  allocator->release("never-seen");
  EXPECT_THAT(allocator->owners(), IsEmpty());
  auto ports = allocator->allocate("other", {tcp(8080), tcp()});
  ASSERT_TRUE(ports) << ports.error().message;
  EXPECT_THAT(*ports, ElementsAre(8080, 20000));
}

TEST_F(HostPortAllocatorTest, StateFileIsByteIdenticalAfterChurn) {
  auto allocator = open();
  std::string empty = readFile(statePath());
  EXPECT_FALSE(empty.empty());
  ASSERT_TRUE(allocator->allocate("resident", {tcp(7000), udp()}));
  std::string before = readFile(statePath());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i) {
      std::string owner = fmt::format("task-{}", (i * 7) % 10);
      ASSERT_TRUE(allocator->allocate(owner, {tcp(8000 + i), tcp(), udp(std::nullopt, 2)}));
      ASSERT_TRUE(allocator->allocate(owner, {tcp(std::nullopt, 3)}));  // adds to the owner
    }
    EXPECT_EQ(allocator->owners().size(), 11u);
    for (int i = 9; i >= 0; --i) allocator->release(fmt::format("task-{}", (i * 3) % 10));
    EXPECT_EQ(readFile(statePath()), before) << "round " << round;
  }
  allocator->release("resident");
  EXPECT_EQ(readFile(statePath()), empty);
  EXPECT_FALSE(fs::exists(statePath().string() + ".tmp"));
}

TEST_F(HostPortAllocatorTest, SweepDeadFreesWhatADeadAgentHeld) {
  auto allocator = open();
  ASSERT_TRUE(allocator->allocate("parent-task", {tcp(8080)}));
  // Another agent process allocates and goes away without releasing.
  pid_t child = forkChild([&] {
    auto mine = HostPortAllocator::open(options());
    return mine && (*mine)->allocate("child-task", {tcp(8081), udp()}).has_value();
  });
  ASSERT_TRUE(reap(child));
  EXPECT_THAT(allocator->owners(), ElementsAre("child-task", "parent-task"));
  EXPECT_FALSE(allocator->allocate("x", {tcp(8081)}));  // still held until swept

  EXPECT_THAT(allocator->sweepDead(), ElementsAre("child-task"));
  EXPECT_THAT(allocator->owners(), ElementsAre("parent-task"));
  EXPECT_THAT(allocator->sweepDead(), IsEmpty());
  auto ports = allocator->allocate("x", {tcp(8081)});
  ASSERT_TRUE(ports) << ports.error().message;
}

TEST_F(HostPortAllocatorTest, SweepDeadChecksPidAndStartTime) {
  ProcessIdentity self = currentProcess();
  auto init_start = processStartTime(1);
  ASSERT_TRUE(init_start);
  writeFile(
      statePath(),
      fmt::format(
          R"({{"owners":{{)"
          R"("dead":{{"pid":{},"start_time":{},"ports":[{{"protocol":"tcp","first":8001,"count":1}}]}},)"
          R"("init":{{"pid":1,"start_time":{},"ports":[{{"protocol":"tcp","first":8002,"count":1}}]}},)"
          R"("reused":{{"pid":{},"start_time":{},"ports":[{{"protocol":"udp","first":8003,"count":2}}]}}}}}})"
          "\n",
          deadPid(), self.start_time, *init_start, self.pid, self.start_time + 1));
  auto allocator = open();
  EXPECT_THAT(allocator->owners(), ElementsAre("dead", "init", "reused"));
  EXPECT_THAT(allocator->sweepDead(), UnorderedElementsAre("dead", "reused"));
  EXPECT_THAT(allocator->owners(), ElementsAre("init"));
  EXPECT_FALSE(allocator->allocate("t", {tcp(8002)}));
  EXPECT_TRUE(allocator->allocate("t", {tcp(8001), udp(8004)}));
}

TEST_F(HostPortAllocatorTest, ARestartedAgentAdoptsItsTasksPorts) {
  pid_t child = forkChild([&] {
    auto mine = HostPortAllocator::open(options());
    return mine && (*mine)->allocate("task", {tcp(8080), tcp()}).has_value();
  });
  ASSERT_TRUE(reap(child));
  auto allocator = open();
  auto adopted = allocator->allocate("task", {});
  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_THAT(*adopted, IsEmpty());
  EXPECT_THAT(allocator->sweepDead(), IsEmpty());
  EXPECT_THAT(allocator->owners(), ElementsAre("task"));
  EXPECT_FALSE(allocator->allocate("other", {tcp(8080)}));
  // No requests for an owner that holds nothing writes nothing.
  std::string before = readFile(statePath());
  ASSERT_TRUE(allocator->allocate("nobody", {}));
  EXPECT_EQ(readFile(statePath()), before);
}

TEST_F(HostPortAllocatorTest, DeadOwnersFreesNothingAndAdoptTakesATaskOverWithWhatItHolds) {
  ASSERT_TRUE(open()->allocate("mine", {tcp(8090)}));
  pid_t child = forkChild([&] {
    auto theirs = HostPortAllocator::open(options());
    return theirs && (*theirs)->allocate("task", {tcp(), tcp(8080), udp(9000, 3)}).has_value() &&
           (*theirs)->allocate("other", {udp()}).has_value();
  });
  ASSERT_TRUE(reap(child));
  auto allocator = open();
  const std::string before = readFile(statePath());
  EXPECT_THAT(allocator->deadOwners(), ElementsAre("other", "task"));
  EXPECT_EQ(readFile(statePath()), before);  // looking frees nothing
  // What the dead agent recorded, statics first as allocate() took them, then the dynamic one.
  auto held = allocator->held("task");
  ASSERT_TRUE(held) << held.error().message;
  ASSERT_EQ(held->size(), 3u);
  EXPECT_EQ((*held)[0].first, 8080);
  EXPECT_EQ((*held)[1].protocol, Protocol::kUdp);
  EXPECT_EQ((*held)[1].first, 9000);
  EXPECT_EQ((*held)[1].count, 3);
  EXPECT_EQ((*held)[2].protocol, Protocol::kTcp);
  EXPECT_EQ((*held)[2].first, 20000);
  EXPECT_THAT(*allocator->held("nobody"), IsEmpty());

  ASSERT_TRUE(allocator->adopt("task"));
  EXPECT_THAT(readFile(statePath()),
              HasSubstr(fmt::format(R"("task":{{"pid":{},"start_time":{},)", ::getpid(),
                                    currentProcess().start_time)));
  EXPECT_THAT(allocator->deadOwners(), ElementsAre("other"));
  EXPECT_THAT(allocator->sweepDead(), ElementsAre("other"));
  EXPECT_THAT(allocator->owners(), ElementsAre("mine", "task"));
  // Adopting changed the owner only: the ports are held as before.
  EXPECT_EQ(allocator->held("task")->size(), 3u);
  auto taken = allocator->allocate("x", {tcp(8080)});
  ASSERT_FALSE(taken);
  EXPECT_THAT(taken.error().message, HasSubstr("already used by task task"));
  const std::string adopted = readFile(statePath());
  auto missing = allocator->adopt("nobody");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(missing.error().message, HasSubstr("no host ports are recorded for task nobody"));
  EXPECT_EQ(readFile(statePath()), adopted);
  // The housekeeping view of the same file does the same.
  auto owners = openHostPortOwners(statePath().string());
  ASSERT_TRUE(owners);
  EXPECT_THAT(owners->deadOwners(), IsEmpty());
  EXPECT_TRUE(owners->adopt("mine"));
  EXPECT_EQ(owners->adopt("nobody").error().code, ErrorCode::kNotFound);
}

TEST_F(HostPortAllocatorTest, ThreadsSharingOneAllocatorNeverGetTheSamePort) {
  auto allocator = open({20000, 20999});
  constexpr int kThreads = 8;
  constexpr int kEach = 20;
  std::vector<std::vector<int>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto ports = allocator->allocate(fmt::format("task-{}", t), {tcp()});
        if (ports) got[t].push_back((*ports)[0]);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<int> all;
  for (const auto& ports : got) {
    EXPECT_EQ(ports.size(), static_cast<size_t>(kEach));
    all.insert(ports.begin(), ports.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*all.begin(), 20000);
  EXPECT_EQ(*all.rbegin(), 20000 + kThreads * kEach - 1);  // lowest first: no gaps
}

TEST_F(HostPortAllocatorTest, ProcessesAllocatingConcurrentlyNeverGetTheSamePort) {
  auto allocator = open({20000, 29999});
  std::string empty = readFile(statePath());
  constexpr int kChildren = 6;
  constexpr int kEach = 25;
  int start[2];
  ASSERT_EQ(::pipe(start), 0);
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(forkChild([&, c] {
      ::close(start[1]);
      char byte;
      (void)::read(start[0], &byte, 1);  // all start together when the parent closes the pipe
      auto mine = HostPortAllocator::open(options({20000, 29999}));
      if (!mine) return false;
      std::ofstream out(dir_ / fmt::format("child-{}.out", c));
      for (int i = 0; i < kEach; ++i) {
        // Alternate single ports and runs of two, to mix dynamic searches.
        auto ports = (*mine)->allocate(fmt::format("child-{}-{}", c, i),
                                       {tcp(std::nullopt, 1 + i % 2), udp()});
        if (!ports) return false;
        out << (*ports)[0] << " " << 1 + i % 2 << " " << (*ports)[1] << "\n";
      }
      return true;
    }));
  }
  ::close(start[0]);
  ::close(start[1]);
  for (pid_t child : children) EXPECT_TRUE(reap(child));
  std::set<int> tcp_ports;
  std::set<int> udp_ports;
  size_t tcp_count = 0;
  for (int c = 0; c < kChildren; ++c) {
    std::ifstream in(dir_ / fmt::format("child-{}.out", c));
    int first = 0;
    int count = 0;
    int udp_port = 0;
    while (in >> first >> count >> udp_port) {
      for (int p = first; p < first + count; ++p) tcp_ports.insert(p);
      tcp_count += static_cast<size_t>(count);
      udp_ports.insert(udp_port);
    }
  }
  EXPECT_EQ(tcp_ports.size(), tcp_count);
  EXPECT_EQ(tcp_count, static_cast<size_t>(kChildren * (kEach / 2 * 3 + kEach % 2)));
  EXPECT_EQ(udp_ports.size(), static_cast<size_t>(kChildren * kEach));
  EXPECT_EQ(allocator->owners().size(), static_cast<size_t>(kChildren * kEach));
  // Every child is gone: sweeping brings the file back to where it started.
  EXPECT_EQ(allocator->sweepDead().size(), static_cast<size_t>(kChildren * kEach));
  EXPECT_EQ(readFile(statePath()), empty);
}

// The default probe, for real: a socket bound on an ephemeral port makes the port "in use on the
// host"; once it is closed the port can be allocated.
class DefaultProbeTest : public TempDirTest,
                         public ::testing::WithParamInterface<std::pair<Protocol, int>> {};

TEST_P(DefaultProbeTest, BoundPortIsInUseUntilClosed) {
  auto [protocol, family] = GetParam();
  int type = protocol == Protocol::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, 0));
  if (!fd && family == AF_INET6) GTEST_SKIP() << "no IPv6";
  ASSERT_TRUE(fd);
  int port = 0;
  if (family == AF_INET6) {
    int on = 1;
    ASSERT_EQ(::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on), 0);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_any;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      GTEST_SKIP() << "cannot bind IPv6: " << std::strerror(errno);
    }
    socklen_t length = sizeof address;
    ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
    port = ntohs(address.sin6_port);
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // a specific address blocks the wildcard
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
    port = ntohs(address.sin_port);
  }
  if (protocol == Protocol::kTcp) {
    ASSERT_EQ(::listen(fd.get(), 1), 0);
  }

  HostPortAllocatorOptions options;
  options.state_path = (dir_ / "ports.json").string();
  options.dynamic_range = {port, port};
  auto allocator = HostPortAllocator::open(options);
  ASSERT_TRUE(allocator) << allocator.error().message;
  PortRequest request{protocol, 1, port};
  auto result = (*allocator)->allocate("task", {request});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message,
            fmt::format("host port {}/{} is in use on the host", port, toString(protocol)));
  // Dynamic allocation skips it too.
  auto dynamic = (*allocator)->allocate("task", {PortRequest{protocol, 1, std::nullopt}});
  ASSERT_FALSE(dynamic);
  EXPECT_EQ(dynamic.error().code, ErrorCode::kFailedPrecondition);

  fd.reset();
  result = (*allocator)->allocate("task", {request});
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_THAT(*result, ElementsAre(port));
  (*allocator)->release("task");
}

INSTANTIATE_TEST_SUITE_P(Sockets, DefaultProbeTest,
                         ::testing::Values(std::pair(Protocol::kTcp, AF_INET),
                                           std::pair(Protocol::kUdp, AF_INET),
                                           std::pair(Protocol::kTcp, AF_INET6),
                                           std::pair(Protocol::kUdp, AF_INET6)),
                         [](const auto& info) {
                           return fmt::format("{}{}", toString(info.param.first),
                                              info.param.second == AF_INET ? "4" : "6");
                         });

// --- Ipam ----------------------------------------------------------------------------------------

class IpamTest : public TempDirTest {
 protected:
  fs::path statePath() const { return dir_ / "ipam.json"; }
  IpamOptions options(const std::string& subnet = "172.31.224.0/20") {
    return IpamOptions{statePath().string(), subnet};
  }
  std::unique_ptr<Ipam> open(const std::string& subnet = "172.31.224.0/20") {
    auto ipam = Ipam::open(options(subnet));
    EXPECT_TRUE(ipam) << ipam.error().message;
    return ipam ? std::move(*ipam) : nullptr;
  }
};

TEST_F(IpamTest, SubnetAndGateway) {
  auto ipam = open();
  EXPECT_EQ(ipam->subnet(), "172.31.224.0/20");
  EXPECT_EQ(ipam->gateway(), "172.31.224.1");
  EXPECT_EQ(ipam->prefixLength(), 20);
  ipam = open("169.254.170.0/30");
  EXPECT_EQ(ipam->gateway(), "169.254.170.1");
  EXPECT_EQ(ipam->prefixLength(), 30);
}

TEST_F(IpamTest, BadSubnetsAreRejected) {
  auto result = Ipam::open(options("172.31.224.5/20"));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(result.error().message, HasSubstr("172.31.224.0/20"));
  for (const char* bad :
       {"", "foo", "172.31.224.0", "172.31.224.0/", "172.31.224.0/33", "172.31.224.0/x",
        "172.31.224.0/31", "172.31.224.0/32", "300.1.1.0/24", "172.31.224.0/-1"}) {
    result = Ipam::open(options(bad));
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(Ipam::open(IpamOptions{"", "172.31.224.0/20"}).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(statePath()));
}

TEST_F(IpamTest, LowestFreeAddressAndStableKeys) {
  auto ipam = open();
  EXPECT_EQ(*ipam->allocate("task-a", "web"), "172.31.224.2");
  EXPECT_EQ(*ipam->allocate("task-a", "db"), "172.31.224.3");
  EXPECT_EQ(*ipam->allocate("task-b", "web"), "172.31.224.4");
  EXPECT_EQ(*ipam->allocate("task-a", "web"), "172.31.224.2");  // same (owner, key): same address
  EXPECT_THAT(ipam->owners(), ElementsAre("task-a", "task-b"));
  ipam->release("task-a");
  ipam->release("task-a");
  EXPECT_THAT(ipam->owners(), ElementsAre("task-b"));
  EXPECT_EQ(*ipam->allocate("task-c", "x"), "172.31.224.2");
  EXPECT_EQ(ipam->allocate("", "x").error().code, ErrorCode::kInvalidArgument);
}

TEST_F(IpamTest, ASlash30HoldsOneTaskAddress) {
  auto ipam = open("172.31.250.0/30");
  EXPECT_EQ(*ipam->allocate("task-a", "c"), "172.31.250.2");
  auto full = ipam->allocate("task-b", "c");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(full.error().message, HasSubstr("172.31.250.0/30"));
  EXPECT_EQ(*ipam->allocate("task-a", "c"), "172.31.250.2");  // what it has, it keeps
  EXPECT_THAT(ipam->owners(), ElementsAre("task-a"));
  ipam->release("task-a");
  EXPECT_EQ(*ipam->allocate("task-b", "c"), "172.31.250.2");
}

TEST_F(IpamTest, ExhaustsASlash28AfterFourteenTaskAddresses) {
  auto ipam = open("172.31.250.16/28");
  std::set<std::string> seen;
  for (int i = 0; i < 13; ++i) {
    auto address = ipam->allocate(fmt::format("t{}", i), "c");
    ASSERT_TRUE(address) << address.error().message;
    seen.insert(*address);
  }
  EXPECT_EQ(seen.size(), 13u);
  EXPECT_FALSE(seen.contains("172.31.250.16"));  // network
  EXPECT_FALSE(seen.contains("172.31.250.17"));  // gateway
  EXPECT_FALSE(seen.contains("172.31.250.31"));  // broadcast
  EXPECT_TRUE(seen.contains("172.31.250.30"));
  EXPECT_FALSE(ipam->allocate("t13", "c"));
}

TEST_F(IpamTest, PersistsAcrossReopenAndReplacesAddressesOutsideANewSubnet) {
  {
    auto ipam = open();
    EXPECT_EQ(*ipam->allocate("task", "web"), "172.31.224.2");
  }
  auto ipam = open();
  EXPECT_EQ(*ipam->allocate("other", "web"), "172.31.224.3");
  EXPECT_EQ(*ipam->allocate("task", "web"), "172.31.224.2");
  ipam = open("172.31.240.0/24");
  EXPECT_EQ(*ipam->allocate("task", "web"), "172.31.240.2");
  EXPECT_EQ(*ipam->allocate("task", "web"), "172.31.240.2");
}

TEST_F(IpamTest, CorruptStateFileFailsOpen) {
  for (const char* bad : {"nope", "{\"owners\":{\"t\":{\"pid\":1,\"start_time\":1}}}",
                          "{\"owners\":{\"t\":{\"pid\":1,\"start_time\":1,\"addresses\":{\"c\":"
                          "\"999.1.1.1\"}}}}"}) {
    writeFile(statePath(), bad);
    auto result = Ipam::open(options());
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kDataLoss);
    EXPECT_THAT(result.error().message, HasSubstr(statePath().string()));
  }
}

TEST_F(IpamTest, StateFileIsByteIdenticalAfterChurn) {
  auto ipam = open();
  std::string empty = readFile(statePath());
  ASSERT_TRUE(ipam->allocate("resident", "c"));
  std::string before = readFile(statePath());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(ipam->allocate(fmt::format("task-{}", i % 7), fmt::format("c{}", i)));
    }
    for (int i = 6; i >= 0; --i) ipam->release(fmt::format("task-{}", i));
    EXPECT_EQ(readFile(statePath()), before);
  }
  ipam->release("resident");
  EXPECT_EQ(readFile(statePath()), empty);
}

TEST_F(IpamTest, SweepDeadFreesADeadAgentsAddresses) {
  auto ipam = open();
  EXPECT_EQ(*ipam->allocate("mine", "c"), "172.31.224.2");
  pid_t child = forkChild([&] {
    auto theirs = Ipam::open(options());
    return theirs && (*theirs)->allocate("theirs", "c").value_or("") == "172.31.224.3";
  });
  ASSERT_TRUE(reap(child));
  EXPECT_THAT(ipam->owners(), ElementsAre("mine", "theirs"));
  EXPECT_THAT(ipam->sweepDead(), ElementsAre("theirs"));
  EXPECT_THAT(ipam->owners(), ElementsAre("mine"));
  EXPECT_EQ(*ipam->allocate("next", "c"), "172.31.224.3");
}

TEST_F(IpamTest, AdoptedAddressesSurviveTheSweepAndAreReadBackWithoutAllocating) {
  auto ipam = open();
  pid_t child = forkChild([&] {
    auto theirs = Ipam::open(options());
    return theirs && (*theirs)->allocate("task", "web").has_value() &&
           (*theirs)->allocate("task", "sidecar").has_value() &&
           (*theirs)->allocate("gone", "c").has_value();
  });
  ASSERT_TRUE(reap(child));
  const std::string before = readFile(statePath());
  EXPECT_THAT(ipam->deadOwners(), ElementsAre("gone", "task"));
  auto addresses = ipam->addresses("task");
  ASSERT_TRUE(addresses) << addresses.error().message;
  EXPECT_EQ(*addresses, (std::map<std::string, std::string>{{"sidecar", "172.31.224.3"},
                                                            {"web", "172.31.224.2"}}));
  EXPECT_THAT(*ipam->addresses("nobody"), IsEmpty());
  EXPECT_EQ(readFile(statePath()), before);

  ASSERT_TRUE(ipam->adopt("task"));
  EXPECT_THAT(ipam->deadOwners(), ElementsAre("gone"));
  EXPECT_THAT(ipam->sweepDead(), ElementsAre("gone"));
  EXPECT_EQ(*ipam->addresses("task"), *addresses);
  EXPECT_EQ(*ipam->allocate("next", "c"), "172.31.224.4");
  EXPECT_EQ(ipam->adopt("gone").error().code, ErrorCode::kNotFound);
  auto owners = openIpamOwners(statePath().string());
  ASSERT_TRUE(owners);
  EXPECT_THAT(owners->deadOwners(), IsEmpty());
}

TEST_F(IpamTest, ProcessesAllocatingConcurrentlyNeverGetTheSameAddress) {
  auto ipam = open("172.31.250.0/24");
  constexpr int kChildren = 5;
  constexpr int kEach = 20;
  int start[2];
  ASSERT_EQ(::pipe(start), 0);
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(forkChild([&, c] {
      ::close(start[1]);
      char byte;
      (void)::read(start[0], &byte, 1);
      auto mine = Ipam::open(options("172.31.250.0/24"));
      if (!mine) return false;
      std::ofstream out(dir_ / fmt::format("child-{}.out", c));
      for (int i = 0; i < kEach; ++i) {
        auto address = (*mine)->allocate(fmt::format("child-{}", c), fmt::format("c{}", i));
        if (!address) return false;
        out << *address << "\n";
      }
      return true;
    }));
  }
  ::close(start[0]);
  ::close(start[1]);
  for (pid_t child : children) EXPECT_TRUE(reap(child));
  std::set<std::string> all;
  size_t count = 0;
  for (int c = 0; c < kChildren; ++c) {
    std::ifstream in(dir_ / fmt::format("child-{}.out", c));
    for (std::string address; in >> address; ++count) all.insert(address);
  }
  EXPECT_EQ(count, static_cast<size_t>(kChildren * kEach));
  EXPECT_EQ(all.size(), count);
  EXPECT_EQ(*ipam->allocate("parent", "c"),
            fmt::format("172.31.250.{}", 2 + kChildren * kEach));  // lowest first: no gaps
  EXPECT_EQ(ipam->sweepDead().size(), static_cast<size_t>(kChildren));
}

}  // namespace
}  // namespace ecs::netns
