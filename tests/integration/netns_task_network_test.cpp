// Task networks on this machine's real kernel, as root, without containerd: namespaces, the
// bridge, veths, iptables and the allocators, exercised through TaskNetworkFactory the way the
// engine drives it. "Containers" are sockets opened inside the task namespaces. Every test uses
// the bridge ecs-test-br on 172.31.16.0/24 and its own state directory; the suite removes the
// bridge and the ECS- chains at the end and checks that `ip netns`, `ip link` and iptables-save
// are as they were before it started. Needs no harness peer.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "netns/host_network.h"
#include "netns/iptables.h"
#include "netns/netlink.h"
#include "netns/network_names.h"
#include "netns/network_namespace.h"
#include "netns/task_network.h"

namespace ecs::netns {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;

const std::string kBridge = "ecs-test-br";
const std::string kSubnet = "172.31.16.0/24";
const std::string kGateway = "172.31.16.1";

std::string randomHex(int digits = 16) {
  static std::mt19937_64 rng{std::random_device{}()};
  std::string out;
  while (static_cast<int>(out.size()) < digits) out += fmt::format("{:016x}", rng());
  return out.substr(0, digits);
}

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = ::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// iptables-save without its timestamps and packet counters.
std::string iptablesSave() {
  std::string out;
  std::istringstream in(run("iptables-save"));
  static const std::regex counters(R"(\[\d+:\d+\])");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#")) continue;
    out += std::regex_replace(line, counters, "[0:0]") + "\n";
  }
  return out;
}

// What `ip netns`, `ip link` and iptables-save show of ours, as one text so a difference prints
// readably. Other test suites may run beside this one on the machine, so only our names count:
// namespaces of test tasks (ecs-nt...), veths on the test bridges (or on none), the test bridges,
// and the iptables-save lines tagged by them or their tasks, plus every chain and policy. A
// bridge's carrier follows its ports, reported by the kernel's link-watch worker up to a second
// later, so the bridges' carrier and operational state are left out; their ports are not.
using HostState = std::string;

std::string filterLines(const std::string& text, const auto& keep, const auto& normalise) {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (keep(line)) out += normalise(line) + "\n";
  }
  return out;
}

HostState hostState() {
  auto same = [](const std::string& line) { return line; };
  const std::string netns = filterLines(
      run("ip netns list"), [](const std::string& l) { return l.starts_with("ecs-nt"); }, same);
  static const std::regex carrier(R"(NO-CARRIER,|state (UP|DOWN) )");
  const std::string links = filterLines(
      run("ip -o link show"),
      [](const std::string& l) {
        return l.find(": ecsv") != std::string::npos ||
               l.find(": ecs-test-br") != std::string::npos;
      },
      [](const std::string& l) {
        return l.find(": ecs-test-br") != std::string::npos ? std::regex_replace(l, carrier, "")
                                                            : l;
      });
  const std::string rules = filterLines(
      iptablesSave(),
      [](const std::string& l) {
        for (const char* mark :
             {"ecs-base", "ecs-task:nt", "ecs-bridge:ecs-test-br\"", "ecs-bridge:ecs-test-br2\""}) {
          if (l.find(mark) != std::string::npos) return true;
        }
        return l.starts_with(":");  // chains, and the built-in chains' policies
      },
      same);
  return "--- ip netns\n" + netns + "--- ip link\n" + links + "--- iptables-save\n" + rules;
}

// The host's first IPv4 address that is neither loopback nor on one of our bridges.
std::string hostAddress() {
  ifaddrs* list = nullptr;
  std::string found;
  if (::getifaddrs(&list) != 0) return found;
  for (ifaddrs* a = list; a != nullptr && found.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text,
                sizeof(text));
    const std::string ip = text;
    if (!ip.starts_with("127.") && !ip.starts_with("172.31.")) found = ip;
  }
  ::freeifaddrs(list);
  return found;
}

sockaddr_in address(const std::string& ip, int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
  return sa;
}

// A server in a namespace (empty path: the host's) answering every TCP connection or UDP
// datagram with `reply`.
class Responder {
 public:
  Responder(const std::string& netns_path, int type, const std::string& ip, int port,
            std::string reply)
      : reply_(std::move(reply)), type_(type) {
    auto fd = netns_path.empty() ? Result<int>(::socket(AF_INET, type | SOCK_CLOEXEC, 0))
                                 : openSocketInNamespace(netns_path, AF_INET, type, 0);
    if (!fd || *fd < 0) throw std::runtime_error("responder socket");
    fd_ = *fd;
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    auto sa = address(ip, port);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      throw std::runtime_error(fmt::format("bind {}:{}: {}", ip, port, std::strerror(errno)));
    }
    if (type == SOCK_STREAM) ::listen(fd_, 16);
    socklen_t length = sizeof(sa);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &length);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Responder() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (type_ == SOCK_STREAM) {
        const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        ::send(client, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        ::close(client);
      } else {
        char buffer[512];
        sockaddr_in from{};
        socklen_t length = sizeof(from);
        if (::recvfrom(fd_, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from),
                       &length) >= 0) {
          ::sendto(fd_, reply_.data(), reply_.size(), 0, reinterpret_cast<sockaddr*>(&from),
                   length);
        }
      }
    }
  }
  std::string reply_;
  int type_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Connects from a namespace (empty: the host's) and returns what the peer answered, or
// "error: <errno text>".
std::string exchange(const std::string& netns_path, int type, const std::string& ip, int port) {
  auto fd = netns_path.empty() ? Result<int>(::socket(AF_INET, type | SOCK_CLOEXEC, 0))
                               : openSocketInNamespace(netns_path, AF_INET, type, 0);
  if (!fd || *fd < 0) return "error: socket";
  timeval timeout{2, 0};
  ::setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  auto sa = address(ip, port);
  std::string out;
  if (::connect(*fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    out = fmt::format("error: {}", std::strerror(errno));
  } else {
    if (type == SOCK_DGRAM) ::send(*fd, "ping", 4, 0);
    char buffer[512];
    const ssize_t n = ::recv(*fd, buffer, sizeof(buffer), 0);
    out = n >= 0 ? std::string(buffer, static_cast<size_t>(n))
                 : fmt::format("error: {}", std::strerror(errno));
  }
  ::close(*fd);
  return out;
}

// A free host port (bound and closed; the allocator checks again anyway).
int freePort(int type = SOCK_STREAM) {
  Responder probe("", type, "0.0.0.0", 0, "");
  return probe.port();
}

engine::PortMapping mapping(int container_port, int host_port = 0, std::string protocol = "tcp") {
  engine::PortMapping m;
  m.container_port = container_port;
  if (host_port != 0) m.host_port = host_port;
  m.protocol = std::move(protocol);
  return m;
}

engine::TaskDefinition definition(const std::string& mode,
                                  std::vector<std::vector<engine::PortMapping>> containers) {
  engine::TaskDefinition d;
  d.family = "netns-test";
  d.network_mode = mode;
  for (size_t i = 0; i < containers.size(); ++i) {
    engine::ContainerDefinition c;
    c.name = fmt::format("c{}", i);
    c.image = "busybox";
    c.port_mappings = std::move(containers[i]);
    d.container_definitions.push_back(std::move(c));
  }
  return d;
}

// Everything a container was given by the network, as one comparable text.
std::string describe(const engine::ContainerResources& c) {
  std::string out = fmt::format("mode={} netns={} ip={} subnet={} gateway={}", c.network_mode,
                                c.netns_path, c.ip_address, c.ipv4_subnet, c.ipv4_gateway);
  for (const auto& b : c.network_bindings) {
    out += fmt::format(" [{} {}:{}->{} {}->{}]", b.protocol, b.bind_ip, b.host_port,
                       b.container_port, b.host_port_range, b.container_port_range);
  }
  return out + "\n";
}

// One task: its definition, its resource, and what each container was given.
struct TestTask {
  std::string id = "nt" + randomHex(14);
  engine::TaskDefinition definition;
  std::unique_ptr<engine::TaskResource> resource;
  std::vector<engine::ContainerResources> containers;

  ~TestTask() {
    if (resource) resource->cleanup();
  }
};

class NetnsTaskNetworkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    before_ = new HostState(hostState());
    ip_forward_ = new std::string(readSysctl("net/ipv4/ip_forward").value_or("0"));
    endpoint_ = new Responder("", SOCK_STREAM, "127.0.0.1", 0, "endpoint");
  }
  static void TearDownTestSuite() {
    if (::geteuid() != 0) return;
    {
      auto factory =
          makeFactory(fs::temp_directory_path() / ("ecs-netns-teardown-" + randomHex(8)));
      if (factory) {
        EXPECT_TRUE((*factory)->bridge().remove());
        fs::remove_all((*factory)->bridge().options().state_dir);
      }
    }
    EXPECT_TRUE(writeSysctl("net/ipv4/ip_forward", *ip_forward_));
    // Nothing the suite made is left: not a namespace, link, chain or rule.
    EXPECT_EQ(hostState(), *before_);
    delete endpoint_;
    delete before_;
    delete ip_forward_;
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    state_dir_ = fs::temp_directory_path() / ("ecs-netns-test-" + randomHex(8));
    auto factory = makeFactory(state_dir_);
    ASSERT_TRUE(factory) << factory.error().message;
    factory_ = std::move(*factory);
  }
  void TearDown() override {
    factory_.reset();
    if (!state_dir_.empty()) fs::remove_all(state_dir_);
  }

  static Result<std::unique_ptr<TaskNetworkFactory>> makeFactory(const fs::path& state_dir,
                                                                 bool block_imds = true) {
    TaskNetworkOptions options;
    options.bridge = {.bridge_name = kBridge,
                      .subnet = kSubnet,
                      .endpoint_port = endpoint_ ? endpoint_->port() : 51679,
                      .block_imds = block_imds,
                      .host_network_endpoint = true,
                      .state_dir = state_dir.string()};
    options.dynamic_port_range = {21000, 21999};
    return TaskNetworkFactory::create(options);
  }

  // Creates the task's network and contributes to every container; fails the test on error.
  void start(TestTask& task) {
    engine::TaskInfo info{.arn = "arn:aws:ecs:local:0:task/test/" + task.id,
                          .id = task.id,
                          .dir = state_dir_.string(),
                          .definition = &task.definition};
    auto resource = factory_->resourceFor(info);
    ASSERT_TRUE(resource) << resource.error().message;
    task.resource = std::move(*resource);
    auto created = task.resource->create();
    ASSERT_TRUE(created) << created.error().message;
    for (const auto& c : task.definition.container_definitions) {
      engine::ContainerResources out;
      auto given = task.resource->contribute({.definition = &c}, out);
      ASSERT_TRUE(given) << given.error().message;
      task.containers.push_back(out);
    }
  }

  engine::TaskInfo info(TestTask& task) const {
    return {.arn = "arn:aws:ecs:local:0:task/test/" + task.id,
            .id = task.id,
            .dir = state_dir_.string(),
            .definition = &task.definition};
  }

  // An agent process that creates the task's network and dies without cleaning up: a forked
  // child, so the allocations name a process that is really gone. Returns what each container
  // was given (describe()), or "error: ...".
  std::string startInDeadAgent(TestTask& task) {
    int fds[2];
    if (::pipe(fds) != 0) return "error: pipe";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string out;
      auto resource = factory_->resourceFor(info(task));
      auto created = resource ? (*resource)->create() : Result<void>(fail(resource.error()));
      for (size_t i = 0; created && i < task.definition.container_definitions.size(); ++i) {
        engine::ContainerResources given;
        created = (*resource)->contribute({.definition = &task.definition.container_definitions[i]},
                                          given);
        out += describe(given);
      }
      if (!created) out = "error: " + created.error().message;
      (void)!::write(fds[1], out.data(), out.size());
      ::_exit(0);  // no cleanup, no destructors: the agent was killed
    }
    ::close(fds[1]);
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) {
      out.append(buffer, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
  }

  // The restarted agent: a new factory on the same state, the task's resource recovered.
  Result<void> recover(TestTask& task) {
    auto factory = makeFactory(state_dir_);
    if (!factory) return fail(factory.error());
    factory_ = std::move(*factory);
    auto resource = factory_->resourceFor(info(task));
    if (!resource) return fail(resource.error());
    task.resource = std::move(*resource);
    return task.resource->recover();
  }

  // What every container of a recovered task is given now.
  std::string contributed(TestTask& task) {
    std::string out;
    for (const auto& c : task.definition.container_definitions) {
      engine::ContainerResources given;
      auto result = task.resource->contribute({.definition = &c}, given);
      if (!result) return "error: " + result.error().message;
      task.containers.push_back(given);
      out += describe(given);
    }
    return out;
  }

  HostNetworkOptions hostOptions() const {
    return {.bridge_name = kBridge, .state_dir = state_dir_.string()};
  }

  fs::path state_dir_;
  std::unique_ptr<TaskNetworkFactory> factory_;
  static inline HostState* before_ = nullptr;
  static inline std::string* ip_forward_ = nullptr;
  static inline Responder* endpoint_ = nullptr;
};

TEST_F(NetnsTaskNetworkTest, BridgeModeGivesEachContainerANamespaceAddressAndRoute) {
  TestTask task;
  task.definition = definition("bridge", {{}, {}});
  start(task);
  ASSERT_EQ(task.containers.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& c = task.containers[i];
    EXPECT_EQ(c.network_mode, "bridge");
    EXPECT_EQ(c.netns_path, namespacePath(containerNamespaceName(task.id, i)));
    EXPECT_TRUE(fs::exists(c.netns_path));
    EXPECT_THAT(c.ip_address, ::testing::StartsWith("172.31.16."));
    EXPECT_EQ(c.ipv4_subnet, kSubnet);
    EXPECT_EQ(c.ipv4_gateway, kGateway);
    const std::string ns = containerNamespaceName(task.id, i);
    EXPECT_THAT(run("ip -n " + ns + " -4 addr show eth0"), HasSubstr(c.ip_address + "/24"));
    EXPECT_THAT(run("ip -n " + ns + " route"), HasSubstr("default via " + kGateway + " dev eth0"));
    EXPECT_THAT(run("ip link show " + vethName(task.id, i)), HasSubstr("master " + kBridge));
  }
  EXPECT_NE(task.containers[0].ip_address, task.containers[1].ip_address);
  // Containers on the bridge reach each other directly.
  Responder server(task.containers[1].netns_path, SOCK_STREAM, "0.0.0.0", 7000, "c1");
  EXPECT_EQ(
      exchange(task.containers[0].netns_path, SOCK_STREAM, task.containers[1].ip_address, 7000),
      "c1");
  task.resource->cleanup();
  EXPECT_FALSE(fs::exists(task.containers[0].netns_path));
  EXPECT_THAT(run("ip link show " + vethName(task.id, 0)), HasSubstr("does not exist"));
  task.resource->cleanup();  // idempotent
}

TEST_F(NetnsTaskNetworkTest, TwoTasksWithTheSameContainerPortAnswerOnTheirOwnDynamicHostPorts) {
  TestTask a, b;
  a.definition = definition("bridge", {{mapping(8080)}});
  b.definition = definition("bridge", {{mapping(8080)}});
  start(a);
  start(b);
  ASSERT_EQ(a.containers[0].network_bindings.size(), 1u);
  ASSERT_EQ(b.containers[0].network_bindings.size(), 1u);
  const auto& ba = a.containers[0].network_bindings[0];
  const auto& bb = b.containers[0].network_bindings[0];
  EXPECT_EQ(ba.bind_ip, "0.0.0.0");
  EXPECT_EQ(ba.container_port, 8080);
  EXPECT_EQ(ba.protocol, "tcp");
  EXPECT_GE(ba.host_port, 21000);
  EXPECT_LE(ba.host_port, 21999);
  EXPECT_NE(ba.host_port, bb.host_port);
  Responder server_a(a.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 8080, "task-a");
  Responder server_b(b.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 8080, "task-b");
  // From 127.0.0.1, from the host's other address, and from another container on the bridge
  // (through the host's address and through the gateway's).
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", ba.host_port), "task-a");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", bb.host_port), "task-b");
  const std::string host = hostAddress();
  ASSERT_FALSE(host.empty());
  EXPECT_EQ(exchange("", SOCK_STREAM, host, ba.host_port), "task-a");
  EXPECT_EQ(exchange(b.containers[0].netns_path, SOCK_STREAM, host, ba.host_port), "task-a");
  EXPECT_EQ(exchange(b.containers[0].netns_path, SOCK_STREAM, kGateway, ba.host_port), "task-a");
  // Hairpin: a container through its own host port.
  EXPECT_EQ(exchange(a.containers[0].netns_path, SOCK_STREAM, host, ba.host_port), "task-a");
}

TEST_F(NetnsTaskNetworkTest, AStaticHostPortAlreadyHeldFailsTheSecondTaskAndLeavesNothing) {
  const int port = freePort();
  TestTask first;
  first.definition = definition("bridge", {{mapping(80, port)}});
  start(first);
  EXPECT_EQ(first.containers[0].network_bindings.at(0).host_port, port);
  Responder server(first.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "first");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", port), "first");

  const HostState before = hostState();
  TestTask second;
  second.definition = definition("bridge", {{mapping(80, port)}});
  engine::TaskInfo info{.id = second.id, .definition = &second.definition};
  auto resource = factory_->resourceFor(info);
  ASSERT_TRUE(resource);
  auto created = (*resource)->create();
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kAlreadyExists);
  EXPECT_THAT(
      created.error().message,
      HasSubstr(fmt::format("host port {}/tcp is already used by task {}", port, first.id)));
  (*resource)->cleanup();
  EXPECT_EQ(hostState(), before);
}

TEST_F(NetnsTaskNetworkTest, UdpAndAPortRangeMap) {
  TestTask task;
  engine::PortMapping range;
  range.container_port_range = "9000-9002";
  task.definition = definition("bridge", {{mapping(5353, 0, "udp"), range}});
  start(task);
  const auto& bindings = task.containers[0].network_bindings;
  ASSERT_EQ(bindings.size(), 2u);
  EXPECT_EQ(bindings[0].protocol, "udp");
  EXPECT_EQ(bindings[0].container_port, 5353);
  EXPECT_EQ(bindings[1].container_port_range, "9000-9002");
  EXPECT_EQ(bindings[1].container_port, 0);
  int first = 0, last = 0;
  ASSERT_EQ(std::sscanf(bindings[1].host_port_range.c_str(), "%d-%d", &first, &last), 2);
  EXPECT_EQ(last - first, 2);
  const std::string& ns = task.containers[0].netns_path;
  Responder udp(ns, SOCK_DGRAM, "0.0.0.0", 5353, "udp-answer");
  EXPECT_EQ(exchange("", SOCK_DGRAM, "127.0.0.1", bindings[0].host_port), "udp-answer");
  EXPECT_EQ(exchange("", SOCK_DGRAM, hostAddress(), bindings[0].host_port), "udp-answer");
  std::vector<std::unique_ptr<Responder>> servers;
  for (int port = 9000; port <= 9002; ++port) {
    servers.push_back(std::make_unique<Responder>(ns, SOCK_STREAM, "0.0.0.0", port,
                                                  fmt::format("port-{}", port)));
  }
  for (int offset = 0; offset <= 2; ++offset) {
    EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", first + offset),
              fmt::format("port-{}", 9000 + offset));
  }
}

TEST_F(NetnsTaskNetworkTest, ContainersReachTheAgentEndpointAndNotImdsNorOtherLoopbackServices) {
  TestTask task;
  task.definition = definition("bridge", {{}});
  start(task);
  const std::string& ns = task.containers[0].netns_path;
  EXPECT_EQ(exchange(ns, SOCK_STREAM, "169.254.170.2", 80), "endpoint");
  // route_localnet on the bridge must not expose the host's other loopback services.
  Responder private_service("", SOCK_STREAM, "127.0.0.1", 0, "private");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", private_service.port()), "private");
  const auto blocked = exchange(ns, SOCK_STREAM, "127.0.0.1", private_service.port());
  EXPECT_THAT(blocked, HasSubstr("error"));
  // IMDS: an unreachable route, refused at once inside the namespace; nothing is sent.
  EXPECT_THAT(run("ip -n " + containerNamespaceName(task.id, 0) + " route show 169.254.169.254"),
              HasSubstr("unreachable 169.254.169.254"));
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(exchange(ns, SOCK_STREAM, "169.254.169.254", 80), "error: No route to host");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms);
}

TEST_F(NetnsTaskNetworkTest, HostProcessesReachTheEndpointWhenHostModeTasksMayUseIt) {
  // One host, one endpoint: another agent's bridge redirecting 169.254.170.2 would win.
  for (const auto& line : IptablesSnapshot::parse(run("iptables-save -t nat")).rules) {
    if (line.text.find("REDIRECT") != std::string::npos &&
        line.comment != "ecs-bridge:" + kBridge) {
      GTEST_SKIP() << "another agent redirects 169.254.170.2 on this host: " << line.text;
    }
  }
  EXPECT_EQ(exchange("", SOCK_STREAM, "169.254.170.2", 80), "endpoint");
}

TEST_F(NetnsTaskNetworkTest, PortMappingsWorkWhenTheForwardPolicyIsDrop) {
  struct PolicyGuard {
    std::string saved = run("iptables -S FORWARD | head -1");  // "-P FORWARD ACCEPT"
    ~PolicyGuard() {
      run("iptables -P FORWARD " +
          std::string(saved.find("DROP") != std::string::npos ? "DROP" : "ACCEPT"));
    }
  } guard;
  run("iptables -P FORWARD DROP");
  ASSERT_THAT(run("iptables -S FORWARD"), HasSubstr("-P FORWARD DROP"));
  TestTask a, b;
  a.definition = definition("bridge", {{mapping(80)}});
  b.definition = definition("bridge", {{}});
  start(a);
  start(b);
  const int port = a.containers[0].network_bindings.at(0).host_port;
  Responder server(a.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "through-drop");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", port), "through-drop");
  EXPECT_EQ(exchange(b.containers[0].netns_path, SOCK_STREAM, hostAddress(), port), "through-drop");
  EXPECT_EQ(exchange(b.containers[0].netns_path, SOCK_STREAM, a.containers[0].ip_address, 80),
            "through-drop");
}

TEST_F(NetnsTaskNetworkTest, AwsvpcContainersShareOneNamespaceAndReachEachOtherOnLocalhost) {
  TestTask task;
  task.definition = definition("awsvpc", {{mapping(8080)}, {}});
  start(task);
  const auto& app = task.containers[0];
  const auto& sidecar = task.containers[1];
  EXPECT_EQ(app.network_mode, "awsvpc");
  EXPECT_EQ(app.netns_path, namespacePath(taskNamespaceName(task.id)));
  EXPECT_EQ(sidecar.netns_path, app.netns_path);
  EXPECT_EQ(sidecar.ip_address, app.ip_address);
  ASSERT_EQ(app.network_bindings.size(), 1u);
  EXPECT_EQ(app.network_bindings[0].host_port, 8080);
  EXPECT_EQ(app.network_bindings[0].container_port, 8080);
  Responder server(app.netns_path, SOCK_STREAM, "127.0.0.1", 8080, "app");
  EXPECT_EQ(exchange(sidecar.netns_path, SOCK_STREAM, "127.0.0.1", 8080), "app");
  // The task's address is its own: the host reaches it directly.
  Responder public_server(app.netns_path, SOCK_STREAM, "0.0.0.0", 8081, "public");
  EXPECT_EQ(exchange("", SOCK_STREAM, app.ip_address, 8081), "public");
  EXPECT_EQ(exchange(app.netns_path, SOCK_STREAM, "169.254.170.2", 80), "endpoint");
}

TEST_F(NetnsTaskNetworkTest, AStoppedTaskReleasesItsHostPortAndNamespacesBeforeCleanup) {
  const int port = freePort();
  TestTask first;
  first.definition = definition("bridge", {{mapping(80, port)}});
  start(first);
  const auto netns = first.containers[0].netns_path;
  ASSERT_TRUE(fs::exists(netns));

  // Stopped, its containers waiting to be removed: the port and the namespace are free already.
  first.resource->releaseOnStop();
  EXPECT_FALSE(fs::exists(netns));
  EXPECT_THAT(run("ip link show " + vethName(first.id, 0)), HasSubstr("does not exist"));
  TestTask second;
  second.definition = definition("bridge", {{mapping(80, port)}});
  start(second);
  EXPECT_EQ(second.containers[0].network_bindings.at(0).host_port, port);

  // The first task's cleanup, hours later, leaves the second one's mapping alone.
  first.resource->cleanup();
  Responder server(second.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "second");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", port), "second");
}

TEST_F(NetnsTaskNetworkTest, HostModeReservesPortsOnTheHostAndRefusesAnotherHostPort) {
  const int port = freePort();
  TestTask task;
  task.definition = definition("host", {{mapping(port)}});
  start(task);
  EXPECT_EQ(task.containers[0].network_mode, "host");
  EXPECT_EQ(task.containers[0].netns_path, "");
  ASSERT_EQ(task.containers[0].network_bindings.size(), 1u);
  EXPECT_EQ(task.containers[0].network_bindings[0].host_port, port);
  // The "container" binds on the host itself.
  Responder server("", SOCK_STREAM, "0.0.0.0", port, "host-mode");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", port), "host-mode");

  TestTask second;
  second.definition = definition("host", {{mapping(port)}});
  engine::TaskInfo info{.id = second.id, .definition = &second.definition};
  auto resource = factory_->resourceFor(info);
  ASSERT_TRUE(resource);
  auto created = (*resource)->create();
  ASSERT_FALSE(created);
  EXPECT_THAT(created.error().message,
              HasSubstr(fmt::format("host port {}/tcp is already used by task {}", port, task.id)));
  (*resource)->cleanup();

  TestTask mismatched;
  mismatched.definition = definition("host", {{mapping(8080, 8081)}});
  auto refused = factory_->resourceFor({.id = mismatched.id, .definition = &mismatched.definition});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(
      refused.error().message,
      HasSubstr("portMappings[0]: in host mode hostPort (8081) must equal containerPort (8080)"));
}

TEST_F(NetnsTaskNetworkTest, AHostPortInUseOnTheHostFailsAHostModeTask) {
  Responder squatter("", SOCK_STREAM, "0.0.0.0", 0, "");
  TestTask task;
  task.definition = definition("host", {{mapping(squatter.port())}});
  auto resource = factory_->resourceFor({.id = task.id, .definition = &task.definition});
  ASSERT_TRUE(resource);
  auto created = (*resource)->create();
  ASSERT_FALSE(created);
  EXPECT_THAT(created.error().message,
              HasSubstr(fmt::format("host port {}/tcp is in use on the host", squatter.port())));
  (*resource)->cleanup();
}

TEST_F(NetnsTaskNetworkTest, NoneModeIsLoopbackOnly) {
  TestTask task;
  task.definition = definition("none", {{}});
  const HostState before = hostState();
  start(task);
  EXPECT_EQ(task.containers[0].network_mode, "none");
  EXPECT_EQ(task.containers[0].netns_path, "");
  EXPECT_EQ(hostState(), before);
}

TEST_F(NetnsTaskNetworkTest, AFailureHalfWayLeavesNothingAfterCleanup) {
  // A /30 has one address after the gateway: the second container's attach fails after the
  // first container's namespace, veth and address were made.
  const fs::path dir = state_dir_ / "small";
  TaskNetworkOptions options;
  options.bridge = {.bridge_name = "ecs-test-br2",
                    .subnet = "172.31.17.0/30",
                    .endpoint_port = endpoint_->port(),
                    .state_dir = dir.string()};
  options.dynamic_port_range = {22000, 22999};
  const HostState before = hostState();
  {
    auto small = TaskNetworkFactory::create(options);
    ASSERT_TRUE(small) << small.error().message;
    const std::string ipam_before = readFile(dir / "ipam.json");
    const std::string ports_before = readFile(dir / "host_ports.json");
    const HostState with_bridge = hostState();
    TestTask task;
    task.definition = definition("bridge", {{mapping(80)}, {}});
    auto resource = (*small)->resourceFor({.id = task.id, .definition = &task.definition});
    ASSERT_TRUE(resource);
    auto created = (*resource)->create();
    ASSERT_FALSE(created);
    EXPECT_THAT(created.error().message, HasSubstr("172.31.17.0/30"));
    (*resource)->cleanup();
    EXPECT_EQ(hostState(), with_bridge);
    EXPECT_EQ(readFile(dir / "ipam.json"), ipam_before);
    EXPECT_EQ(readFile(dir / "host_ports.json"), ports_before);
    EXPECT_TRUE((*small)->bridge().remove());
  }
  EXPECT_EQ(hostState(), before);
}

TEST_F(NetnsTaskNetworkTest, ChurnOfFiftyTasksLeavesTheHostExactlyAsBefore) {
  {  // One task first, so stores that are created lazily exist in the "before" picture.
    TestTask warmup;
    warmup.definition = definition("bridge", {{mapping(80)}});
    start(warmup);
  }
  const HostState before = hostState();
  const std::string ipam_before = readFile(state_dir_ / "ipam.json");
  const std::string ports_before = readFile(state_dir_ / "host_ports.json");
  for (int i = 0; i < 50; ++i) {
    TestTask task;
    task.definition = definition(i % 5 == 4 ? "awsvpc" : "bridge",
                                 {{mapping(80), mapping(53, 0, "udp")}, {mapping(81)}});
    start(task);
    if (HasFatalFailure()) return;
    if (i == 0) {
      EXPECT_NE(hostState(), before);
      EXPECT_NE(readFile(state_dir_ / "ipam.json"), ipam_before);
    }
  }
  EXPECT_EQ(hostState(), before);
  EXPECT_EQ(readFile(state_dir_ / "ipam.json"), ipam_before);
  EXPECT_EQ(readFile(state_dir_ / "host_ports.json"), ports_before);
}

TEST_F(NetnsTaskNetworkTest, SweepRemovesWhatADeadTaskLeftAndKeepsLiveTasks) {
  const HostState before = hostState();
  TestTask live, dead;
  live.definition = definition("bridge", {{mapping(80)}});
  dead.definition = definition("bridge", {{mapping(80)}, {}});
  start(live);
  start(dead);
  TestTask dead_awsvpc;
  dead_awsvpc.definition = definition("awsvpc", {{}});
  start(dead_awsvpc);
  // The agent dies: the resources go without cleanup (destroying one releases nothing).
  dead.resource.reset();
  dead_awsvpc.resource.reset();

  // Everything ours on this host that is not the dead tasks counts as live: other agents' tasks
  // must survive the sweep.
  std::set<std::string> live_ids{live.id};
  for (const auto& name : listNamespaces("ecs-")) {
    const auto id = taskOfNamespace(name);
    if (id && *id != dead.id && *id != dead_awsvpc.id) live_ids.insert(*id);
  }
  factory_.reset();
  auto restarted = makeFactory(state_dir_);
  ASSERT_TRUE(restarted);
  const auto swept = (*restarted)->sweep(live_ids);
  EXPECT_THAT(swept, ::testing::UnorderedElementsAre(dead.id, dead_awsvpc.id));
  EXPECT_TRUE(listNamespaces(taskNamespaceName(dead.id)).empty());
  EXPECT_TRUE(listNamespaces(taskNamespaceName(dead_awsvpc.id)).empty());
  EXPECT_THAT(run("ip -o link"), ::testing::Not(HasSubstr(vethName(dead.id, 0))));
  EXPECT_THAT(iptablesSave(), ::testing::Not(HasSubstr(dead.id)));
  EXPECT_THAT(readFile(state_dir_ / "ipam.json"), ::testing::Not(HasSubstr(dead.id)));
  EXPECT_THAT(readFile(state_dir_ / "host_ports.json"), ::testing::Not(HasSubstr(dead.id)));
  // The live task still answers.
  Responder server(live.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "alive");
  EXPECT_EQ(
      exchange("", SOCK_STREAM, "127.0.0.1", live.containers[0].network_bindings[0].host_port),
      "alive");
  EXPECT_TRUE((*restarted)->sweep(live_ids).empty());
  factory_ = std::move(*restarted);
  live.resource->cleanup();
  EXPECT_EQ(hostState(), before);
}

TEST_F(NetnsTaskNetworkTest, ABridgeTaskOfAKilledAgentIsRecoveredSparedBySweepsAndReleased) {
  const HostState before = hostState();
  const std::string ipam_before = readFile(state_dir_ / "ipam.json");
  const std::string ports_before = readFile(state_dir_ / "host_ports.json");
  const int port = freePort();
  TestTask task;
  task.definition =
      definition("bridge", {{mapping(80), mapping(5353, 0, "udp")}, {mapping(81, port)}, {}});
  engine::PortMapping range;
  range.container_port_range = "9100-9101";
  task.definition.container_definitions[2].port_mappings.push_back(range);
  const std::string given = startInDeadAgent(task);
  ASSERT_THAT(given, ::testing::Not(::testing::StartsWith("error")));
  ASSERT_THAT(given, HasSubstr(fmt::format(":{}->81", port)));
  EXPECT_THAT(deadAgentTasks(hostOptions()), ::testing::ElementsAre(task.id));
  const HostState crashed = hostState();
  ASSERT_NE(crashed, before);

  auto recovered = recover(task);
  ASSERT_TRUE(recovered) << recovered.error().message;
  // The same namespaces, addresses and host ports, nothing new on the host or in the stores.
  EXPECT_EQ(contributed(task), given);
  EXPECT_EQ(hostState(), crashed);
  EXPECT_THAT(deadAgentTasks(hostOptions()), IsEmpty());
  EXPECT_THAT(sweepDeadAgents(hostOptions()), IsEmpty());
  EXPECT_EQ(hostState(), crashed);
  const std::string ports_adopted = readFile(state_dir_ / "host_ports.json");
  EXPECT_THAT(ports_adopted, HasSubstr(fmt::format("\"pid\":{}", ::getpid())));
  // The mappings still carry traffic.
  const auto& bindings = task.containers[0].network_bindings;
  ASSERT_EQ(bindings.size(), 2u);
  Responder server(task.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "survivor");
  EXPECT_EQ(exchange("", SOCK_STREAM, "127.0.0.1", bindings[0].host_port), "survivor");
  // A second start of the same host port fails as it would against a live agent's task.
  TestTask rival;
  rival.definition = definition("bridge", {{mapping(81, port)}});
  auto resource = factory_->resourceFor(info(rival));
  ASSERT_TRUE(resource);
  EXPECT_FALSE((*resource)->create());
  (*resource)->cleanup();

  // The adopted task stops: everything goes, as for a task this process made.
  task.resource->releaseOnStop();
  task.resource->cleanup();
  EXPECT_EQ(hostState(), before);
  EXPECT_EQ(readFile(state_dir_ / "ipam.json"), ipam_before);
  EXPECT_EQ(readFile(state_dir_ / "host_ports.json"), ports_before);
}

TEST_F(NetnsTaskNetworkTest, AwsvpcHostAndNoneTasksOfAKilledAgentAreRecovered) {
  const HostState before = hostState();
  const std::string ipam_before = readFile(state_dir_ / "ipam.json");
  const std::string ports_before = readFile(state_dir_ / "host_ports.json");
  TestTask awsvpc, host, none;
  awsvpc.definition = definition("awsvpc", {{mapping(8080)}, {}});
  host.definition = definition("host", {{mapping(freePort())}});
  none.definition = definition("none", {{}});
  std::map<std::string, std::string> given;
  for (TestTask* task : {&awsvpc, &host, &none}) {
    given[task->id] = startInDeadAgent(*task);
    ASSERT_THAT(given[task->id], ::testing::Not(::testing::StartsWith("error")));
  }
  EXPECT_THAT(deadAgentTasks(hostOptions()), ::testing::UnorderedElementsAre(awsvpc.id, host.id));
  const HostState crashed = hostState();
  for (TestTask* task : {&awsvpc, &host, &none}) {
    auto recovered = recover(*task);
    ASSERT_TRUE(recovered) << task->definition.network_mode << ": " << recovered.error().message;
    EXPECT_EQ(contributed(*task), given[task->id]) << task->definition.network_mode;
  }
  EXPECT_THAT(sweepDeadAgents(hostOptions()), IsEmpty());
  EXPECT_EQ(hostState(), crashed);
  Responder app(awsvpc.containers[0].netns_path, SOCK_STREAM, "127.0.0.1", 8080, "app");
  EXPECT_EQ(exchange(awsvpc.containers[1].netns_path, SOCK_STREAM, "127.0.0.1", 8080), "app");
  for (TestTask* task : {&awsvpc, &host, &none}) task->resource->cleanup();
  EXPECT_EQ(hostState(), before);
  EXPECT_EQ(readFile(state_dir_ / "ipam.json"), ipam_before);
  EXPECT_EQ(readFile(state_dir_ / "host_ports.json"), ports_before);
}

TEST_F(NetnsTaskNetworkTest, RecoverAddsMissingPortMappingRulesAgain) {
  TestTask task;
  task.definition = definition("bridge", {{mapping(80)}});
  const std::string given = startInDeadAgent(task);
  ASSERT_THAT(given, ::testing::Not(::testing::StartsWith("error")));
  const std::string rules = iptablesSave();
  ASSERT_THAT(rules, HasSubstr(taskTag(task.id)));
  ASSERT_TRUE(Iptables::deleteTagged(taskTag(task.id)));
  ASSERT_THAT(iptablesSave(), ::testing::Not(HasSubstr(taskTag(task.id))));
  auto recovered = recover(task);
  ASSERT_TRUE(recovered) << recovered.error().message;
  EXPECT_EQ(iptablesSave(), rules);
  EXPECT_EQ(contributed(task), given);
  Responder server(task.containers[0].netns_path, SOCK_STREAM, "0.0.0.0", 80, "remapped");
  EXPECT_EQ(
      exchange("", SOCK_STREAM, "127.0.0.1", task.containers[0].network_bindings[0].host_port),
      "remapped");
}

TEST_F(NetnsTaskNetworkTest, RecoverFailsNamingWhatIsGoneAndAdoptsNothing) {
  const HostState before = hostState();
  const std::string ipam_before = readFile(state_dir_ / "ipam.json");
  const std::string ports_before = readFile(state_dir_ / "host_ports.json");
  TestTask task;
  task.definition = definition("bridge", {{mapping(80)}, {}});
  ASSERT_THAT(startInDeadAgent(task), ::testing::Not(::testing::StartsWith("error")));
  const std::string netns = containerNamespaceName(task.id, 1);
  ASSERT_TRUE(removeNamespace(netns));
  auto recovered = recover(task);
  ASSERT_FALSE(recovered);
  EXPECT_EQ(recovered.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(
      recovered.error().message,
      HasSubstr(fmt::format("container c1: network namespace {} is gone", namespacePath(netns))));
  // Still the dead agent's: the sweep takes it all.
  EXPECT_THAT(deadAgentTasks(hostOptions()), ::testing::ElementsAre(task.id));
  EXPECT_THAT(sweepDeadAgents(hostOptions()), ::testing::ElementsAre(task.id));
  EXPECT_EQ(hostState(), before);
  EXPECT_EQ(readFile(state_dir_ / "ipam.json"), ipam_before);
  EXPECT_EQ(readFile(state_dir_ / "host_ports.json"), ports_before);
  task.resource->cleanup();

  // Tasks no agent here ever created: nothing to re-attach to.
  TestTask never_bridge, never_awsvpc, never_host;
  never_bridge.definition = definition("bridge", {{}});
  never_awsvpc.definition = definition("awsvpc", {{}});
  never_host.definition = definition("host", {{mapping(freePort())}});
  for (TestTask* never : {&never_bridge, &never_awsvpc, &never_host}) {
    auto result = recover(*never);
    ASSERT_FALSE(result) << never->definition.network_mode;
    EXPECT_EQ(result.error().code, ErrorCode::kNotFound);
    EXPECT_THAT(result.error().message, HasSubstr("recover the network of task " + never->id));
  }
  EXPECT_THAT(recover(never_bridge).error().message,
              HasSubstr("no address of task " + never_bridge.id + " for c0 is recorded"));
  EXPECT_THAT(recover(never_host).error().message,
              HasSubstr("no host ports of task " + never_host.id + " are recorded"));
  EXPECT_EQ(hostState(), before);
  EXPECT_EQ(readFile(state_dir_ / "host_ports.json"), ports_before);
}

}  // namespace
}  // namespace ecs::netns
