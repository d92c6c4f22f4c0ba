// Task networking end to end through `ecs-node-agent run`: bridge mode with dynamic and static
// host ports (tcp, udp, ranges), awsvpc's shared namespace, host mode, the 169.254.170.2
// endpoint route, the IMDS block, and churn that must leave the host exactly as it was.
//
// Every test runs on its own bridge and subnet (ECS_BRIDGE_NAME / ECS_BRIDGE_SUBNET) and tears
// it down with `ecs-node-agent network teardown`, so the host keeps nothing.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/agent_process.h"
#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::BackgroundProcess;
using ecs::testing::harnessEnv;
using ecs::testing::isState;
using ecs::testing::runCommand;
using ecs::testing::RunResult;
using ecs::testing::waitFor;
using namespace std::chrono_literals;

constexpr const char* kBridge = "ecs-test-br0";
constexpr const char* kSubnet = "172.31.250.0/24";
constexpr const char* kGateway = "172.31.250.1";

// What the host's network looks like, to compare before and after.
struct HostNetworkState {
  std::string netns, links, iptables;
  bool operator==(const HostNetworkState&) const = default;
};

HostNetworkState hostNetworkState() {
  HostNetworkState state;
  state.netns = runCommand({"ip", "netns", "list"}).out;
  // Link indexes and statistics change; names and kinds are what must not.
  auto links = runCommand({"ip", "-o", "link", "show"}).out;
  std::istringstream in(links);
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(": ");
    auto end = line.find(':', colon + 2);
    if (colon != std::string::npos) state.links += line.substr(colon + 2, end - colon - 2) + "\n";
  }
  // Counters ([packets:bytes]) and comments with the date change between two saves.
  auto saved = runCommand({"iptables-save"}).out;
  std::istringstream rules(saved);
  for (std::string line; std::getline(rules, line);) {
    if (line.starts_with("#")) continue;
    line = std::regex_replace(line, std::regex(R"(\[\d+:\d+\])"), "[0:0]");
    state.iptables += line + "\n";
  }
  return state;
}

class RunNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
    before_ = hostNetworkState();
  }

  void TearDown() override {
    processes_.clear();  // kills anything still running
    auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
    EXPECT_TRUE(teardown.ok()) << teardown.describe();
    ecs::testing::removeAllImages(ns_);
    ecs::testing::expectNoLeaks(ns_);
    auto after = hostNetworkState();
    EXPECT_EQ(before_.netns, after.netns) << "network namespaces left behind";
    EXPECT_EQ(before_.links, after.links) << "links left behind";
    EXPECT_EQ(before_.iptables, after.iptables) << "iptables rules left behind";
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  RunResult ctr(std::vector<std::string> args) {
    args.insert(args.begin(), {"ctr", "-a", harnessEnv().containerdAddress(), "-n", ns_});
    return runCommand(args, {}, std::chrono::seconds(60));
  }

  std::vector<std::string> agentEnv(std::vector<std::string> extra = {}) {
    std::vector<std::string> env = {"ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
                                    "ECS_CONTAINERD_NAMESPACE=" + ns_,
                                    "ECS_LOGLEVEL=warn",
                                    "ECS_DATADIR=" + data_dir_.string(),
                                    std::string("ECS_BRIDGE_NAME=") + kBridge,
                                    std::string("ECS_BRIDGE_SUBNET=") + kSubnet,
                                    "ECS_DYNAMIC_HOST_PORT_RANGE=61000-61999"};
    // The agent's own endpoint servers on ports of their own, unless the test picks one.
    bool endpoint_given = std::any_of(extra.begin(), extra.end(), [](const std::string& e) {
      return e.starts_with("ECS_TASK_ENDPOINT_PORT=");
    });
    if (!endpoint_given) env.push_back("ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_));
    env.push_back("ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_));
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
  }

  std::string writeTaskDefinition(std::string text) {
    text = std::regex_replace(text, std::regex(R"(\$\{IMAGE\})"),
                              harnessEnv().registry() + "/test/busybox:oci");
    auto path = data_dir_ / ("taskdef-" + std::to_string(counter_++) + ".json");
    std::ofstream(path) << text;
    return path.string();
  }

  // Starts `run` in the background.
  BackgroundProcess& start(const std::string& taskdef, std::vector<std::string> extra_env = {}) {
    processes_.push_back(std::make_unique<BackgroundProcess>(
        std::vector<std::string>{agent_, "run", writeTaskDefinition(taskdef), "--output", "json"},
        agentEnv(std::move(extra_env)), data_dir_.string()));
    return *processes_.back();
  }

  // Runs `run` to completion; returns its exit status and JSON lines.
  std::pair<int, std::vector<json::object>> runToEnd(const std::string& taskdef,
                                                     std::vector<std::string> extra_env = {}) {
    auto& process = start(taskdef, std::move(extra_env));
    int status = process.wait(180s);
    return {status, process.jsonLines()};
  }

  // The RUNNING line of `container`, or a failure with everything the agent said.
  json::object waitRunning(BackgroundProcess& process, const std::string& container) {
    auto line = process.waitForJson(
        [&](const json::object& l) { return isState(l, container, "RUNNING"); }, 120s);
    if (!line) {
      ADD_FAILURE() << container << " never reached RUNNING; stdout: " << process.out()
                    << "; stderr: " << process.err();
      return {};
    }
    return *line;
  }

  static std::string httpGet(const std::string& url) {
    return runCommand({"curl", "-s", "--max-time", "5", url}).out;
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int counter_ = 0;
  HostNetworkState before_;
  // One pair per test: the bridge's endpoint rules name the port, and must not change.
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
  std::vector<std::unique_ptr<BackgroundProcess>> processes_;
};

// A web server answering `text` on `port`, in busybox.
std::string webServer(const std::string& name, const std::string& text, int port,
                      const std::string& port_mappings) {
  return fmt::format(
      R"({{"name": "{}", "image": "${{IMAGE}}", "memory": 64, "stopTimeout": 2,
           "command": ["sh", "-c", "mkdir -p /www && echo {} > /www/index.html && exec httpd -f -p {} -h /www"],
           "portMappings": {}}})",
      name, text, port, port_mappings);
}

int hostPortOf(const json::object& running, size_t index = 0) {
  const auto& bindings = running.at("networkBindings").as_array();
  if (bindings.size() <= index) {
    ADD_FAILURE() << "no network binding " << index << " in " << json::serialize(running);
    return 0;
  }
  return static_cast<int>(bindings[index].at("hostPort").as_int64());
}

TEST_F(RunNetworkTest, TwoTasksWithTheSameContainerPortGetTheirOwnHostPorts) {
  const std::string mapping = R"([{"containerPort": 8080}])";
  auto& a = start(fmt::format(R"({{"family": "web-a", "containerDefinitions": [{}]}})",
                              webServer("web", "from-a", 8080, mapping)));
  auto& b = start(fmt::format(R"({{"family": "web-b", "containerDefinitions": [{}]}})",
                              webServer("web", "from-b", 8080, mapping)));
  int port_a = hostPortOf(waitRunning(a, "web"));
  int port_b = hostPortOf(waitRunning(b, "web"));
  ASSERT_NE(port_a, 0);
  ASSERT_NE(port_b, 0);
  EXPECT_NE(port_a, port_b);
  EXPECT_GE(port_a, 61000);
  EXPECT_LE(port_a, 61999);
  auto running = a.jsonLines();
  for (const auto& line : running) {
    if (!isState(line, "web", "RUNNING")) continue;
    const auto& binding = line.at("networkBindings").as_array().at(0).as_object();
    EXPECT_EQ(binding.at("containerPort").as_int64(), 8080);
    EXPECT_EQ(binding.at("protocol").as_string(), "tcp");
    EXPECT_EQ(binding.at("bindIP").as_string(), "0.0.0.0");
  }
  // From loopback and from another host address (the bridge's own).
  for (const std::string host : {"127.0.0.1", kGateway}) {
    EXPECT_EQ(httpGet(fmt::format("http://{}:{}/", host, port_a)), "from-a\n") << host;
    EXPECT_EQ(httpGet(fmt::format("http://{}:{}/", host, port_b)), "from-b\n") << host;
  }
  // From another container: task c fetches a's page through a's host port.
  auto [status, lines] = runToEnd(fmt::format(
      R"({{"family": "client", "containerDefinitions": [{{"name": "client", "image": "${{IMAGE}}",
          "memory": 32, "stopTimeout": 2, "command": ["sh", "-c", "busybox timeout 5 wget -qO- http://{}:{}/"]}}]}})",
      kGateway, port_a));
  EXPECT_EQ(status, 0);
  std::string output;
  for (const auto& l : lines) {
    if (l.at("type") == "log" && l.at("stream") == "stdout") output += l.at("log").as_string();
  }
  EXPECT_EQ(output, "from-a");
  EXPECT_NE(a.stop(SIGTERM), -1);
  EXPECT_NE(b.stop(SIGTERM), -1);
}

TEST_F(RunNetworkTest, StaticHostPortAlreadyHeldFailsTheSecondTask) {
  const int port = ecs::testing::unusedPort();
  const std::string mapping = fmt::format(R"([{{"containerPort": 8080, "hostPort": {}}}])", port);
  auto& a = start(fmt::format(R"({{"family": "first", "containerDefinitions": [{}]}})",
                              webServer("web", "first", 8080, mapping)));
  EXPECT_EQ(hostPortOf(waitRunning(a, "web")), port);
  EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", port)), "first\n");
  auto [status, lines] =
      runToEnd(fmt::format(R"({{"family": "second", "containerDefinitions": [{}]}})",
                           webServer("web", "second", 8080, mapping)));
  EXPECT_EQ(status, 125);
  std::string reason;
  for (const auto& l : lines) {
    if (isState(l, "", "STOPPED")) reason = l.at("reason").as_string();
  }
  EXPECT_NE(reason.find(fmt::format("host port {}/tcp", port)), std::string::npos) << reason;
  EXPECT_NE(reason.find("already"), std::string::npos) << reason;
  // The first task is untouched.
  EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", port)), "first\n");
  a.stop(SIGTERM);
}

TEST_F(RunNetworkTest, PortRangeMapsEveryPortWithItsOffset) {
  auto& a = start(R"({"family": "range", "containerDefinitions": [)" +
                  webServer("web", "in-range", 9001,
                            R"([{"containerPortRange": "9000-9002", "protocol": "tcp"}])") +
                  "]}");
  auto running = waitRunning(a, "web");
  ASSERT_FALSE(running.empty());
  const auto& binding = running.at("networkBindings").as_array().at(0).as_object();
  EXPECT_EQ(binding.at("containerPortRange").as_string(), "9000-9002");
  std::string host_range(binding.at("hostPortRange").as_string());
  int first = std::stoi(host_range.substr(0, host_range.find('-')));
  int last = std::stoi(host_range.substr(host_range.find('-') + 1));
  EXPECT_EQ(last - first, 2);
  EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", first + 1)), "in-range\n");
  a.stop(SIGTERM);
}

TEST_F(RunNetworkTest, UdpPortMaps) {
  // busybox has no UDP server: the listener is Python, run inside the container's own network
  // namespace, which is all a UDP mapping reaches.
  auto& a = start(R"({"family": "udp", "containerDefinitions": [{"name": "listener",
      "image": "${IMAGE}", "memory": 32, "stopTimeout": 2, "command": ["sleep", "60"],
      "portMappings": [{"containerPort": 5353, "protocol": "udp"}]}]})");
  auto running = waitRunning(a, "listener");
  ASSERT_FALSE(running.empty());
  EXPECT_EQ(running.at("networkBindings").as_array().at(0).at("protocol").as_string(), "udp");
  int port = hostPortOf(running);
  std::string arn(running.at("taskArn").as_string());
  const std::string netns = "ecs-" + arn.substr(arn.rfind('/') + 1) + "-0";
  BackgroundProcess listener({"ip", "netns", "exec", netns, "/usr/bin/python3", "-c",
                              "import socket,sys\n"
                              "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                              "s.bind(('0.0.0.0',5353))\n"
                              "print('bound',flush=True)\n"
                              "data,peer=s.recvfrom(100)\n"
                              "print(data.decode().strip(),flush=True)\n"},
                             {}, data_dir_.string());
  // A datagram sent before the listener binds is lost: send once it says it is bound.
  ASSERT_TRUE(waitFor([&] { return listener.out() == "bound\n" || listener.exitStatus(); }, 20s,
                      "the listener to bind"));
  ASSERT_EQ(listener.out(), "bound\n") << listener.err();
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string payload = "hello-over-udp\n";
  EXPECT_EQ(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&addr),
                     sizeof addr),
            static_cast<ssize_t>(payload.size()));
  ::close(fd);
  EXPECT_EQ(listener.wait(5s), 0) << listener.err();
  EXPECT_EQ(listener.out(), "bound\nhello-over-udp\n");
  a.stop(SIGTERM);
}

TEST_F(RunNetworkTest, AwsvpcSidecarReachesTheAppOnLocalhost) {
  auto [status, lines] =
      runToEnd(R"({"family": "sidecar", "networkMode": "awsvpc",
      "containerDefinitions": [)" +
               webServer("app", "app-page", 8080, "[]") +
               R"(, {"name": "proxy", "image": "${IMAGE}", "memory": 32, "stopTimeout": 2,
        "command": ["sh", "-c", "for i in $(seq 100); do busybox timeout 2 wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"]}]})");
  EXPECT_EQ(status, 0);
  std::string output;
  for (const auto& l : lines) {
    // Its stdout only: the retries before the app listens complain on stderr.
    if (l.at("type") == "log" && l.at("containerName") == "proxy" && l.at("stream") == "stdout")
      output += l.at("log").as_string();
  }
  EXPECT_EQ(output, "app-page");
}

TEST_F(RunNetworkTest, HostModeBindsOnTheHostAndClashesClearly) {
  const int port = ecs::testing::unusedPort();
  const std::string mapping = fmt::format(R"([{{"containerPort": {0}, "hostPort": {0}}}])", port);
  auto& a = start(fmt::format(R"({{"family": "host", "networkMode": "host",
                                   "containerDefinitions": [{}]}})",
                              webServer("web", "on-host", port, mapping)));
  auto running = waitRunning(a, "web");
  EXPECT_EQ(hostPortOf(running), port);
  EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", port)), "on-host\n");
  auto [status, lines] = runToEnd(fmt::format(R"({{"family": "host2", "networkMode": "host",
                                 "containerDefinitions": [{}]}})",
                                              webServer("web", "second", port, mapping)));
  EXPECT_EQ(status, 125);
  std::string reason;
  for (const auto& l : lines) {
    if (isState(l, "", "STOPPED")) reason = l.at("reason").as_string();
  }
  EXPECT_NE(reason.find(std::to_string(port)), std::string::npos) << reason;
  a.stop(SIGTERM);
}

TEST_F(RunNetworkTest, HostModeRefusesADifferentHostPort) {
  auto [status, lines] = runToEnd(
      R"({"family": "bad", "networkMode": "host", "containerDefinitions": [{"name": "web",
          "image": "${IMAGE}", "memory": 32, "stopTimeout": 2, "command": ["true"],
          "portMappings": [{"containerPort": 8080, "hostPort": 8081}]}]})");
  EXPECT_NE(status, 0);
  std::string all = processes_.back()->err();
  for (const auto& l : lines) all += json::serialize(l);
  EXPECT_NE(all.find("8081"), std::string::npos) << all;
}

TEST_F(RunNetworkTest, ContainerReachesTheEndpointAt169_254_170_2) {
  // A stand-in for the agent's endpoint server on a loopback port of its own.
  const int port = ecs::testing::unusedPort();
  fs::create_directories(data_dir_ / "www");
  std::ofstream(data_dir_ / "www" / "index.html") << "endpoint-stand-in\n";
  BackgroundProcess server({"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                            std::to_string(port), "--directory", (data_dir_ / "www").string()},
                           {}, data_dir_.string());
  ASSERT_TRUE(waitFor([&] { return !httpGet(fmt::format("http://127.0.0.1:{}/", port)).empty(); },
                      20s, "the stand-in server to answer"))
      << server.err();
  for (const std::string mode : {"bridge", "awsvpc"}) {
    auto [status, lines] = runToEnd(
        fmt::format(R"({{"family": "endpoint", "networkMode": "{}", "containerDefinitions": [
            {{"name": "client", "image": "${{IMAGE}}", "memory": 32, "stopTimeout": 2,
              "command": ["busybox", "timeout", "5", "wget", "-qO-", "http://169.254.170.2/"]}}]}})",
                    mode),
        {"ECS_TASK_ENDPOINT_PORT=" + std::to_string(port)});
    EXPECT_EQ(status, 0) << mode;
    std::string output;
    for (const auto& l : lines) {
      if (l.at("type") == "log" && l.at("stream") == "stdout") output += l.at("log").as_string();
    }
    EXPECT_EQ(output, "endpoint-stand-in") << mode;
  }
  server.stop(SIGTERM);
}

// In bridge mode as in awsvpc (AWS's guidance asks the same of bridge-mode hosts).
TEST_F(RunNetworkTest, BlockImdsRefusesConnectionsInsideTheTaskNamespace) {
  for (const std::string mode : {"awsvpc", "bridge"}) {
    SCOPED_TRACE(mode);
    auto& a =
        start(R"({"family": "imds", "networkMode": ")" + mode + R"(", "containerDefinitions": [
      {"name": "app", "image": "${IMAGE}", "memory": 32, "stopTimeout": 2, "command": ["sleep", "60"]}]})",
              {"ECS_AWSVPC_BLOCK_IMDS=true"});
    auto running = waitRunning(a, "app");
    ASSERT_FALSE(running.empty());
    std::string arn(running.at("taskArn").as_string());
    // A bridge-mode container has a namespace of its own (slot 0); an awsvpc task one for all.
    std::string netns = "ecs-" + arn.substr(arn.rfind('/') + 1) + (mode == "bridge" ? "-0" : "");
    // The rule first: without it nothing below may run, since a packet would leave the machine.
    auto route = runCommand({"ip", "netns", "exec", netns, "ip", "route", "show", "table", "all"});
    ASSERT_NE(route.out.find("unreachable 169.254.169.254"), std::string::npos) << route.describe();
    auto get = runCommand({"ip", "netns", "exec", netns, "ip", "route", "get", "169.254.169.254"});
    ASSERT_FALSE(get.ok()) << "169.254.169.254 is routable in the task: " << get.describe();
    // Then the refusal, immediately.
    auto t0 = std::chrono::steady_clock::now();
    auto connect = runCommand(
        {"ip", "netns", "exec", netns, "busybox", "timeout", "5", "nc", "169.254.169.254", "80"},
        {}, 10s);
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_NE(connect.exit_code, 0);
    EXPECT_LT(took, 2s) << "the connection was not refused at once: " << connect.describe();
    a.stop(SIGTERM);
  }
}

// Two agents on one host, as the tests and the local cluster run them: each with its own data
// directory, bridge, subnet, endpoint ports and containerd namespace — and the same dynamic
// host port range, where neither may give a task a port the other forwards. A
// sweep and a teardown by one — alive, or killed with its task still running — never touch the
// other's task.
TEST_F(RunNetworkTest, TwoAgentsWithTheirOwnDataDirectoriesAndBridgesLeaveEachOtherAlone) {
  const std::string other_ns = ns_ + "-other";
  const fs::path other_dir = data_dir_.string() + "-other";
  fs::create_directories(other_dir);
  const int other_endpoint = ecs::testing::unusedPort();
  const int other_introspection = ecs::testing::unusedPort();
  std::vector<std::string> other_env;
  for (const auto& variable : agentEnv()) {
    const std::string key = variable.substr(0, variable.find('='));
    if (key != "ECS_DATADIR" && key != "ECS_BRIDGE_NAME" && key != "ECS_BRIDGE_SUBNET" &&
        key != "ECS_CONTAINERD_NAMESPACE" && key != "ECS_TASK_ENDPOINT_PORT" &&
        key != "ECS_INTROSPECTION_PORT")
      other_env.push_back(variable);
  }
  other_env.insert(other_env.end(),
                   {"ECS_DATADIR=" + other_dir.string(), "ECS_BRIDGE_NAME=ecs-test-br6",
                    "ECS_BRIDGE_SUBNET=172.31.248.0/24", "ECS_CONTAINERD_NAMESPACE=" + other_ns,
                    "ECS_TASK_ENDPOINT_PORT=" + std::to_string(other_endpoint),
                    "ECS_INTROSPECTION_PORT=" + std::to_string(other_introspection)});
  auto network = [&](const std::vector<std::string>& env, const std::string& action) {
    auto done = runCommand({agent_, "network", action}, env);
    EXPECT_TRUE(done.ok()) << action << ": " << done.describe();
  };
  auto task_id = [](const json::object& running) {
    std::string arn(running.at("taskArn").as_string());
    return arn.substr(arn.rfind('/') + 1);
  };
  const std::string mapping = R"([{"containerPort": 8080}])";
  auto& mine = start(fmt::format(R"({{"family": "mine", "containerDefinitions": [{}]}})",
                                 webServer("web", "mine", 8080, mapping)));
  const auto mine_running = waitRunning(mine, "web");
  processes_.push_back(std::make_unique<BackgroundProcess>(
      std::vector<std::string>{
          agent_, "run",
          writeTaskDefinition(fmt::format(R"({{"family": "other", "containerDefinitions": [{}]}})",
                                          webServer("web", "other", 8080, mapping))),
          "--output", "json"},
      other_env, other_dir.string()));
  auto& other = *processes_.back();
  const auto other_running = waitRunning(other, "web");
  ASSERT_FALSE(mine_running.empty());
  ASSERT_FALSE(other_running.empty());
  const int mine_port = hostPortOf(mine_running);
  const int other_port = hostPortOf(other_running);
  EXPECT_NE(mine_port, other_port) << "the other agent took a host port this one forwards";
  const std::string other_task = task_id(other_running);
  auto both_answer = [&](const std::string& when) {
    EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", mine_port)), "mine\n") << when;
    EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", other_port)), "other\n") << when;
  };
  both_answer("both running");
  const HostNetworkState both = hostNetworkState();
  ASSERT_NE(both.netns.find("ecs-" + task_id(mine_running) + "-0"), std::string::npos);
  ASSERT_NE(both.netns.find("ecs-" + other_task + "-0"), std::string::npos);

  // Sweeps by either agent while both live change nothing.
  network(agentEnv(), "sweep");
  network(other_env, "sweep");
  EXPECT_EQ(hostNetworkState(), both);
  both_answer("after the sweeps of live agents");

  // The other agent dies; its task runs on. This agent's sweep leaves the dead agent's task to
  // that agent's data directory: nothing of it goes.
  EXPECT_EQ(other.stop(SIGKILL), 128 + SIGKILL);
  network(agentEnv(), "sweep");
  EXPECT_EQ(hostNetworkState(), both);
  both_answer("after this agent's sweep with the other agent dead");

  // The other data directory's sweep and teardown take all of the other agent's, and nothing of
  // this agent's: its namespace, veth, rules and bridge stay as they were.
  network(other_env, "sweep");
  network(other_env, "teardown");
  const HostNetworkState mine_only = hostNetworkState();
  EXPECT_EQ(mine_only.netns.find(other_task), std::string::npos) << mine_only.netns;
  EXPECT_EQ(mine_only.links.find("ecs-test-br6"), std::string::npos) << mine_only.links;
  EXPECT_EQ(mine_only.iptables.find(other_task), std::string::npos);
  EXPECT_EQ(mine_only.iptables.find("ecs-test-br6"), std::string::npos);
  auto lines_with = [](const std::string& text, const std::string& word) {
    std::string kept;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.find(word) != std::string::npos) kept += line + "\n";
    }
    return kept;
  };
  const std::string mine_task = task_id(mine_running);
  EXPECT_EQ(lines_with(mine_only.netns, mine_task), lines_with(both.netns, mine_task));
  EXPECT_EQ(lines_with(mine_only.iptables, mine_task), lines_with(both.iptables, mine_task));
  EXPECT_EQ(lines_with(mine_only.iptables, kBridge), lines_with(both.iptables, kBridge));
  EXPECT_NE(mine_only.links.find(kBridge), std::string::npos);
  EXPECT_EQ(httpGet(fmt::format("http://127.0.0.1:{}/", mine_port)), "mine\n");

  // The dead agent's container, its cgroups and its images go by hand: no agent is left to.
  const std::string address = harnessEnv().containerdAddress();
  auto ctr_other = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"ctr", "-a", address, "-n", other_ns});
    return runCommand(args, {}, 60s);
  };
  std::istringstream ids(ctr_other({"containers", "ls", "-q"}).out);
  for (std::string id; std::getline(ids, id);) {
    ctr_other({"tasks", "kill", "-s", "SIGKILL", id});
    EXPECT_TRUE(waitFor(
        [&] {
          return ctr_other({"tasks", "rm", id}).ok() ||
                 !ctr_other({"tasks", "ls", "-q"}).out.contains(id);
        },
        30s, "the killed container's task to go"));
    ctr_other({"containers", "rm", id});
  }
  std::istringstream leases(ctr_other({"leases", "ls", "-q"}).out);
  for (std::string lease; std::getline(leases, lease);) ctr_other({"leases", "rm", lease});
  runCommand({"find", "/sys/fs/cgroup", "-depth", "-type", "d", "-path",
              "*/ecs/" + other_task + "*", "-exec", "rmdir", "{}", ";"});
  ecs::testing::removeAllImages(other_ns);
  ecs::testing::expectNoLeaks(other_ns);
  std::error_code ec;
  fs::remove_all(other_dir, ec);
  EXPECT_NE(mine.stop(SIGTERM), -1);
  // TearDown: this agent's teardown, then the host must be as it was before either agent.
}

TEST_F(RunNetworkTest, ChurnOfFiftyTasksLeavesTheHostAsItWas) {
  const std::string taskdef = R"({"family": "churn", "containerDefinitions": [{"name": "c",
      "image": "${IMAGE}", "memory": 16, "stopTimeout": 2, "command": ["true"],
      "portMappings": [{"containerPort": 80}, {"containerPort": 53, "protocol": "udp"}]}]})";
  // One task first: the bridge and the agent's base chains are host setup, made once.
  ASSERT_EQ(runToEnd(taskdef).first, 0);
  auto before = hostNetworkState();
  auto ipam_dir = data_dir_ / "netns";
  auto read_dir = [&] {
    std::string all;
    if (!fs::exists(ipam_dir)) return all;
    for (const auto& entry : fs::directory_iterator(ipam_dir)) {
      std::ifstream in(entry.path());
      all += entry.path().filename().string() + ":" +
             std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    return all;
  };
  auto store_before = read_dir();
  for (int round = 0; round < 5; ++round) {
    std::vector<BackgroundProcess*> batch;
    for (int i = 0; i < 10; ++i) batch.push_back(&start(taskdef));
    for (auto* p : batch) EXPECT_EQ(p->wait(180s), 0) << p->out() << p->err();
    processes_.clear();
  }
  auto after = hostNetworkState();
  EXPECT_EQ(before.netns, after.netns);
  EXPECT_EQ(before.links, after.links);
  EXPECT_EQ(before.iptables, after.iptables);
  EXPECT_EQ(store_before, read_dir()) << "the IPAM / host port store changed";
}

}  // namespace
