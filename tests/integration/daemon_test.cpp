// The real `ecs-node-agent daemon` against the stand-in control plane (ECS API, ACS, TCS on
// loopback, every signature checked with botocore) and the harness's containerd and registry:
// registration, tasks over ACS, state changes, per-task role credentials, redelivery,
// reconnects, heartbeats, manifests and unreadable tasks.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>

#include <boost/json.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/common/text.h"
#include "tests/support/agent_process.h"
#include "tests/support/fake_control_plane.h"
#include "tests/support/harness_env.h"
#include "tests/support/tunnel_proxy.h"
#include "tests/support/wait_for.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::BackgroundProcess;
using ecs::testing::FakeControlPlane;
using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using ecs::testing::waitFor;
using namespace std::chrono_literals;

constexpr const char* kCluster = "daemon-test";
constexpr const char* kBridge = "ecs-test-br3";
constexpr const char* kSubnet = "172.31.253.0/24";

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

json::object container(const std::string& name, const std::string& script) {
  return json::object{{"name", name},      {"image", harnessEnv().registry() + "/test/busybox:oci"},
                      {"essential", true}, {"memory", 32},
                      {"stopTimeout", 2},  {"command", json::array{"sh", "-c", script}}};
}

json::object credentials(const std::string& id, const std::string& role, const std::string& key,
                         const std::string& type) {
  return json::object{{"credentialsId", id},
                      {"roleArn", "arn:aws:iam::123456789012:role/" + role},
                      {"accessKeyId", key},
                      {"secretAccessKey", key + "-secret"},
                      {"sessionToken", key + "-token"},
                      {"expiration", "2030-03-25T06:17:19.318+0000"},
                      {"roleType", type}};
}

std::string hexId(int n) {
  return fmt::format("{:032x}", 0xda3000 + n);
}

std::string taskArn(int n) {
  return fmt::format("arn:aws:ecs:us-west-2:123456789012:task/{}/{}", kCluster, hexId(n));
}

json::object task(int n, json::array containers, const std::string& network_mode = "bridge",
                  const std::string& desired = "RUNNING") {
  return json::object{{"arn", taskArn(n)},
                      {"family", "daemon-" + std::to_string(n)},
                      {"version", "1"},
                      {"desiredStatus", desired},
                      {"networkMode", network_mode},
                      {"containers", std::move(containers)}};
}

json::object payload(json::array tasks) {
  return json::object{{"type", "PayloadMessage"}, {"message", {{"tasks", std::move(tasks)}}}};
}

int logicalCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof(set), &set);
  return CPU_COUNT(&set);
}

int64_t memTotalMib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib / 1024;
  }
  return 0;
}

const json::object* findResource(const json::object& body, const std::string& name) {
  for (const auto& r : body.at("totalResources").as_array()) {
    if (r.at("name") == name.c_str()) return &r.as_object();
  }
  return nullptr;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace("daemon");
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
  }

  void TearDown() override {
    if (daemon_) {
      int status = daemon_->stop(SIGTERM, 120s);
      EXPECT_EQ(status, 0) << daemon_->err();
      daemon_.reset();
    }
    auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
    EXPECT_TRUE(teardown.ok()) << teardown.describe();
    EXPECT_TRUE(plane_.signatureFailures().empty())
        << json::serialize(json::value_from(plane_.signatureFailures()));
    EXPECT_TRUE(plane_.violations().empty())
        << json::serialize(json::value_from(plane_.violations()));
    ecs::testing::removeAllImages(ns_);
    ecs::testing::expectNoLeaks(ns_);
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  std::vector<std::string> agentEnv() {
    auto env = plane_.credentialsEnv();
    std::vector<std::string> more = {
        "ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
        "ECS_CONTAINERD_NAMESPACE=" + ns_,
        "ECS_LOGLEVEL=info",
        "ECS_DATADIR=" + data_dir_.string(),
        std::string("ECS_BRIDGE_NAME=") + kBridge,
        std::string("ECS_BRIDGE_SUBNET=") + kSubnet,
        "ECS_DYNAMIC_HOST_PORT_RANGE=62000-62999",
        "ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_),
        "ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_),
        "ECS_BACKEND_HOST=" + plane_.endpointUrl(),
        std::string("ECS_CLUSTER=") + kCluster,
        "ECS_RESERVED_MEMORY=64",
        "ECS_STOP_TASKS_ON_EXIT=true",
        R"(ECS_INSTANCE_ATTRIBUTES={"stack": "blue"})",
        R"(ECS_CONTAINER_INSTANCE_TAGS={"team": "node"})"};
    env.insert(env.end(), more.begin(), more.end());
    // A test's own value of a variable replaces the fixture's.
    for (const auto& extra : extra_env_) {
      const std::string key = extra.substr(0, extra.find('=') + 1);
      std::erase_if(env, [&](const std::string& entry) { return entry.starts_with(key); });
    }
    env.insert(env.end(), extra_env_.begin(), extra_env_.end());
    return env;
  }

  BackgroundProcess& startDaemon() {
    daemon_ = std::make_unique<BackgroundProcess>(std::vector<std::string>{agent_, "daemon"},
                                                  agentEnv(), data_dir_.string());
    return *daemon_;
  }

  // Starts the daemon and waits for its ACS session.
  void startAndConnect() {
    auto after = plane_.lastSeq();
    startDaemon();
    ASSERT_TRUE(plane_.waitForAcsConnection(60s, after)) << daemon_->err();
  }

  // The first SubmitTaskStateChange of `arn` with `status`.
  std::optional<json::object> waitForState(const std::string& arn, const std::string& status,
                                           std::chrono::milliseconds timeout = 60s) {
    auto call =
        plane_.waitForCall("SubmitTaskStateChange", {{"task", arn}, {"status", status}}, timeout);
    if (!call) return std::nullopt;
    return call->at("body").as_object();
  }

  size_t stateCalls(const std::string& arn, const std::string& status) {
    size_t n = 0;
    for (const auto& call : plane_.calls("SubmitTaskStateChange")) {
      const auto& body = call.at("body").as_object();
      if (body.at("task") == arn.c_str() && body.at("status") == status.c_str()) ++n;
    }
    return n;
  }

  // Waits until the daemon has recorded that the cluster accepted `status` for task `arn` (read
  // from its state store): after that, a kill cannot make it send the change again.
  bool waitForRecordedSent(const std::string& arn, const std::string& status) {
    const std::string script =
        "import sqlite3,sys\n"
        "db=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True,timeout=5)\n"
        "row=db.execute('select sent_status from tasks where arn=?',(sys.argv[2],)).fetchone()\n"
        "print(row[0] if row else '')\n";
    return waitFor(
        [&] {
          auto read = runCommand(
              {"/usr/bin/python3", "-c", script, (data_dir_ / "state.db").string(), arn});
          return read.out == status + "\n";
        },
        30s, "the accepted status to be recorded");
  }

  // A round trip on the ACS session: everything the agent sent before it has arrived.
  void acsBarrier() {
    auto sent = plane_.pushAcs({{"type", "HeartbeatMessage"}, {"message", json::object{}}});
    ASSERT_TRUE(
        plane_.waitForAcsFrame("HeartbeatAckRequest", {{"messageId", sent.at("messageId")}}, 10s));
  }

  fs::path stdoutOf(int n, const std::string& name) {
    return data_dir_ / "tasks" / hexId(n) / name / "stdout.log";
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
  FakeControlPlane plane_;
  std::unique_ptr<BackgroundProcess> daemon_;
  std::vector<std::string> extra_env_;
};

TEST_F(DaemonTest, RegistersTheHostAndAgainWithTheSavedArn) {
  startDaemon();
  auto first = plane_.waitForCall("RegisterContainerInstance", {}, 60s);
  ASSERT_TRUE(first) << daemon_->err();
  const auto& body = first->at("body").as_object();
  EXPECT_EQ(body.at("cluster"), kCluster);
  EXPECT_FALSE(body.contains("containerInstanceArn"));
  EXPECT_FALSE(body.at("clientToken").as_string().empty());
  auto* cpu = findResource(body, "CPU");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->at("integerValue").to_number<int64_t>(), logicalCpus() * 1024);
  auto* memory = findResource(body, "MEMORY");
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->at("integerValue").to_number<int64_t>(), memTotalMib() - 64);
  auto* ports = findResource(body, "PORTS");
  ASSERT_NE(ports, nullptr);
  std::set<std::string> reserved;
  for (const auto& p : ports->at("stringSetValue").as_array())
    reserved.insert(std::string(p.as_string()));
  EXPECT_EQ(reserved, (std::set<std::string>{"22", "2375", "2376", "51678", "51679"}));
  ASSERT_NE(findResource(body, "PORTS_UDP"), nullptr);

  std::map<std::string, std::string> attributes;
  for (const auto& a : body.at("attributes").as_array()) {
    const auto& o = a.as_object();
    attributes[std::string(o.at("name").as_string())] =
        o.contains("value") ? std::string(o.at("value").as_string()) : "";
  }
  EXPECT_EQ(attributes["ecs.os-type"], "linux");
  EXPECT_EQ(attributes["stack"], "blue");
  EXPECT_TRUE(attributes.contains("com.amazonaws.ecs.capability.task-iam-role"));
  EXPECT_TRUE(attributes.contains("ecs.capability.container-health-check"));
  EXPECT_TRUE(attributes.contains("ecs.cpu-architecture"));
  // Capabilities this agent does not have are not claimed.
  EXPECT_FALSE(attributes.contains("ecs.capability.task-eni"));
  EXPECT_FALSE(attributes.contains("ecs.capability.secrets.ssm.environment-variables"));
  EXPECT_FALSE(attributes.contains("com.amazonaws.ecs.capability.ecr-auth"));
  ASSERT_EQ(body.at("tags").as_array().size(), 1u);
  EXPECT_EQ(body.at("tags").as_array()[0].at("key"), "team");
  std::string arn(
      first->at("response").at("containerInstance").at("containerInstanceArn").as_string());

  // The introspection endpoint and `status` show the registration.
  ASSERT_TRUE(plane_.waitForAcsConnection(60s));
  auto status = runCommand({agent_, "status", "--json"}, agentEnv());
  ASSERT_TRUE(status.ok()) << status.describe();
  auto shown = json::parse(status.out).as_object();
  EXPECT_EQ(shown.at("metadata").at("ContainerInstanceArn"), arn.c_str());
  EXPECT_EQ(shown.at("metadata").at("Cluster"), kCluster);
  auto text = runCommand({agent_, "status"}, agentEnv());
  EXPECT_NE(text.out.find(arn), std::string::npos) << text.describe();

  // A restart registers the same instance again.
  ASSERT_EQ(daemon_->stop(SIGTERM, 60s), 0) << daemon_->err();
  auto after = plane_.lastSeq();
  startDaemon();
  auto second = plane_.waitForCall("RegisterContainerInstance", {}, 60s, after);
  ASSERT_TRUE(second) << daemon_->err();
  EXPECT_EQ(second->at("body").at("containerInstanceArn"), arn.c_str());
  for (const auto& a : second->at("body").at("attributes").as_array()) {
    EXPECT_NE(a.at("name"), "stack") << "custom attributes go with the first registration only";
  }
  EXPECT_NE(second->at("body").at("clientToken"), body.at("clientToken"));
}

TEST_F(DaemonTest, MissingRegionIsTerminal) {
  auto env = agentEnv();
  std::erase_if(env, [](const std::string& e) {
    return e.starts_with("AWS_REGION=") || e.starts_with("AWS_DEFAULT_REGION=");
  });
  auto run = runCommand({agent_, "daemon"}, env, 30s);
  EXPECT_EQ(run.exit_code, 5) << run.describe();
  EXPECT_NE(run.err.find("AWS_REGION"), std::string::npos) << run.describe();
}

TEST_F(DaemonTest, RefusedRegistrationIsTerminal) {
  plane_.failNext("RegisterContainerInstance", -1, 400, "ClientException", "Cluster not found.");
  auto run = runCommand({agent_, "daemon"}, agentEnv(), 60s);
  EXPECT_EQ(run.exit_code, 5) << run.describe();
  EXPECT_NE(run.err.find("Cluster not found"), std::string::npos) << run.describe();
  plane_.clearFaults();
}

TEST_F(DaemonTest, AnAttributeTheClusterDidNotRecordIsTerminal) {
  plane_.settings({{"rci_drop_attributes", json::array{"ecs.capability.efs"}}});
  auto run = runCommand({agent_, "daemon"}, agentEnv(), 60s);
  EXPECT_EQ(run.exit_code, 5) << run.describe();
  EXPECT_NE(run.err.find("ecs.capability.efs"), std::string::npos) << run.describe();
}

TEST_F(DaemonTest, BridgeTaskReportsItsDynamicPortAndStopsWithItsExitCode) {
  startAndConnect();
  auto web = container("web",
                       "mkdir -p /www && echo from-daemon > /www/index.html && "
                       "exec httpd -f -p 80 -h /www");
  web["portMappings"] = json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
  auto sent = plane_.pushAcs(payload({task(1, {web})}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));

  auto running = waitForState(taskArn(1), "RUNNING");
  ASSERT_TRUE(running) << daemon_->err();
  EXPECT_EQ(running->at("cluster"), kCluster);
  EXPECT_TRUE(running->contains("pullStartedAt"));
  EXPECT_TRUE(running->contains("pullStoppedAt"));
  const auto& containers = running->at("containers").as_array();
  ASSERT_EQ(containers.size(), 1u);
  const auto& c = containers[0].as_object();
  EXPECT_EQ(c.at("containerName"), "web");
  EXPECT_EQ(c.at("status"), "RUNNING");
  EXPECT_FALSE(c.at("runtimeId").as_string().empty());
  EXPECT_TRUE(c.at("imageDigest").as_string().starts_with("sha256:"));
  const auto& bindings = c.at("networkBindings").as_array();
  ASSERT_EQ(bindings.size(), 1u);
  int port = static_cast<int>(bindings[0].at("hostPort").to_number<int64_t>());
  EXPECT_GE(port, 62000);
  EXPECT_LE(port, 62999);
  EXPECT_EQ(bindings[0].at("containerPort").to_number<int64_t>(), 80);
  // RUNNING means the container started; its shell still writes the page before httpd listens.
  ecs::testing::RunResult get;
  EXPECT_TRUE(waitFor(
      [&] {
        get = runCommand(
            {"curl", "-s", "--max-time", "5", fmt::format("http://127.0.0.1:{}/", port)});
        return get.exit_code != 7;  // 7: nothing listens yet
      },
      10s, "httpd to listen"));
  EXPECT_EQ(get.out, "from-daemon\n") << get.describe();

  auto stop = task(1, {web});
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop}));
  auto stopped = waitForState(taskArn(1), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  EXPECT_TRUE(stopped->contains("executionStoppedAt"));
  const auto& sc = stopped->at("containers").as_array();
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].at("status"), "STOPPED");
  EXPECT_TRUE(sc[0].as_object().contains("exitCode")) << json::serialize(sc[0]);
  acsBarrier();
  EXPECT_EQ(stateCalls(taskArn(1), "RUNNING"), 1u);
  EXPECT_EQ(stateCalls(taskArn(1), "STOPPED"), 1u);
}

TEST_F(DaemonTest, EachTaskReadsOnlyItsOwnRoleCredentials) {
  startAndConnect();
  // Each container prints what 169.254.170.2 gives it for its own id, the other task's id and
  // its own execution role's id, every half second.
  auto reader = [](const std::string& other_id, const std::string& exec_id) {
    return fmt::format(
        "while true; do "
        "echo own=$(busybox timeout 3 wget -qO- "
        "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI 2>&1); "
        "echo other=$(busybox timeout 3 wget -qO- http://169.254.170.2/v2/credentials/{} 2>&1); "
        "echo exec=$(busybox timeout 3 wget -qO- http://169.254.170.2/v2/credentials/{} 2>&1); "
        "sleep 0.5; done",
        other_id, exec_id);
  };
  auto a = task(2, {container("app", reader("cred-b", "exec-a"))});
  a["roleCredentials"] = credentials("cred-a", "role-a", "ASIATASKA", "TaskApplication");
  a["executionRoleCredentials"] = credentials("exec-a", "exec-a", "ASIAEXECA", "TaskExecution");
  auto b = task(3, {container("app", reader("cred-a", "exec-a"))});
  b["roleCredentials"] = credentials("cred-b", "role-b", "ASIATASKB", "TaskApplication");
  auto sent = plane_.pushAcs(payload({a, b}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  // Each credentials set is acknowledged.
  for (const char* id : {"cred-a", "exec-a", "cred-b"}) {
    EXPECT_TRUE(
        plane_.waitForAcsFrame("IAMRoleCredentialsAckRequest", {{"credentialsId", id}}, 10s))
        << id;
  }
  ASSERT_TRUE(waitForState(taskArn(2), "RUNNING"));
  ASSERT_TRUE(waitForState(taskArn(3), "RUNNING"));

  auto lineOf = [](const std::string& out, const std::string& key) {
    auto at = out.rfind("\n" + key + "=");
    if (at == std::string::npos) return std::string();
    auto end = out.find('\n', at + 1);
    return out.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
  };
  std::string out_a, out_b;
  ASSERT_TRUE(waitFor(
      [&] {
        out_a = "\n" + readFile(stdoutOf(2, "app"));
        out_b = "\n" + readFile(stdoutOf(3, "app"));
        return lineOf(out_a, "exec").size() > 5 && lineOf(out_b, "exec").size() > 5;
      },
      60s, "both containers to print"));
  EXPECT_NE(lineOf(out_a, "own").find("ASIATASKA"), std::string::npos) << out_a;
  EXPECT_NE(lineOf(out_b, "own").find("ASIATASKB"), std::string::npos) << out_b;
  for (const auto& out : {out_a, out_b}) {
    // Another task's credentials, an execution role's and the host's are never served.
    EXPECT_EQ(lineOf(out, "other").find("ASIATASK"), std::string::npos) << out;
    EXPECT_EQ(out.find("ASIAEXECA"), std::string::npos) << out;
    EXPECT_EQ(out.find(plane_.options().access_key), std::string::npos) << out;
  }

  // A refresh is served at once.
  auto refresh = plane_.pushAcs(
      {{"type", "IAMRoleCredentialsMessage"},
       {"message",
        {{"taskArn", taskArn(2)},
         {"roleType", "TaskApplication"},
         {"roleCredentials", credentials("cred-a", "role-a", "ASIAFRESHA", "TaskApplication")}}}});
  ASSERT_TRUE(plane_.waitForAcsFrame("IAMRoleCredentialsAckRequest",
                                     {{"messageId", refresh.at("messageId")}}, 10s));
  auto direct =
      runCommand({"curl", "-s", "--max-time", "5",
                  fmt::format("http://127.0.0.1:{}/v2/credentials/cred-a", endpoint_port_)});
  EXPECT_NE(direct.out.find("ASIAFRESHA"), std::string::npos) << direct.describe();
  ASSERT_TRUE(waitFor(
      [&] {
        return lineOf("\n" + readFile(stdoutOf(2, "app")), "own").find("ASIAFRESHA") !=
               std::string::npos;
      },
      30s, "the container to read the refreshed credentials"));

  // Stopped: the credentials are revoked.
  auto stop_a = a;
  stop_a["desiredStatus"] = "STOPPED";
  auto stop_b = b;
  stop_b["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop_a, stop_b}));
  ASSERT_TRUE(waitForState(taskArn(2), "STOPPED"));
  ASSERT_TRUE(waitForState(taskArn(3), "STOPPED"));
  auto revoked =
      runCommand({"curl", "-s", "-w", "%{http_code}", "--max-time", "5",
                  fmt::format("http://127.0.0.1:{}/v2/credentials/cred-a", endpoint_port_)});
  EXPECT_TRUE(revoked.out.ends_with("400")) << revoked.describe();
}

TEST_F(DaemonTest, RedeliveryReconnectHeartbeatAndManifest) {
  startAndConnect();
  auto sleeper = task(4, {container("app", "exec sleep 300")}, "none");
  auto sent = plane_.pushAcs(payload({sleeper}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  ASSERT_TRUE(waitForState(taskArn(4), "RUNNING"));

  // The session drops; the agent reconnects (not asking for credentials again) and the same
  // payload delivered again starts nothing twice.
  auto before = plane_.lastSeq();
  ASSERT_GE(plane_.dropAcs(1001, "going away"), 1);
  auto reconnect = plane_.waitForAcsConnection(30s, before);
  ASSERT_TRUE(reconnect);
  EXPECT_EQ(reconnect->at("query").at("sendCredentials"), "false") << json::serialize(*reconnect);
  auto again = plane_.pushAcs(payload({sleeper}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", again.at("messageId")}}, 30s));
  acsBarrier();
  EXPECT_EQ(stateCalls(taskArn(4), "RUNNING"), 1u);
  auto containers = runCommand(
      {"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_, "containers", "ls", "-q"});
  EXPECT_EQ(std::count(containers.out.begin(), containers.out.end(), '\n'), 1)
      << containers.describe();

  // A manifest that does not list the task: the agent asks, the cluster confirms, it stops.
  auto manifest =
      plane_.pushAcs({{"type", "TaskManifestMessage"}, {"message", {{"tasks", json::array{}}}}});
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", manifest.at("messageId")}}, 10s));
  auto verification = plane_.waitForAcsFrame("TaskStopVerificationMessage",
                                             {{"messageId", manifest.at("messageId")}}, 10s);
  ASSERT_TRUE(verification);
  const auto& candidates = verification->at("message").at("stopCandidates").as_array();
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_EQ(candidates[0].at("taskArn"), taskArn(4).c_str());
  plane_.pushAcs(
      {{"type", "TaskStopVerificationAck"},
       {"message",
        {{"messageId", manifest.at("messageId")},
         {"generatedAt", 1},
         {"stopTasks",
          json::array{{{"taskArn", taskArn(4)},
                       {"taskClusterArn", "arn:aws:ecs:us-west-2:123456789012:cluster/daemon-test"},
                       {"desiredStatus", "STOPPED"}}}}}}});
  auto stopped = waitForState(taskArn(4), "STOPPED");
  ASSERT_TRUE(stopped);
  // An older manifest is ignored: no acknowledgement.
  auto stale = plane_.pushAcs(
      {{"type", "TaskManifestMessage"}, {"message", {{"tasks", json::array{}}, {"timeline", 0}}}});
  acsBarrier();
  EXPECT_TRUE(plane_.acsFrames("AckRequest").size() >= 2);
  for (const auto& frame : plane_.acsFrames("AckRequest")) {
    EXPECT_NE(frame.at("message").at("messageId"), stale.at("messageId"));
  }
}

// A host behind a proxy, configured as the ECS guide has it: HTTP_PROXY alone (no NO_PROXY, so the
// metadata and credentials addresses go direct). The ECS API goes through the proxy in absolute
// form, ACS and TCS through CONNECT tunnels, and a task's start is reported through it.
TEST_F(DaemonTest, BehindAnHttpProxyTheApiAndBothSessionsGoThroughIt) {
  const std::string& direct = plane_.endpointUrl();
  const std::string port = direct.substr(direct.rfind(':') + 1);
  const std::string host = "ecs.proxy-test.invalid";  // only the proxy knows where it is
  const std::string endpoint = "http://" + host + ":" + port;
  ecs::testing::TunnelProxy proxy({{host, "127.0.0.1"}});
  plane_.settings({{"acs_endpoint", endpoint}, {"tcs_endpoint", endpoint + "/tcs"}});
  extra_env_ = {"HTTP_PROXY=" + proxy.url(), "ECS_BACKEND_HOST=" + endpoint};
  startAndConnect();
  ASSERT_TRUE(plane_.waitForTcsConnection(30s)) << daemon_->err();
  auto sleeper = task(5, {container("app", "exec sleep 300")}, "none");
  auto sent = plane_.pushAcs(payload({sleeper}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  ASSERT_TRUE(waitForState(taskArn(5), "RUNNING")) << daemon_->err();

  const auto seen = proxy.requests();
  std::string all;
  for (const auto& line : seen) all += line + "\n";
  const auto count = [&](const std::string& line) {
    return std::count(seen.begin(), seen.end(), line);
  };
  // RegisterContainerInstance, DiscoverPollEndpoint and SubmitTaskStateChange at least.
  EXPECT_GE(count("POST " + endpoint + "/"), 3) << all;
  EXPECT_GE(count("CONNECT " + host + ":" + port), 2) << all;  // ACS and TCS
  EXPECT_EQ(count("POST " + endpoint + "/") + count("CONNECT " + host + ":" + port),
            static_cast<std::ptrdiff_t>(seen.size()))
      << "everything through the proxy is for the cluster's endpoint:\n"
      << all;

  // Stopping reports the task's end through the proxy too, while it is still there.
  ASSERT_EQ(daemon_->stop(SIGTERM, 60s), 0) << daemon_->err();
  daemon_.reset();
  EXPECT_TRUE(waitForState(taskArn(5), "STOPPED", 1s));
}

TEST_F(DaemonTest, UnreadableTaskIsReportedStoppedAndThePayloadNotAcknowledged) {
  startAndConnect();
  auto good = task(5, {container("app", "exec sleep 300")}, "none");
  auto bad = task(6, {container("app", "true")}, "none");
  bad["containers"].as_array()[0].as_object()["memory"] = "lots";
  auto sent = plane_.pushAcs(payload({good, bad}));
  auto stopped = waitForState(taskArn(6), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  EXPECT_TRUE(stopped->at("reason").as_string().starts_with("UnrecognizedTaskError: "))
      << json::serialize(*stopped);
  EXPECT_NE(stopped->at("reason").as_string().find("memory"), std::string::npos);
  ASSERT_TRUE(waitForState(taskArn(5), "RUNNING"));
  acsBarrier();
  for (const auto& frame : plane_.acsFrames("AckRequest")) {
    EXPECT_NE(frame.at("message").at("messageId"), sent.at("messageId"));
  }
  // Sent again (as the cluster does without an ack), nothing is reported twice.
  plane_.pushAcs(payload({good, bad}));
  acsBarrier();
  EXPECT_EQ(stateCalls(taskArn(6), "STOPPED"), 1u);
  EXPECT_EQ(stateCalls(taskArn(5), "RUNNING"), 1u);
}

TEST_F(DaemonTest, StateChangesSurviveApiErrors) {
  startAndConnect();
  plane_.failNext("SubmitTaskStateChange", 3, 500, "ServerException", "injected");
  auto sent = plane_.pushAcs(payload({task(7, {container("app", "exec sleep 300")}, "none")}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  // Three refusals, then the same change is accepted.
  auto accepted = plane_.waitForEvent({{"kind", "api"},
                                       {"op", "SubmitTaskStateChange"},
                                       {"status", 200},
                                       {"match", {{"task", taskArn(7)}, {"status", "RUNNING"}}}},
                                      60s);
  ASSERT_TRUE(accepted) << daemon_->err();
  EXPECT_EQ(stateCalls(taskArn(7), "RUNNING"), 4u);
  // SIGTERM stops the task and reports it before the agent exits.
  ASSERT_EQ(daemon_->stop(SIGTERM, 120s), 0) << daemon_->err();
  daemon_.reset();
  EXPECT_TRUE(waitForState(taskArn(7), "STOPPED", 5s));
}

TEST_F(DaemonTest, TelemetryReportsTheCpuAndMemoryAContainerReallyUses) {
  extra_env_ = {"ECS_METRICS_PUBLISH_INTERVAL=2s"};
  startAndConnect();
  ASSERT_TRUE(plane_.waitForTcsConnection(30s));
  // One shell holds ~48 MiB in a variable and spins one core.
  auto burner =
      container("burn", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); while :; do :; done");
  burner["memory"] = 512;
  auto sent = plane_.pushAcs(payload({task(8, {burner}, "none")}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  ASSERT_TRUE(waitForState(taskArn(8), "RUNNING"));

  // Publishes until one carries the task with a few seconds of samples taken after the variable
  // was filled (the first ones may catch it growing).
  std::int64_t after = plane_.lastSeq();
  std::optional<json::object> metric;
  int seen = 0;
  auto deadline = std::chrono::steady_clock::now() + 90s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto frame = plane_.waitForTcsFrame("PublishMetricsRequest", {}, 30s, after);
    ASSERT_TRUE(frame) << daemon_->err();
    after = frame->at("seq").to_number<std::int64_t>();
    EXPECT_TRUE(frame->at("signature_ok").as_bool()) << json::serialize(*frame);
    EXPECT_TRUE(frame->at("problems").as_array().empty()) << json::serialize(*frame);
    const auto& message = frame->at("message").as_object();
    if (!message.contains("taskMetrics")) continue;
    for (const auto& t : message.at("taskMetrics").as_array()) {
      if (t.at("taskArn") != taskArn(8).c_str()) continue;
      for (const auto& c : t.at("containerMetrics").as_array()) {
        if (c.at("containerName") == "burn" && ++seen >= 3) metric = c.as_object();
      }
    }
    if (metric) break;
  }
  ASSERT_TRUE(metric) << "no metrics for the task";
  const auto& cpu = metric->at("cpuStatsSet").as_object();
  const auto& memory = metric->at("memoryStatsSet").as_object();
  double samples = cpu.at("sampleCount").to_number<double>();
  ASSERT_GE(samples, 1);
  double cpu_avg = cpu.at("sum").to_number<double>() / samples;
  // One busy core of this host's cores, in percent of the whole host.
  double one_core = 100.0 / logicalCpus();
  EXPECT_GT(cpu_avg, one_core * 0.5) << json::serialize(*metric);
  EXPECT_LT(cpu_avg, one_core * 1.15) << json::serialize(*metric);
  double memory_max = memory.at("max").to_number<double>();
  EXPECT_GE(memory_max, 45) << json::serialize(*metric);
  EXPECT_LE(memory_max, 150) << json::serialize(*metric);
  double memory_min = memory.at("min").to_number<double>();
  EXPECT_GE(memory_min, 40) << json::serialize(*metric);

  auto stop = task(8, {burner}, "none");
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop}));
  ASSERT_TRUE(waitForState(taskArn(8), "STOPPED"));
}

// --- crash safety -----------------------------------------------------------------------------

TEST_F(DaemonTest, AKilledDaemonTakesItsRunningTaskOverAtTheNextStart) {
  startAndConnect();
  auto web = container("web",
                       "mkdir -p /www && echo still-here > /www/index.html && "
                       "exec httpd -f -p 80 -h /www");
  web["portMappings"] = json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
  auto reader = container("reader",
                          "while true; do echo own=$(busybox timeout 3 wget -qO- "
                          "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI 2>&1); "
                          "echo meta=$(busybox timeout 3 wget -qO- "
                          "$ECS_CONTAINER_METADATA_URI_V4 2>&1); sleep 0.5; done");
  reader["essential"] = false;
  // The reader's StartedAt in the latest of its own metadata lines from `from` on (seconds since
  // the epoch), or -1.
  auto started_at = [&](size_t from) -> double {
    const std::string out = readFile(stdoutOf(20, "reader"));
    const auto key = out.rfind("\"StartedAt\":\"");
    if (key == std::string::npos || key < from) return -1;
    std::tm tm{};
    double seconds = 0;
    if (std::sscanf(out.c_str() + key + 13, "%d-%d-%dT%d:%d:%lf", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &seconds) != 6)
      return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<double>(::timegm(&tm)) + seconds;
  };
  auto t = task(20, {web, reader});
  t["roleCredentials"] = credentials("cred-r", "role-r", "ASIAKEPT", "TaskApplication");
  auto sent = plane_.pushAcs(payload({t}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  auto running = waitForState(taskArn(20), "RUNNING");
  ASSERT_TRUE(running) << daemon_->err();
  std::map<std::string, std::string> runtime_ids;
  int port = 0;
  for (const auto& c : running->at("containers").as_array()) {
    runtime_ids[std::string(c.at("containerName").as_string())] =
        std::string(c.at("runtimeId").as_string());
    if (c.at("containerName") == "web") {
      port = static_cast<int>(c.at("networkBindings").at(0).at("hostPort").to_number<int64_t>());
    }
  }
  ASSERT_GT(port, 0);
  auto page = [&] {
    return runCommand({"curl", "-s", "--max-time", "5", fmt::format("http://127.0.0.1:{}/", port)});
  };
  ASSERT_TRUE(waitFor([&] { return page().out == "still-here\n"; }, 10s, "httpd"));
  ASSERT_TRUE(waitForRecordedSent(taskArn(20), "RUNNING"));
  ASSERT_TRUE(waitFor([&] { return started_at(0) > 0; }, 20s, "the reader's metadata"));
  const double first_started = started_at(0);
  // Long enough that a start time taken at the adoption would stand out.
  std::this_thread::sleep_for(3s);

  // kill -9: nothing is stopped, nothing is released.
  ASSERT_EQ(daemon_->stop(SIGKILL, 30s), 128 + SIGKILL);
  daemon_.reset();
  EXPECT_EQ(page().out, "still-here\n");

  startAndConnect();
  // The same containers, the same port, the same credentials id, served again.
  EXPECT_TRUE(waitFor(
      [&] {
        auto tasks = runCommand({"curl", "-s", "--max-time", "5",
                                 fmt::format("http://127.0.0.1:{}/v1/tasks", introspection_port_)});
        return tasks.out.find(hexId(20)) != std::string::npos &&
               tasks.out.find("\"KnownStatus\":\"RUNNING\"") != std::string::npos;
      },
      30s, "the task in introspection"))
      << daemon_->err();
  EXPECT_NE(daemon_->err().find("took over 1 task(s)"), std::string::npos) << daemon_->err();
  EXPECT_EQ(page().out, "still-here\n");
  auto direct =
      runCommand({"curl", "-s", "--max-time", "5",
                  fmt::format("http://127.0.0.1:{}/v2/credentials/cred-r", endpoint_port_)});
  EXPECT_NE(direct.out.find("ASIAKEPT"), std::string::npos) << direct.describe();
  // The container reads them through the URI it was started with.
  const auto before = readFile(stdoutOf(20, "reader")).size();
  EXPECT_TRUE(waitFor(
      [&] {
        auto out = readFile(stdoutOf(20, "reader"));
        return out.size() > before && out.find("ASIAKEPT", before) != std::string::npos;
      },
      30s, "the container to read its credentials after the restart"));
  // Its metadata still says when it really started, not when it was taken over (to the second:
  // the start of an adopted process is read from /proc).
  ASSERT_TRUE(waitFor([&] { return started_at(before) > 0; }, 20s, "metadata after the restart"));
  EXPECT_NEAR(started_at(before), first_started, 1.5);
  auto containers = runCommand(
      {"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_, "containers", "ls", "-q"});
  EXPECT_EQ(std::count(containers.out.begin(), containers.out.end(), '\n'), 2)
      << containers.describe();
  for (const auto& [name, id] : runtime_ids) {
    EXPECT_NE(containers.out.find(id), std::string::npos) << name;
  }

  // It stops as if nothing had happened, and the cluster heard each status once.
  auto stop = t;
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop}));
  auto stopped = waitForState(taskArn(20), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  for (const auto& c : stopped->at("containers").as_array()) {
    EXPECT_TRUE(c.as_object().contains("exitCode")) << json::serialize(c);
  }
  acsBarrier();
  EXPECT_EQ(stateCalls(taskArn(20), "RUNNING"), 1u);
  EXPECT_EQ(stateCalls(taskArn(20), "STOPPED"), 1u);
}

TEST_F(DaemonTest, AnExitWhileTheDaemonIsDownIsReportedWithItsCodeAfterTheRestart) {
  startAndConnect();
  auto sent = plane_.pushAcs(payload({task(21, {container("app", "exec sleep 300")}, "none")}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  auto running = waitForState(taskArn(21), "RUNNING");
  ASSERT_TRUE(running) << daemon_->err();
  const std::string id(running->at("containers").at(0).at("runtimeId").as_string());
  ASSERT_TRUE(waitForRecordedSent(taskArn(21), "RUNNING"));
  ASSERT_EQ(daemon_->stop(SIGKILL, 30s), 128 + SIGKILL);
  daemon_.reset();

  auto killed = runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_,
                            "tasks", "kill", "-s", "SIGKILL", id});
  ASSERT_TRUE(killed.ok()) << killed.describe();
  ASSERT_TRUE(waitFor(
      [&] {
        auto tasks = runCommand(
            {"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_, "tasks", "ls"});
        return tasks.out.find("STOPPED") != std::string::npos;
      },
      10s, "the container to exit"));

  startAndConnect();
  auto stopped = waitForState(taskArn(21), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  const auto& c = stopped->at("containers").at(0).as_object();
  EXPECT_EQ(c.at("exitCode").to_number<int64_t>(), 128 + SIGKILL) << json::serialize(c);
  EXPECT_EQ(stopped->at("reason"), "Essential container in task exited");
  acsBarrier();
  EXPECT_EQ(stateCalls(taskArn(21), "RUNNING"), 1u);
  EXPECT_EQ(stateCalls(taskArn(21), "STOPPED"), 1u);
}

// A task that finished (stopped, reported, cleaned up) stays finished: its payload delivered
// again after a restart starts nothing and reports nothing.
TEST_F(DaemonTest, AFinishedTaskDeliveredAgainAfterARestartRunsNoMore) {
  extra_env_ = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1s"};
  startAndConnect();
  const auto once = task(30, {container("app", "exit 0")}, "none");
  auto sent = plane_.pushAcs(payload({once}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  ASSERT_TRUE(waitForState(taskArn(30), "STOPPED")) << daemon_->err();
  const std::string script =
      "import sqlite3,sys\n"
      "db=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True,timeout=5)\n"
      "done=db.execute('select count(*) from finished_tasks where arn=?',(sys.argv[2],))\n"
      "kept=db.execute('select count(*) from tasks where arn=?',(sys.argv[2],))\n"
      "print(done.fetchone()[0],kept.fetchone()[0])\n";
  ASSERT_TRUE(waitFor(
      [&] {
        return runCommand({"/usr/bin/python3", "-c", script, (data_dir_ / "state.db").string(),
                           taskArn(30)})
                   .out == "1 0\n";
      },
      60s, "the task to be cleaned up and recorded as finished"));
  auto containers = [&] {
    return runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_,
                       "containers", "ls", "-q"})
        .out;
  };
  EXPECT_EQ(containers(), "");
  const size_t changes = plane_.calls("SubmitTaskStateChange").size();

  ASSERT_EQ(daemon_->stop(SIGTERM, 60s), 0) << daemon_->err();
  daemon_.reset();
  startAndConnect();
  auto again = plane_.pushAcs(payload({once}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", again.at("messageId")}}, 30s));
  acsBarrier();
  EXPECT_EQ(containers(), "");
  EXPECT_EQ(plane_.calls("SubmitTaskStateChange").size(), changes);
  EXPECT_NE(daemon_->err().find("already finished"), std::string::npos) << daemon_->err();
}

TEST_F(DaemonTest, AnUnreadableStateStoreIsMovedAsideAndTheDaemonStarts) {
  {
    std::ofstream garbage(data_dir_ / "state.db");
    garbage << std::string(8192, 'x');
  }
  startAndConnect();
  EXPECT_TRUE(waitFor([&] { return daemon_->err().find("moved it aside") != std::string::npos; },
                      10s, "the log line"))
      << daemon_->err();
  bool moved = false;
  for (const auto& entry : fs::directory_iterator(data_dir_)) {
    if (entry.path().filename().string().starts_with("state.db.corrupt-")) moved = true;
  }
  EXPECT_TRUE(moved);
  EXPECT_EQ(fs::status(data_dir_ / "state.db").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(DaemonTest, WithItsStoreCorruptedTheDaemonTakesRunningTasksOverFromContainerd) {
  startAndConnect();
  auto first = plane_.waitForCall("RegisterContainerInstance", {}, 10s);
  ASSERT_TRUE(first);
  auto web = container("web",
                       "mkdir -p /www && echo still-here > /www/index.html && "
                       "exec httpd -f -p 80 -h /www");
  web["portMappings"] = json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
  auto t = task(22, {web});
  t["roleCredentials"] = credentials("cred-l", "role-l", "ASIALOST", "TaskApplication");
  auto sent = plane_.pushAcs(payload({t}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  auto running = waitForState(taskArn(22), "RUNNING");
  ASSERT_TRUE(running) << daemon_->err();
  const std::string id(running->at("containers").at(0).at("runtimeId").as_string());
  const int port = static_cast<int>(running->at("containers")
                                        .at(0)
                                        .at("networkBindings")
                                        .at(0)
                                        .at("hostPort")
                                        .to_number<int64_t>());
  auto page = [&] {
    return runCommand({"curl", "-s", "--max-time", "5", fmt::format("http://127.0.0.1:{}/", port)});
  };
  ASSERT_TRUE(waitFor([&] { return page().out == "still-here\n"; }, 10s, "httpd"));
  ASSERT_TRUE(waitForRecordedSent(taskArn(22), "RUNNING"));
  ASSERT_EQ(daemon_->stop(SIGKILL, 30s), 128 + SIGKILL);
  daemon_.reset();

  // The store's header overwritten, its log gone: nothing in it can be read.
  {
    std::fstream db(data_dir_ / "state.db", std::ios::in | std::ios::out | std::ios::binary);
    db.seekp(0);
    db << std::string(4096, 'x');
  }
  fs::remove(data_dir_ / "state.db-wal");
  fs::remove(data_dir_ / "state.db-shm");

  auto after = plane_.lastSeq();
  startAndConnect();
  auto again = plane_.waitForCall("RegisterContainerInstance", {}, 10s, after);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->at("body").at("containerInstanceArn"),
            first->at("response").at("containerInstance").at("containerInstanceArn"))
      << "the instance ARN is found on the task's containers";
  EXPECT_TRUE(waitFor(
      [&] {
        auto tasks = runCommand({"curl", "-s", "--max-time", "5",
                                 fmt::format("http://127.0.0.1:{}/v1/tasks", introspection_port_)});
        return tasks.out.find(hexId(22)) != std::string::npos &&
               tasks.out.find("\"KnownStatus\":\"RUNNING\"") != std::string::npos;
      },
      30s, "the task in introspection"))
      << daemon_->err();
  const auto log = daemon_->err();
  EXPECT_NE(log.find("moved it aside"), std::string::npos) << log;
  EXPECT_NE(log.find("taking it over from its containers"), std::string::npos) << log;
  EXPECT_NE(log.find("took over 1 task(s)"), std::string::npos) << log;
  EXPECT_EQ(page().out, "still-here\n");
  auto containers = runCommand(
      {"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_, "containers", "ls", "-q"});
  EXPECT_EQ(containers.out, id + "\n");

  // The secrets were not on the containers: the cluster's next refresh serves them again.
  auto refresh = plane_.pushAcs(
      {{"type", "IAMRoleCredentialsMessage"},
       {"message",
        {{"taskArn", taskArn(22)},
         {"roleType", "TaskApplication"},
         {"roleCredentials", credentials("cred-l", "role-l", "ASIAFOUND", "TaskApplication")}}}});
  ASSERT_TRUE(plane_.waitForAcsFrame("IAMRoleCredentialsAckRequest",
                                     {{"messageId", refresh.at("messageId")}}, 10s));
  auto direct =
      runCommand({"curl", "-s", "--max-time", "5",
                  fmt::format("http://127.0.0.1:{}/v2/credentials/cred-l", endpoint_port_)});
  EXPECT_NE(direct.out.find("ASIAFOUND"), std::string::npos) << direct.describe();
  auto in_container = runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_,
                                  "tasks", "exec", "--exec-id", "probe", id, "sh", "-c",
                                  "busybox wget -qO- "
                                  "http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"});
  EXPECT_NE(in_container.out.find("ASIAFOUND"), std::string::npos) << in_container.describe();

  auto stop = t;
  stop.erase("roleCredentials");
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop}));
  auto stopped = waitForState(taskArn(22), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  EXPECT_TRUE(stopped->at("containers").at(0).as_object().contains("exitCode"));
}

// The pid of container `id`'s process, from containerd.
int containerPid(const std::string& ns, const std::string& id) {
  auto tasks =
      runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns, "tasks", "ls"});
  std::istringstream lines(tasks.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string task;
    int pid = 0;
    if (fields >> task >> pid && task == id) return pid;
  }
  return 0;
}

void harnessContainerd(const std::string& command) {
  auto done = runCommand({"bash", harnessEnv().harnessScript(), command, harnessEnv().workdir()});
  ASSERT_TRUE(done.ok()) << done.describe();
}

TEST_F(DaemonTest, ContainerdRestartingUnderTheDaemonStopsNothingAndMissesNoExit) {
  startAndConnect();
  auto web = container("web",
                       "mkdir -p /www && echo still-here > /www/index.html && "
                       "exec httpd -f -p 80 -h /www");
  web["portMappings"] = json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
  auto served = task(30, {web});
  served["roleCredentials"] = credentials("cred-c", "role-c", "ASIACTRD", "TaskApplication");
  auto doomed = task(31, {container("app", "exec sleep 300")}, "none");
  auto sent = plane_.pushAcs(payload({served, doomed}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  auto running = waitForState(taskArn(30), "RUNNING");
  ASSERT_TRUE(running) << daemon_->err();
  const int port = static_cast<int>(running->at("containers")
                                        .at(0)
                                        .at("networkBindings")
                                        .at(0)
                                        .at("hostPort")
                                        .to_number<int64_t>());
  auto doomed_running = waitForState(taskArn(31), "RUNNING");
  ASSERT_TRUE(doomed_running) << daemon_->err();
  const int doomed_pid = containerPid(
      ns_, std::string(doomed_running->at("containers").at(0).at("runtimeId").as_string()));
  ASSERT_GT(doomed_pid, 0);
  auto page = [&] {
    return runCommand({"curl", "-s", "--max-time", "5", fmt::format("http://127.0.0.1:{}/", port)});
  };
  auto own_credentials = [&] {
    return runCommand({"curl", "-s", "--max-time", "5",
                       fmt::format("http://127.0.0.1:{}/v2/credentials/cred-c", endpoint_port_)});
  };
  ASSERT_TRUE(waitFor([&] { return page().out == "still-here\n"; }, 10s, "httpd"));

  // A third task arrives and containerd dies while it starts.
  sent = plane_.pushAcs(payload({task(32, {container("late", "exec sleep 300")}, "none")}));
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 30s));
  harnessContainerd("kill-containerd");
  ASSERT_TRUE(
      waitFor([&] { return daemon_->err().find("containerd event stream") != std::string::npos; },
              10s, "the agent to notice"))
      << daemon_->err();
  // While containerd is away: a container dies, the others keep running, the endpoints answer.
  ASSERT_EQ(::kill(doomed_pid, SIGKILL), 0);
  EXPECT_EQ(page().out, "still-here\n");
  EXPECT_NE(own_credentials().out.find("ASIACTRD"), std::string::npos);
  harnessContainerd("start-containerd");

  // The exit it could not hear is reported with its code; the starting task settles either way.
  auto stopped = waitForState(taskArn(31), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  EXPECT_EQ(stopped->at("containers").at(0).at("exitCode").to_number<int64_t>(), 128 + SIGKILL);
  ASSERT_TRUE(waitFor(
      [&] {
        return stateCalls(taskArn(32), "RUNNING") > 0 || stateCalls(taskArn(32), "STOPPED") > 0;
      },
      60s, "the starting task to settle"))
      << daemon_->err();
  if (auto late = waitForState(taskArn(32), "STOPPED", 1ms)) {
    EXPECT_FALSE(std::string(late->at("reason").as_string()).empty()) << json::serialize(*late);
  }
  EXPECT_FALSE(daemon_->exitStatus()) << daemon_->err();
  EXPECT_EQ(page().out, "still-here\n");
  EXPECT_NE(own_credentials().out.find("ASIACTRD"), std::string::npos);

  // Everything still stops normally, each status reported once.
  auto stop_served = served;
  stop_served["desiredStatus"] = "STOPPED";
  auto stop_late = task(32, {container("late", "exec sleep 300")}, "none", "STOPPED");
  plane_.pushAcs(payload({stop_served, stop_late}));
  ASSERT_TRUE(waitForState(taskArn(30), "STOPPED")) << daemon_->err();
  ASSERT_TRUE(waitForState(taskArn(32), "STOPPED")) << daemon_->err();
  acsBarrier();
  for (int n : {30, 31, 32}) {
    EXPECT_LE(stateCalls(taskArn(n), "RUNNING"), 1u) << n;
    EXPECT_EQ(stateCalls(taskArn(n), "STOPPED"), 1u) << n;
  }
  EXPECT_EQ(stateCalls(taskArn(30), "RUNNING"), 1u);
}

TEST_F(DaemonTest, AForkBombStaysInsideItsTaskAndTheAgentIsUnaffected) {
  startAndConnect();
  // The kernel kills a task's process before the agent's: where root may lower oom_score_adj
  // (CAP_SYS_RESOURCE, which some sandboxes drop), the agent has; elsewhere it says it could not.
  const bool can_lower =
      static_cast<bool>(std::ofstream("/proc/self/oom_score_adj") << "-1" << std::flush);
  if (can_lower) {
    std::ofstream("/proc/self/oom_score_adj") << "0";
    EXPECT_EQ(readFile(fmt::format("/proc/{}/oom_score_adj", daemon_->pid())), "-900\n");
  } else {
    EXPECT_NE(daemon_->err().find("could not set the agent's oom_score_adj"), std::string::npos);
  }
  auto bomb = container("bomb", "b() { b | b & }; b; exec sleep 300");
  bomb["stopTimeout"] = 1;
  bomb["memory"] = 2048;  // room for 4,096 shells: the process limit, not memory, stops it
  auto t = task(23, {bomb}, "none");
  plane_.pushAcs(payload({t}));
  ASSERT_TRUE(waitForState(taskArn(23), "RUNNING")) << daemon_->err();
  // The task's pids cgroup, limited by default.
  std::string dir;
  ASSERT_TRUE(waitFor(
      [&] {
        auto found = runCommand(
            {"find", "/sys/fs/cgroup/pids", "-maxdepth", "3", "-type", "d", "-name", hexId(23)});
        dir = found.out.substr(0, found.out.find('\n'));
        return !dir.empty();
      },
      10s, "the task's pids cgroup"));
  EXPECT_EQ(readFile(dir + "/pids.max"), "4096\n");
  // Forks fail at the limit ...
  const auto err = stdoutOf(23, "bomb").parent_path() / "stderr.log";
  EXPECT_TRUE(waitFor(
      [&] {
        return readFile(err).find("can't fork: Resource temporarily unavailable") !=
               std::string::npos;
      },
      60s, "the limit to be reached"))
      << dir << ": " << readFile(dir + "/pids.current");
  EXPECT_LE(std::stoi(readFile(dir + "/pids.current")), 4096);
  // ... while the agent answers at once.
  for (int i = 0; i < 5; ++i) {
    auto metadata =
        runCommand({"curl", "-s", "--max-time", "1",
                    fmt::format("http://127.0.0.1:{}/v1/metadata", introspection_port_)});
    EXPECT_NE(metadata.out.find(kCluster), std::string::npos) << metadata.describe();
  }
  auto stop = t;
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({stop}));
  ASSERT_TRUE(waitForState(taskArn(23), "STOPPED", 120s)) << daemon_->err();
}

TEST_F(DaemonTest, AnEnvironmentFileOutsideTheAllowedDirectoryIsRefusedAndNoSecretLeaks) {
  // A root-only host file holding a secret, outside the directory env files may come from.
  fs::create_directories(data_dir_ / "env");
  const auto secret_file = data_dir_ / "host-secret.env";
  std::ofstream(secret_file) << "PLANTED=planted-host-secret\n";
  fs::permissions(secret_file, fs::perms::owner_read | fs::perms::owner_write);
  extra_env_ = {"ECS_ENVIRONMENT_FILES_DIR=" + (data_dir_ / "env").string(),
                "ECS_TEST_PLANTED=planted-agent-secret"};
  std::string agent_secret;
  for (const auto& kv : agentEnv()) {
    if (kv.starts_with("AWS_SECRET_ACCESS_KEY=")) agent_secret = kv.substr(kv.find('=') + 1);
  }
  ASSERT_FALSE(agent_secret.empty());
  startAndConnect();
  auto app = container("app", "exec sleep 300");
  // Spelled as if inside: `..` leads out.
  app["environmentFiles"] = json::array{
      {{"value", (data_dir_ / "env" / ".." / "host-secret.env").string()}, {"type", "s3"}}};
  auto through_link = container("linked", "exec sleep 300");
  fs::create_symlink(secret_file, data_dir_ / "env" / "link.env");
  through_link["environmentFiles"] =
      json::array{{{"value", (data_dir_ / "env" / "link.env").string()}, {"type", "s3"}}};
  plane_.pushAcs(payload({task(24, {app}, "none"), task(25, {through_link}, "none")}));
  auto outside = waitForState(taskArn(24), "STOPPED");
  ASSERT_TRUE(outside) << daemon_->err();
  auto linked = waitForState(taskArn(25), "STOPPED");
  ASSERT_TRUE(linked) << daemon_->err();
  acsBarrier();
  EXPECT_NE(json::serialize(*outside).find("environmentFiles[0]"), std::string::npos)
      << json::serialize(*outside);
  EXPECT_NE(json::serialize(*outside).find("not beneath"), std::string::npos);
  EXPECT_NE(json::serialize(*linked).find("a link leads out"), std::string::npos)
      << json::serialize(*linked);
  // Nothing the cluster or the log received carries a secret.
  std::string everything = daemon_->err() + daemon_->out();
  for (const auto& call : plane_.calls("SubmitTaskStateChange"))
    everything += json::serialize(call);
  for (const char* planted : {"planted-host-secret", "planted-agent-secret"}) {
    EXPECT_EQ(everything.find(planted), std::string::npos) << planted;
  }
  EXPECT_EQ(everything.find(agent_secret), std::string::npos) << "the agent's own secret key";
}

// --- churn: many tasks, random kills ----------------------------------------------------------

// What the host shows of network namespaces, links, iptables rules, mounts and cgroups, sorted
// and without counters: equal before and after means nothing was left behind.
std::string hostSnapshot() {
  auto sorted = [](std::vector<std::string> lines) {
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& line : lines) out += line + "\n";
    return out;
  };
  auto lines_of = [](const std::string& text, auto keep) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (auto kept = keep(line)) out.push_back(*kept);
    }
    return out;
  };
  const std::regex counters(R"(\[\d+:\d+\])");
  std::string out = "--- netns\n";
  out += sorted(lines_of(runCommand({"ip", "netns", "list"}).out,
                         [](const std::string& l) { return std::optional<std::string>(l); }));
  out += "--- links\n";
  out += sorted(lines_of(runCommand({"ip", "-o", "link", "show"}).out,
                         [](const std::string& l) -> std::optional<std::string> {
                           std::istringstream fields(l);
                           std::string index, name;
                           fields >> index >> name;
                           return name;
                         }));
  out += "--- iptables\n";
  out += sorted(lines_of(runCommand({"iptables-save"}).out,
                         [&](const std::string& l) -> std::optional<std::string> {
                           if (l.starts_with("#")) return std::nullopt;
                           return std::regex_replace(l, counters, "");
                         }));
  out += "--- mounts\n";
  out += sorted(lines_of(readFile("/proc/self/mountinfo"),
                         [](const std::string& l) -> std::optional<std::string> {
                           std::istringstream fields(l);
                           std::string id, parent, dev, root, point;
                           fields >> id >> parent >> dev >> root >> point;
                           return point;
                         }));
  out += "--- cgroups\n";
  out += sorted(lines_of(
      runCommand({"find", "/sys/fs/cgroup", "-maxdepth", "4", "-type", "d", "-name", "*ecs*"}).out,
      [](const std::string& l) { return std::optional<std::string>(l); }));
  return out;
}

TEST_F(DaemonTest, TwoHundredTasksThroughRandomKillsLeaveTheHostAsItWas) {
  const auto before = hostSnapshot();
  extra_env_ = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1s"};
  const unsigned seed = std::random_device{}();
  std::mt19937 random(seed);
  SCOPED_TRACE(fmt::format("random seed {}", seed));
  startAndConnect();

  constexpr int kBatches = 20, kPerBatch = 10, kFirst = 100;
  int kills = 0;
  std::string earlier_logs;             // of the processes killed
  std::map<int, json::object> current;  // task number -> the form last sent
  auto stopped = [&](int n) { return stateCalls(taskArn(n), "STOPPED") > 0; };
  // Sometimes, a random moment after a message: kill -9, restart, and send again what the
  // cluster still wants of the tasks that have not stopped (as ECS does after a reconnect).
  auto maybe_kill = [&] {
    if (std::uniform_int_distribution<int>(0, 9)(random) >= 3) return;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 600)(random)));
    ASSERT_EQ(daemon_->stop(SIGKILL, 30s), 128 + SIGKILL);
    earlier_logs += daemon_->err();
    daemon_.reset();
    ++kills;
    startAndConnect();
    json::array again;
    for (const auto& [n, form] : current) {
      if (!stopped(n)) again.push_back(form);
    }
    if (!again.empty()) plane_.pushAcs(payload(std::move(again)));
  };
  for (int batch = 0; batch < kBatches; ++batch) {
    current.clear();
    json::array tasks;
    for (int i = 0; i < kPerBatch; ++i) {
      const int n = kFirst + batch * kPerBatch + i;
      json::object t;
      if (i % 2 == 0) {  // runs until the cluster stops it, with a host port
        auto web = container("web", "trap 'exit 0' TERM; sleep 300 & wait");
        web["portMappings"] =
            json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
        t = task(n, {web});
      } else {  // exits by itself
        t = task(n, {container("brief", "sleep 0.2")}, "none");
      }
      current[n] = t;
      tasks.push_back(t);
    }
    plane_.pushAcs(payload(std::move(tasks)));
    maybe_kill();
    ASSERT_TRUE(waitFor(
        [&] {
          for (const auto& [n, form] : current) {
            if (stateCalls(taskArn(n), "RUNNING") == 0 && !stopped(n)) return false;
          }
          return true;
        },
        60s, "the batch to run"))
        << daemon_->err();
    json::array stops;
    for (auto& [n, form] : current) {
      if (n % 2 != 0) continue;
      form["desiredStatus"] = "STOPPED";
      stops.push_back(form);
    }
    plane_.pushAcs(payload(std::move(stops)));
    maybe_kill();
    ASSERT_TRUE(waitFor(
        [&] {
          for (const auto& [n, form] : current) {
            if (!stopped(n)) return false;
          }
          return true;
        },
        60s, "the batch to stop"))
        << daemon_->err();
  }
  std::cerr << fmt::format("{} tasks, {} kills (seed {})\n", kBatches * kPerBatch, kills, seed);

  // Everything is cleaned up after its (1 s) wait; then the agent goes, with its bridge.
  EXPECT_TRUE(waitFor(
      [&] {
        auto containers = runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n",
                                      ns_, "containers", "ls", "-q"});
        return containers.ok() && containers.out.empty();
      },
      60s, "every container to be removed"))
      << earlier_logs << daemon_->err();
  acsBarrier();
  for (int n = kFirst; n < kFirst + kBatches * kPerBatch; ++n) {
    // At most twice: killed after the cluster took a change but before the agent recorded it.
    EXPECT_LE(stateCalls(taskArn(n), "STOPPED"), 2u) << n;
    EXPECT_LE(stateCalls(taskArn(n), "RUNNING"), 2u) << n;
  }
  EXPECT_TRUE(fs::is_empty(data_dir_ / "tasks"));
  ASSERT_EQ(daemon_->stop(SIGTERM, 120s), 0) << daemon_->err();
  daemon_.reset();
  auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
  ASSERT_TRUE(teardown.ok()) << teardown.describe();
  EXPECT_EQ(hostSnapshot(), before);
}

// --- failure points: killed at a named moment, restarted, everything happens exactly once -------

struct CrashCase {
  const char* point;
  bool while_stopping;  // the point is on the way down: the task runs first, then is stopped
};

void PrintTo(const CrashCase& crash, std::ostream* out) {
  *out << crash.point;
}

class DaemonCrashTest : public DaemonTest, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(DaemonCrashTest, RecoversFromAKillAtThePoint) {
  const auto& crash = GetParam();
  const int n = 40;
  const auto before = hostSnapshot();
  extra_env_ = {std::string("ECS_FAILPOINT=") + crash.point,
                "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1s"};
  startAndConnect();
  auto web = container("web",
                       "mkdir -p /www && echo crash-safe > /www/index.html && "
                       "exec httpd -f -p 80 -h /www");
  web["portMappings"] = json::array{{{"containerPort", 80}, {"hostPort", 0}, {"protocol", "tcp"}}};
  auto t = task(n, {web});
  t["roleCredentials"] = credentials("cred-crash", "role-c", "ASIACRASH", "TaskApplication");
  auto stop = t;
  stop["desiredStatus"] = "STOPPED";
  plane_.pushAcs(payload({t}));
  if (crash.while_stopping) {
    ASSERT_TRUE(waitForState(taskArn(n), "RUNNING")) << daemon_->err();
    ASSERT_TRUE(waitForRecordedSent(taskArn(n), "RUNNING"));
    plane_.pushAcs(payload({stop}));
  }
  ASSERT_EQ(daemon_->wait(90s), 128 + SIGKILL) << "not killed at " << crash.point << "\n"
                                               << daemon_->err();
  ASSERT_NE(daemon_->err().find(std::string("failure point ") + crash.point), std::string::npos);
  daemon_.reset();

  extra_env_ = {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION=1s"};
  startAndConnect();
  // The cluster sends again what was not acknowledged.
  if (std::string(crash.point) == "payload-stored") plane_.pushAcs(payload({t}));
  if (!crash.while_stopping) {
    auto running = waitForState(taskArn(n), "RUNNING");
    ASSERT_TRUE(running) << daemon_->err();
    int port = static_cast<int>(running->at("containers")
                                    .at(0)
                                    .at("networkBindings")
                                    .at(0)
                                    .at("hostPort")
                                    .to_number<int64_t>());
    ecs::testing::RunResult get;
    EXPECT_TRUE(waitFor(
        [&] {
          get = runCommand(
              {"curl", "-s", "--max-time", "5", fmt::format("http://127.0.0.1:{}/", port)});
          return get.out == "crash-safe\n";
        },
        15s, "httpd to answer"))
        << get.describe();
    auto direct =
        runCommand({"curl", "-s", "--max-time", "5",
                    fmt::format("http://127.0.0.1:{}/v2/credentials/cred-crash", endpoint_port_)});
    EXPECT_NE(direct.out.find("ASIACRASH"), std::string::npos) << direct.describe();
    auto containers = runCommand({"ctr", "--address", harnessEnv().containerdAddress(), "-n", ns_,
                                  "containers", "ls", "-q"});
    EXPECT_EQ(std::count(containers.out.begin(), containers.out.end(), '\n'), 1)
        << containers.describe();
    plane_.pushAcs(payload({stop}));
  }
  auto stopped = waitForState(taskArn(n), "STOPPED");
  ASSERT_TRUE(stopped) << daemon_->err();
  // Removed after the (1 s) cleanup wait: the introspection endpoint no longer lists it.
  EXPECT_TRUE(waitFor(
      [&] {
        auto tasks = runCommand({"curl", "-s", "--max-time", "5",
                                 fmt::format("http://127.0.0.1:{}/v1/tasks", introspection_port_)});
        return tasks.ok() && tasks.out.find(hexId(n)) == std::string::npos;
      },
      30s, "the task to be cleaned up"))
      << daemon_->err();
  acsBarrier();
  // Each status reaches the cluster once, RUNNING before STOPPED. Killed after the cluster
  // accepted a change but before the agent recorded it, the agent cannot know it was taken: it
  // sends that same change once more (ECS takes a repeated status as a no-op).
  const size_t most = std::string(crash.point) == "state-change-accepted" ? 2u : 1u;
  EXPECT_GE(stateCalls(taskArn(n), "RUNNING"), 1u);
  EXPECT_LE(stateCalls(taskArn(n), "RUNNING"), most);
  EXPECT_GE(stateCalls(taskArn(n), "STOPPED"), 1u);
  EXPECT_LE(stateCalls(taskArn(n), "STOPPED"), most);
  std::vector<std::string> order;
  for (const auto& call : plane_.calls("SubmitTaskStateChange")) {
    const auto& body = call.at("body").as_object();
    if (body.at("task") != taskArn(n).c_str()) continue;
    std::string status(body.at("status").as_string());
    if (order.empty() || order.back() != status) order.push_back(status);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"RUNNING", "STOPPED"}));
  // Nothing is left on the host once the agent and its bridge are gone.
  ASSERT_EQ(daemon_->stop(SIGTERM, 120s), 0) << daemon_->err();
  daemon_.reset();
  auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
  ASSERT_TRUE(teardown.ok()) << teardown.describe();
  EXPECT_EQ(hostSnapshot(), before);
}

INSTANTIATE_TEST_SUITE_P(
    Points, DaemonCrashTest,
    ::testing::Values(CrashCase{"payload-stored", false}, CrashCase{"image-pulling", false},
                      CrashCase{"container-created", false},
                      CrashCase{"state-change-sending", false},
                      CrashCase{"state-change-accepted", false},
                      CrashCase{"container-stop-sent", true}, CrashCase{"task-cleanup", true}),
    [](const ::testing::TestParamInfo<CrashCase>& info) {
      std::string name;
      for (const char* c = info.param.point; *c; ++c) {
        if (*c != '-')
          name += (c == info.param.point || c[-1] == '-') ? char(std::toupper(*c)) : *c;
      }
      return name;
    });

}  // namespace
