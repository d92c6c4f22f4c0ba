// A task floods the task endpoint with 5,000 connections, through the real agent (`run`) started
// with the 1,024-descriptor limit most distributions give a process: the per-client cap keeps all
// but 64 of them from being held, the agent's CPU stays at a few percent once they are refused,
// its log grows by a handful of lines, and another client's credentials request is answered within
// 50 ms meanwhile. Before the caps, 1,100 connections took a descriptor each until accept() failed
// with EMFILE, and the server then spun on it, logging every failure.
//
// And the caps as configured: with ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT=8 the ninth
// connection from one address is reset, and the total (ECS_TASK_ENDPOINT_MAX_CONNECTIONS) is
// lowered to the descriptor limit less ECS_RESERVED_FDS.
//
// The flood comes from the task's own network namespace (its address, through 169.254.170.2 as a
// container reaches it), opened by this process: the test image has no client that could hold
// thousands of connections. The other client is this process on the host side, at 127.0.0.1.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "netns/allocation_file.h"
#include "netns/network_namespace.h"
#include "tests/support/agent_process.h"
#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::netns::UniqueFd;
using ecs::testing::BackgroundProcess;
using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using ecs::testing::waitFor;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kFloodConnections = 5000;
constexpr size_t kPerClientCap = 64;  // the task endpoint's default
constexpr int kAgentFdLimit = 1024;

// The agent's CPU time so far (user + system), from /proc/<pid>/stat.
std::chrono::milliseconds cpuTime(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may hold spaces: state is field 3,
  // utime 14 and stime 15.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return std::chrono::milliseconds((utime + stime) * 1000 / sysconf(_SC_CLK_TCK));
}

// The soft and hard limits of "Max open files" in /proc/<pid>/limits, as written there.
std::string openFilesLimit(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/limits", pid));
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("Max open files")) continue;
    std::istringstream words(line.substr(std::strlen("Max open files")));
    std::string soft, hard;
    words >> soft >> hard;
    return soft + ":" + hard;
  }
  return "";
}

// Raises this process's soft descriptor limit for the flood's client ends; restores it after.
class RaisedFdLimit {
 public:
  explicit RaisedFdLimit(rlim_t wanted) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit raised = saved_;
    raised.rlim_cur = std::max(saved_.rlim_cur, std::min(wanted, saved_.rlim_max));
    setrlimit(RLIMIT_NOFILE, &raised);
    ok_ = raised.rlim_cur >= wanted;
  }
  ~RaisedFdLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

sockaddr_in ipv4(const char* address, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, address, &a.sin_addr);
  return a;
}

// Starts `count` non-blocking connections to 169.254.170.2:80 from the namespace at `netns_path`
// (the sockets stay in it whichever thread uses them).
ecs::Result<std::vector<UniqueFd>> startFlood(const std::string& netns_path, int count) {
  std::vector<UniqueFd> fds;
  auto started = ecs::netns::runInNamespace(netns_path, [&]() -> ecs::Result<void> {
    auto endpoint = ipv4("169.254.170.2", 80);
    for (int i = 0; i < count; ++i) {
      UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd) return ecs::fail(ecs::ErrorCode::kInternal, "socket: {}", std::strerror(errno));
      if (connect(fd.get(), reinterpret_cast<sockaddr*>(&endpoint), sizeof endpoint) != 0 &&
          errno != EINPROGRESS) {
        return ecs::fail(ecs::ErrorCode::kInternal, "connect: {}", std::strerror(errno));
      }
      fds.push_back(std::move(fd));
    }
    return {};
  });
  if (!started) return ecs::fail(started.error());
  return fds;
}

// Where the flood's connections are: still connecting, open (held by the server), or answered
// by the server with a reset or a close.
struct FloodState {
  size_t connecting = 0, open = 0, ended = 0;
};
FloodState floodState(const std::vector<UniqueFd>& fds) {
  std::vector<pollfd> polls;
  polls.reserve(fds.size());
  for (const auto& fd : fds) polls.push_back({fd.get(), POLLIN | POLLOUT, 0});
  poll(polls.data(), polls.size(), 0);
  FloodState state;
  for (const auto& p : polls) {
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
      ++state.ended;
    } else if (p.revents & POLLOUT) {
      ++state.open;
    } else {
      ++state.connecting;
    }
  }
  return state;
}

struct Probe {
  std::string status_line;
  std::string body;
  Clock::duration took{};
};

// One GET on a new connection from the host side, timed from connect() to the end of the answer.
Probe probe(int port, const std::string& target) {
  Probe result;
  const auto start = Clock::now();
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval timeout{2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  auto address = ipv4("127.0.0.1", static_cast<uint16_t>(port));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return result;
  const std::string request =
      fmt::format("GET {} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n", target);
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return result;
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd.get(), buffer, sizeof buffer, 0)) > 0;) {
    response.append(buffer, static_cast<size_t>(n));
  }
  result.took = Clock::now() - start;
  result.status_line = response.substr(0, response.find("\r\n"));
  auto body = response.find("\r\n\r\n");
  if (body != std::string::npos) result.body = response.substr(body + 4);
  return result;
}

size_t lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

class EndpointsFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace("flood");
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
  }

  void TearDown() override {
    auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
    EXPECT_TRUE(teardown.ok()) << teardown.describe();
    ecs::testing::removeAllImages(ns_);
    ecs::testing::expectNoLeaks(ns_);
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  std::vector<std::string> agentEnv() {
    return {"ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
            "ECS_CONTAINERD_NAMESPACE=" + ns_,
            "ECS_LOGLEVEL=warn",
            "ECS_DATADIR=" + data_dir_.string(),
            "ECS_BRIDGE_NAME=ecs-test-br7",
            "ECS_BRIDGE_SUBNET=172.31.247.0/24",
            "ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_),
            "ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_),
            "ECS_CLUSTER=flood-test",
            "AWS_REGION=eu-west-1",
            "AWS_ACCESS_KEY_ID=AKIDFLOODTEST",
            "AWS_SECRET_ACCESS_KEY=flood-secret",
            "AWS_SESSION_TOKEN=flood-token",
            "AWS_EC2_METADATA_DISABLED=true"};
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
};

TEST_F(EndpointsFloodTest, FiveThousandConnectionsFromOneTaskLeaveTheAgentIdleAndOthersServed) {
  RaisedFdLimit client_fds(kFloodConnections + 512);
  ASSERT_TRUE(client_fds.ok()) << "the test needs " << kFloodConnections + 512
                               << " descriptors of its own (hard RLIMIT_NOFILE)";

  json::object definition{
      {"family", "flood"},
      {"networkMode", "awsvpc"},
      {"taskRoleArn", "arn:aws:iam::123456789012:role/app"},
      {"containerDefinitions",
       json::array{json::object{
           {"name", "app"},
           {"image", harnessEnv().registry() + "/test/busybox:oci"},
           {"memory", 32},
           {"stopTimeout", 2},
           {"command",
            json::array{"sh", "-c",
                        "echo uri=$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; sleep 60"}}}}}};
  auto path = data_dir_ / "taskdef.json";
  std::ofstream(path) << json::serialize(definition);
  // The hard limit too: the agent raises its soft limit to the hard one at start.
  const std::string limit = fmt::format("{0}:{0}", kAgentFdLimit);
  BackgroundProcess run(
      {"prlimit", "--nofile=" + limit, agent_, "run", path.string(), "--output", "json"},
      agentEnv(), data_dir_.string());
  // Whatever fails below, the agent stops its task and cleans up before the leak check.
  struct StopAgent {
    BackgroundProcess& run;
    ~StopAgent() {
      if (!run.exitStatus()) (void)run.stop(SIGTERM, 30s);  // a hung agent is SIGKILLed
    }
  } stop_agent{run};
  auto line = run.waitForJson(
      [](const json::object& l) {
        return l.at("type") == "log" && l.at("log").as_string().starts_with("uri=");
      },
      120s);
  ASSERT_TRUE(line) << run.out() << run.err();
  ASSERT_EQ(openFilesLimit(run.pid()), limit) << "the agent runs with the limit it was given";
  const std::string credentials = std::string(line->at("log").as_string()).substr(4);
  std::string task_arn;
  for (const auto& l : run.jsonLines()) {
    if (l.at("type") == "state") {
      task_arn = l.at("taskArn").as_string();
      break;
    }
  }
  ASSERT_FALSE(task_arn.empty()) << run.out();
  const std::string netns =
      ecs::netns::namespacePath("ecs-" + task_arn.substr(task_arn.rfind('/') + 1));

  // The other client is answered before the flood, and what the agent logged so far is counted.
  auto before = probe(endpoint_port_, credentials);
  ASSERT_EQ(before.status_line, "HTTP/1.1 200 OK") << before.body;
  const size_t log_lines_before = lines(run.err());

  auto flood = startFlood(netns, kFloodConnections);
  ASSERT_TRUE(flood) << flood.error().message;
  // Every connection is taken by the server: all but the per-client cap are reset at once. If
  // not, the measures below still say what the flood does to the agent.
  FloodState state;
  EXPECT_TRUE(waitFor(
      [&] {
        state = floodState(*flood);
        return state.connecting == 0 && state.ended >= kFloodConnections - kPerClientCap;
      },
      15s, "the server to take every connection of the flood"))
      << state.connecting << " connecting, " << state.open << " open, " << state.ended
      << " ended; the agent's log begins: " << run.err().substr(0, 2000);
  EXPECT_LE(state.open, kPerClientCap);

  // From now on, over three seconds: the agent's CPU and log, and the other client's answers,
  // paced at five a second (well inside the 40 a second of its rate limit).
  const auto window_start = Clock::now();
  const auto cpu_start = cpuTime(run.pid());
  std::vector<Probe> probes;
  while (Clock::now() - window_start < 3s) {
    probes.push_back(probe(endpoint_port_, credentials));
    std::this_thread::sleep_for(200ms);  // pacing the probes, not waiting for an event
  }
  const auto window = Clock::now() - window_start;
  const auto cpu = cpuTime(run.pid()) - cpu_start;
  const double cpu_share =
      std::chrono::duration<double>(cpu).count() / std::chrono::duration<double>(window).count();
  EXPECT_LT(cpu_share, 0.05)
      << cpu.count() << " ms of CPU in "
      << std::chrono::duration_cast<std::chrono::milliseconds>(window).count() << " ms";

  RecordProperty("agent_cpu_ms", static_cast<int>(cpu.count()));
  EXPECT_GE(probes.size(), 10u) << "each probe took more than its share of the window";
  if (!probes.empty()) {
    auto slowest = std::max_element(probes.begin(), probes.end(),
                                    [](const Probe& a, const Probe& b) { return a.took < b.took; });
    RecordProperty(
        "slowest_probe_us",
        static_cast<int>(
            std::chrono::duration_cast<std::chrono::microseconds>(slowest->took).count()));
  }
  for (const auto& p : probes) {
    EXPECT_EQ(p.status_line, "HTTP/1.1 200 OK") << p.body;
    EXPECT_NE(p.body.find("AKIDFLOODTEST"), std::string::npos) << p.body;
    EXPECT_LT(p.took, 50ms) << std::chrono::duration_cast<std::chrono::microseconds>(p.took).count()
                            << " us";
  }

  // A refusal line at most per interval; no line per connection.
  const std::string log = run.err();
  EXPECT_LE(lines(log) - log_lines_before, 10u)
      << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  EXPECT_NE(log.find("refused"), std::string::npos) << log.substr(0, 2000);

  flood->clear();
  EXPECT_NE(run.stop(SIGTERM), -1);
}

TEST_F(EndpointsFloodTest, ConfiguredCapsRefuseTheNinthConnectionFromOneAddress) {
  constexpr size_t kConfiguredPerClient = 8;
  json::object definition{
      {"family", "caps"},
      {"networkMode", "none"},
      {"containerDefinitions",
       json::array{json::object{{"name", "app"},
                                {"image", harnessEnv().registry() + "/test/busybox:oci"},
                                {"memory", 32},
                                {"stopTimeout", 2},
                                {"command", json::array{"sh", "-c", "echo ready; sleep 60"}}}}}};
  auto path = data_dir_ / "taskdef-caps.json";
  std::ofstream(path) << json::serialize(definition);
  auto env = agentEnv();
  env.push_back(
      fmt::format("ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT={}", kConfiguredPerClient));
  env.push_back("ECS_TASK_ENDPOINT_MAX_CONNECTIONS=1000");
  // With 1,024 descriptors, a reserve of 600 leaves the endpoint 424 (the default reserve: 512).
  env.push_back("ECS_RESERVED_FDS=600");
  const std::string limit = fmt::format("{0}:{0}", kAgentFdLimit);
  BackgroundProcess run(
      {"prlimit", "--nofile=" + limit, agent_, "run", path.string(), "--output", "json"}, env,
      data_dir_.string());
  struct StopAgent {
    BackgroundProcess& run;
    ~StopAgent() {
      if (!run.exitStatus()) (void)run.stop(SIGTERM, 30s);
    }
  } stop_agent{run};
  ASSERT_TRUE(run.waitForJson(
      [](const json::object& l) { return l.at("type") == "log" && l.at("log") == "ready"; }, 120s))
      << run.out() << run.err();

  // Nine connections from 127.0.0.1, one after the other: eight are held, the ninth is reset.
  std::vector<UniqueFd> fds;
  auto endpoint = ipv4("127.0.0.1", static_cast<uint16_t>(endpoint_port_));
  for (size_t i = 0; i <= kConfiguredPerClient; ++i) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_TRUE(connect(fd.get(), reinterpret_cast<sockaddr*>(&endpoint), sizeof endpoint) == 0 ||
                errno == EINPROGRESS)
        << std::strerror(errno);
    fds.push_back(std::move(fd));
    // Each is connected before the next: the server takes them in order, the ninth over the cap.
    ASSERT_TRUE(waitFor([&] { return floodState(fds).connecting == 0; }, 5s, "the connection"));
  }
  FloodState state;
  EXPECT_TRUE(waitFor(
      [&] {
        state = floodState(fds);
        return state.ended >= 1;
      },
      3s, "the ninth connection to be reset"));
  state = floodState(fds);
  EXPECT_EQ(state.open, kConfiguredPerClient);
  EXPECT_EQ(state.ended, 1u);
  EXPECT_TRUE(waitFor([&] { return run.err().find("refused") != std::string::npos; }, 5s,
                      "the refusal's log line"));
  EXPECT_NE(run.err().find("(8 per client address, 424 in all)"), std::string::npos) << run.err();

  fds.clear();
  EXPECT_NE(run.stop(SIGTERM), -1);
}

}  // namespace
