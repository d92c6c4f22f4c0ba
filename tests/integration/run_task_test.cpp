// `ecs-node-agent run TASKDEF.json` end to end on the real containerd: the task engine, the OCI
// spec from container definitions, task cgroups, and what a user sees (JSON lines, exit status).
// Each test leaves nothing in containerd, the cgroup tree or the data directory.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/harness_env.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using ecs::testing::RunResult;

struct TaskRun {
  RunResult result;
  std::vector<json::object> states;  // {"type":"state",...} lines in order
  std::vector<json::object> logs;    // {"type":"log",...}
  std::string task_arn;

  // The state lines of one container ("" for the task), in order.
  std::vector<json::object> statesOf(const std::string& container) const {
    std::vector<json::object> out;
    for (const auto& s : states) {
      auto* name = s.if_contains("containerName");
      if ((name ? std::string(name->as_string()) : std::string()) == container) out.push_back(s);
    }
    return out;
  }
  // Index in `states` of the first line for `container` with `status` (-1 if none).
  int indexOf(const std::string& container, const std::string& status) const {
    for (size_t i = 0; i < states.size(); ++i) {
      auto* name = states[i].if_contains("containerName");
      if ((name ? std::string(name->as_string()) : std::string()) == container &&
          states[i].at("status").as_string() == status) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  std::string output(const std::string& container, const std::string& stream = "stdout") const {
    std::string out;
    for (const auto& l : logs) {
      if (l.at("containerName").as_string() == container && l.at("stream").as_string() == stream) {
        out += std::string(l.at("log").as_string()) + "\n";
      }
    }
    return out;
  }
  std::string describe() const { return result.describe(); }
};

class RunTaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
  }

  void TearDown() override {
    // The task network's bridge and chains are host setup that outlives a task: take them down.
    auto teardown = runCommand({agent_, "network", "teardown"}, agentEnv());
    EXPECT_TRUE(teardown.ok()) << teardown.describe();
    ecs::testing::removeAllImages(ns_);
    ecs::testing::expectNoLeaks(ns_);
    // The data directory holds nothing once every task is cleaned up.
    if (fs::exists(data_dir_ / "tasks")) {
      EXPECT_TRUE(fs::is_empty(data_dir_ / "tasks")) << "task directories left in " << data_dir_;
    }
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  RunResult ctr(std::vector<std::string> args) {
    args.insert(args.begin(), {"ctr", "-a", harnessEnv().containerdAddress(), "-n", ns_});
    return runCommand(args, {}, std::chrono::seconds(60));
  }

  std::vector<std::string> agentEnv(std::vector<std::string> extra = {}) {
    std::vector<std::string> env = {
        "ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
        "ECS_CONTAINERD_NAMESPACE=" + ns_,
        "ECS_LOGLEVEL=warn",
        "ECS_DATADIR=" + data_dir_.string(),
        "ECS_BRIDGE_NAME=ecs-test-br2",
        "ECS_BRIDGE_SUBNET=172.31.252.0/24",
        "ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_),
        "ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_)};
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

  TaskRun run(const std::string& taskdef, std::vector<std::string> extra_env = {},
              std::vector<std::string> prefix = {}) {
    std::vector<std::string> argv = prefix;
    argv.insert(argv.end(), {agent_, "run", writeTaskDefinition(taskdef), "--output", "json"});
    TaskRun run;
    run.result = runCommand(argv, agentEnv(std::move(extra_env)), std::chrono::seconds(180));
    std::istringstream lines(run.result.out);
    for (std::string line; std::getline(lines, line);) {
      boost::system::error_code ec;
      auto value = json::parse(line, ec);
      if (ec || !value.is_object()) {
        ADD_FAILURE() << "stdout line is not a JSON object: " << line;
        continue;
      }
      auto& object = value.as_object();
      if (object.at("type").as_string() == "state") {
        if (run.task_arn.empty()) run.task_arn = object.at("taskArn").as_string();
        run.states.push_back(object);
      } else {
        run.logs.push_back(object);
      }
    }
    if (!run.task_arn.empty()) expectNoTaskCgroup(run.task_arn);
    return run;
  }

  // runc creates a container's cgroup path in every v1 hierarchy (blkio, devices, freezer, ...),
  // not only the ones with limits: the task's directory must be gone from all of them.
  void expectNoTaskCgroup(const std::string& task_arn) {
    auto id = task_arn.substr(task_arn.rfind('/') + 1);
    for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup")) {
      auto path = hierarchy.path() / "ecs" / id;
      EXPECT_FALSE(fs::exists(path)) << "task cgroup left behind: " << path;
    }
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int counter_ = 0;
  // The agent's endpoint servers on loopback ports of their own, never the fixed defaults.
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
};

TEST_F(RunTaskTest, RunsATaskAndReportsEveryTransition) {
  auto run = this->run(R"({
    "family": "hello",
    "containerDefinitions": [{
      "name": "app", "image": "${IMAGE}", "memory": 32,
      "command": ["sh", "-c", "echo out-$HOSTNAME; echo err-line >&2; exit 3"],
      "environment": [{"name": "GREETING", "value": "hi"}]
    }]
  })");
  EXPECT_EQ(run.result.exit_code, 3) << run.describe();
  std::vector<std::string> statuses;
  for (const auto& s : run.statesOf("app")) statuses.emplace_back(s.at("status").as_string());
  EXPECT_EQ(statuses, (std::vector<std::string>{"PULLED", "CREATED", "RUNNING", "STOPPED"}));
  auto stopped = run.statesOf("app").back();
  EXPECT_EQ(stopped.at("exitCode").as_int64(), 3);
  EXPECT_TRUE(stopped.contains("networkBindings"));
  EXPECT_TRUE(run.statesOf("").back().at("status").as_string() == "STOPPED");
  EXPECT_NE(run.task_arn.find(":task/default/"), std::string::npos) << run.task_arn;
  EXPECT_NE(run.output("app").find("out-"), std::string::npos) << run.describe();
  EXPECT_EQ(run.output("app", "stderr"), "err-line\n");
}

TEST_F(RunTaskTest, ValidationErrorsExit2AndStartNothing) {
  auto run = this->run(R"({
    "family": "bad",
    "containerDefinitions": [
      {"name": "a", "image": "${IMAGE}", "memory": 4},
      {"name": "a", "memory": 32}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 2) << run.describe();
  EXPECT_NE(run.result.err.find("memory"), std::string::npos) << run.result.err;
  EXPECT_NE(run.result.err.find("image"), std::string::npos) << run.result.err;
  EXPECT_TRUE(run.states.empty());

  auto malformed = this->run("{\n  \"family\": \"x\"\n  \"containerDefinitions\": []\n}");
  EXPECT_EQ(malformed.result.exit_code, 2);
  EXPECT_NE(malformed.result.err.find("line 3"), std::string::npos) << malformed.result.err;
}

TEST_F(RunTaskTest, UnknownImageExits125WithTheReason) {
  auto run = this->run(R"({
    "family": "missing",
    "containerDefinitions": [{"name": "app", "image": ")" +
                       harnessEnv().registry() +
                       R"(/test/nope:1", "memory": 32}]
  })");
  EXPECT_EQ(run.result.exit_code, 125) << run.describe();
  auto stopped = run.statesOf("app").back();
  EXPECT_EQ(stopped.at("status").as_string(), "STOPPED");
  EXPECT_NE(std::string(stopped.at("reason").as_string()).find("CannotPullContainerError"),
            std::string::npos);
  EXPECT_NE(std::string(stopped.at("reason").as_string()).find("test/nope:1"), std::string::npos);
}

TEST_F(RunTaskTest, DependencyOrderIsObserved) {
  auto run = this->run(R"({
    "family": "deps",
    "containerDefinitions": [
      {"name": "init", "image": "${IMAGE}", "memory": 16, "essential": false,
       "command": ["sh", "-c", "sleep 1; echo init-done"]},
      {"name": "app", "image": "${IMAGE}", "memory": 16,
       "dependsOn": [{"containerName": "init", "condition": "SUCCESS"},
                     {"containerName": "helper", "condition": "START"}],
       "command": ["sh", "-c", "echo app-ran"]},
      {"name": "helper", "image": "${IMAGE}", "memory": 16, "essential": false,
       "linuxParameters": {"initProcessEnabled": true}, "stopTimeout": 10,
       "command": ["sleep", "300"]}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  EXPECT_LT(run.indexOf("init", "STOPPED"), run.indexOf("app", "CREATED"));
  EXPECT_LT(run.indexOf("helper", "RUNNING"), run.indexOf("app", "RUNNING"));
  // Stop order is reverse dependency order: app (dependent) before helper.
  EXPECT_LT(run.indexOf("app", "STOPPED"), run.indexOf("helper", "STOPPED"));
  // With an init process, SIGTERM reaches sleep (as PID 1 it would ignore it): 143, not 137.
  EXPECT_EQ(run.statesOf("helper").back().at("exitCode").as_int64(), 143);
  EXPECT_EQ(run.output("app"), "app-ran\n");
}

TEST_F(RunTaskTest, FailedSuccessDependencyStopsTheTaskWithAReason) {
  auto run = this->run(R"({
    "family": "deps-fail",
    "containerDefinitions": [
      {"name": "init", "image": "${IMAGE}", "memory": 16, "essential": false,
       "command": ["sh", "-c", "exit 4"]},
      {"name": "app", "image": "${IMAGE}", "memory": 16,
       "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
       "command": ["sh", "-c", "echo should-not-run"]}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 125) << run.describe();
  EXPECT_EQ(run.indexOf("app", "RUNNING"), -1);
  auto task = run.statesOf("").back();
  EXPECT_EQ(task.at("status").as_string(), "STOPPED");
  EXPECT_NE(std::string(task.at("reason").as_string()).find("exited with code 4"),
            std::string::npos)
      << json::serialize(task);
}

TEST_F(RunTaskTest, EssentialExitStopsTheTaskAndStubbornContainersAreKilled) {
  auto started = std::chrono::steady_clock::now();
  auto run = this->run(R"({
    "family": "essential",
    "containerDefinitions": [
      {"name": "main", "image": "${IMAGE}", "memory": 16,
       "command": ["sh", "-c", "sleep 1; exit 5"]},
      {"name": "stubborn", "image": "${IMAGE}", "memory": 16, "essential": false,
       "stopTimeout": 2, "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}
    ]
  })");
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(run.result.exit_code, 5) << run.describe();
  auto stubborn = run.statesOf("stubborn").back();
  EXPECT_EQ(stubborn.at("exitCode").as_int64(), 137);
  EXPECT_EQ(run.statesOf("").back().at("reason").as_string(), "Essential container in task exited");
  EXPECT_GE(elapsed, std::chrono::seconds(3));   // 1 s running + 2 s stopTimeout
  EXPECT_LT(elapsed, std::chrono::seconds(25));  // not the 30 s default
}

TEST_F(RunTaskTest, HealthyDependencyWaitsForHealth) {
  auto run = this->run(R"({
    "family": "healthy",
    "containerDefinitions": [
      {"name": "web", "image": "${IMAGE}", "memory": 16, "essential": false,
       "command": ["sh", "-c", "sleep 2; touch /tmp/ready; sleep 300"],
       "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5,
                       "timeout": 2, "retries": 3}},
      {"name": "client", "image": "${IMAGE}", "memory": 16,
       "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
       "command": ["echo", "web is healthy"]}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  int healthy = -1;
  for (size_t i = 0; i < run.states.size(); ++i) {
    if (run.states[i].contains("healthStatus") &&
        run.states[i].at("healthStatus").as_string() == "HEALTHY") {
      healthy = static_cast<int>(i);
      break;
    }
  }
  ASSERT_GE(healthy, 0) << run.describe();
  EXPECT_LT(healthy, run.indexOf("client", "CREATED"));
  EXPECT_EQ(run.output("client"), "web is healthy\n");
}

TEST_F(RunTaskTest, StartTimeoutEndsAWaitThatCanNeverEnd) {
  auto started = std::chrono::steady_clock::now();
  auto run = this->run(R"({
    "family": "start-timeout",
    "containerDefinitions": [
      {"name": "never-ready", "image": "${IMAGE}", "memory": 16, "essential": false,
       "startTimeout": 2, "linuxParameters": {"initProcessEnabled": true},
       "command": ["sleep", "300"],
       "healthCheck": {"command": ["CMD", "false"], "interval": 30, "retries": 3}},
      {"name": "app", "image": "${IMAGE}", "memory": 16,
       "dependsOn": [{"containerName": "never-ready", "condition": "HEALTHY"}],
       "command": ["echo", "should not run"]}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 125) << run.describe();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  EXPECT_EQ(run.indexOf("app", "RUNNING"), -1);
  auto task = run.statesOf("").back();
  EXPECT_NE(std::string(task.at("reason").as_string()).find("startTimeout of 2s"),
            std::string::npos)
      << json::serialize(task);
}

TEST_F(RunTaskTest, UnhealthyContainerIsReportedNotStopped) {
  auto run = this->run(R"({
    "family": "unhealthy",
    "containerDefinitions": [
      {"name": "sick", "image": "${IMAGE}", "memory": 16,
       "command": ["sh", "-c", "sleep 14; echo still-running"],
       "healthCheck": {"command": ["CMD", "false"], "interval": 5, "timeout": 2, "retries": 2}}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  bool unhealthy = false;
  for (const auto& s : run.statesOf("sick")) {
    unhealthy |= s.contains("healthStatus") && s.at("healthStatus").as_string() == "UNHEALTHY";
  }
  EXPECT_TRUE(unhealthy) << run.describe();
  EXPECT_EQ(run.output("sick"), "still-running\n");
}

TEST_F(RunTaskTest, SecurityAndLimitsAreEnforcedInsideTheContainer) {
  auto run = this->run(R"({
    "family": "secure",
    "memory": "128",
    "containerDefinitions": [
      {"name": "probe", "image": "${IMAGE}", "memory": 64,
       "readonlyRootFilesystem": true,
       "linuxParameters": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}},
       "ulimits": [{"name": "nofile", "softLimit": 512, "hardLimit": 1024}],
       "command": ["sh", "-c",
         "touch /rootfs-write 2>/dev/null && echo write-ok || echo write-refused; grep -E '^(CapEff|Seccomp):' /proc/self/status; ulimit -n; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"]},
      {"name": "user", "image": "${IMAGE}", "memory": 16, "essential": false,
       "user": "1000:2000", "command": ["sh", "-c", "id -u; id -g"]}
    ]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  auto out = run.output("probe");
  EXPECT_NE(out.find("write-refused"), std::string::npos) << out;
  EXPECT_NE(out.find("CapEff:\t0000000000001000"), std::string::npos) << out;  // NET_ADMIN only
  EXPECT_NE(out.find("Seccomp:\t2"), std::string::npos) << out;
  EXPECT_NE(out.find("\n512\n"), std::string::npos) << out;
  EXPECT_NE(out.find(std::to_string(64 << 20)), std::string::npos) << out;
  EXPECT_EQ(run.output("user"), "1000\n2000\n");
}

TEST_F(RunTaskTest, DefaultCapabilitiesAreDockers) {
  auto run = this->run(R"({
    "family": "caps",
    "containerDefinitions": [{"name": "probe", "image": "${IMAGE}", "memory": 16,
      "command": ["sh", "-c", "grep CapEff /proc/self/status"]}]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  // Docker's 14 default capabilities.
  EXPECT_EQ(run.output("probe"), "CapEff:\t00000000a80425fb\n");
}

TEST_F(RunTaskTest, OutOfMemoryIsReported) {
  auto run = this->run(R"({
    "family": "oom",
    "containerDefinitions": [{"name": "hog", "image": "${IMAGE}", "memory": 16,
      "command": ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]}]
  })");
  EXPECT_EQ(run.result.exit_code, 137) << run.describe();
  auto stopped = run.statesOf("hog").back();
  EXPECT_NE(std::string(stopped.at("reason").as_string()).find("OutOfMemoryError"),
            std::string::npos)
      << json::serialize(stopped);
}

TEST_F(RunTaskTest, SigintStopsTheTaskGracefully) {
  auto run = this->run(R"({
    "family": "sigint",
    "containerDefinitions": [{"name": "server", "image": "${IMAGE}", "memory": 16,
      "command": ["sh", "-c", "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.2; done"]}]
  })",
                       {}, {"timeout", "--preserve-status", "-s", "INT", "4"});
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  EXPECT_EQ(run.output("server"), "got-term\n");
  EXPECT_NE(std::string(run.statesOf("").back().at("reason").as_string()).find("SIGINT"),
            std::string::npos);
}

TEST_F(RunTaskTest, RestartPolicyIgnoredExitCodeDoesNotRestart) {
  auto run = this->run(R"({
    "family": "restart-ignored",
    "containerDefinitions": [{"name": "app", "image": "${IMAGE}", "memory": 16,
      "restartPolicy": {"enabled": true, "ignoredExitCodes": [7], "restartAttemptPeriod": 60},
      "command": ["sh", "-c", "exit 7"]}]
  })");
  EXPECT_EQ(run.result.exit_code, 7) << run.describe();
  EXPECT_EQ(run.statesOf("app").size(), 4u) << run.describe();
}

TEST_F(RunTaskTest, HumanOutputPrefixesContainerLines) {
  auto result = runCommand({agent_, "run", writeTaskDefinition(R"({
    "family": "human",
    "containerDefinitions": [{"name": "app", "image": "${IMAGE}", "memory": 16,
      "command": ["sh", "-c", "echo hello; echo world"]}]
  })")},
                           agentEnv(), std::chrono::seconds(120));
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(result.out, "app | hello\napp | world\n");
  EXPECT_NE(result.err.find("[app] RUNNING"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("[task] STOPPED"), std::string::npos) << result.err;
}

TEST_F(RunTaskTest, ContainerDefinitionFieldsReachTheContainer) {
  auto env_file = data_dir_ / "app.env";
  std::ofstream(env_file) << "# comment\nFROM_FILE=file-value\nOVERRIDDEN=from-file\n\n";
  auto run = this->run(R"J({
    "family": "fields",
    "containerDefinitions": [
      {"name": "probe", "image": "${IMAGE}", "memory": 64, "memoryReservation": 32, "cpu": 512,
       "entryPoint": ["sh", "-c"],
       "command": ["echo cwd=$(pwd); echo env=$FROM_FILE,$OVERRIDDEN,$PLAIN; echo host=$(hostname); grep db.local /etc/hosts; grep -E '^(nameserver|search)' /etc/resolv.conf; echo shm=$(df -k /dev/shm | awk 'NR==2{print $2}'); echo scratch=$(df -k /scratch | awk 'NR==2{print $2}'); echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); grep NoNewPrivs /proc/self/status; echo shares=$(cat /sys/fs/cgroup/cpu/cpu.shares); echo soft=$(cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes)"],
       "workingDirectory": "/tmp",
       "environment": [{"name": "OVERRIDDEN", "value": "from-env"}, {"name": "PLAIN", "value": "p"}],
       "environmentFiles": [{"value": ")J" +
                       env_file.string() + R"J(", "type": "s3"}],
       "hostname": "kitchen",
       "extraHosts": [{"hostname": "db.local", "ipAddress": "172.31.9.9"}],
       "dnsServers": ["172.31.0.53"], "dnsSearchDomains": ["corp.local"],
       "linuxParameters": {"sharedMemorySize": 32,
                           "tmpfs": [{"containerPath": "/scratch", "size": 16}]},
       "systemControls": [{"namespace": "net.ipv4.ip_forward", "value": "1"}],
       "dockerSecurityOptions": ["no-new-privileges"]},
      {"name": "named-user", "image": "${IMAGE}", "memory": 16, "essential": false,
       "user": "nobody", "command": ["sh", "-c", "echo $(id -u):$(id -g)"]},
      {"name": "user-group", "image": "${IMAGE}", "memory": 16, "essential": false,
       "user": "nobody:root", "command": ["sh", "-c", "echo $(id -u):$(id -g)"]}
    ]
  })J");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  auto out = run.output("probe");
  for (const char* expected :
       {"cwd=/tmp\n", "env=file-value,from-env,p\n", "host=kitchen\n", "172.31.9.9",
        "nameserver 172.31.0.53\n", "search corp.local\n", "shm=32768\n", "scratch=16384\n",
        "fwd=1\n", "NoNewPrivs:\t1\n", "shares=512\n", "soft=33554432\n"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << "missing " << expected << " in:\n" << out;
  }
  EXPECT_EQ(run.output("named-user"), "65534:65534\n") << run.describe();
  EXPECT_EQ(run.output("user-group"), "65534:0\n") << run.describe();
}

TEST_F(RunTaskTest, PrivilegedContainerHasEveryCapabilityAndNoSeccomp) {
  auto run = this->run(R"({
    "family": "privileged",
    "containerDefinitions": [{"name": "root", "image": "${IMAGE}", "memory": 16, "privileged": true,
      "command": ["sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status"]}]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  auto out = run.output("root");
  EXPECT_NE(out.find("Seccomp:\t0"), std::string::npos) << out;
  EXPECT_EQ(out.find("CapEff:\t00000000a80425fb"), std::string::npos) << out;
}

TEST_F(RunTaskTest, DockerLabelsAndAgentLabelsAreOnTheContainer) {
  auto taskdef = writeTaskDefinition(R"({
    "family": "labels",
    "containerDefinitions": [{"name": "app", "image": "${IMAGE}", "memory": 16,
      "dockerLabels": {"team": "payments"},
      "linuxParameters": {"initProcessEnabled": true},
      "command": ["sleep", "30"]}]
  })");
  // While the task runs, read its container record from containerd; then stop it with SIGTERM.
  std::string script =
      "\"$0\" run \"$1\" --output json > /dev/null & pid=$!; "
      "for i in $(seq 50); do ctr -a \"$2\" -n \"$3\" containers ls -q | grep -q . && break; sleep "
      "0.2; done; "
      "sleep 0.5; ctr -a \"$2\" -n \"$3\" containers info $(ctr -a \"$2\" -n \"$3\" containers ls "
      "-q); "
      "kill -TERM $pid; wait $pid";
  auto result =
      runCommand({"bash", "-c", script, agent_, taskdef, harnessEnv().containerdAddress(), ns_},
                 agentEnv(), std::chrono::seconds(60));
  EXPECT_EQ(result.exit_code, 143) << result.describe();
  for (const char* label :
       {"\"team\": \"payments\"", "\"com.amazonaws.ecs.container-name\": \"app\"",
        "\"com.amazonaws.ecs.task-definition-family\": \"labels\"",
        "\"com.amazonaws.ecs.task-arn\": \"arn:aws:ecs:",
        "\"com.amazonaws.ecs.cluster\": \"default\""}) {
    EXPECT_NE(result.out.find(label), std::string::npos)
        << "missing " << label << " in " << result.out;
  }
}

TEST_F(RunTaskTest, EveryValidationErrorExits2NamingTheField) {
  struct Case {
    const char* definition;
    const char* message;
  };
  const Case cases[] = {
      {R"({"family":"f","containerDefinitions":[{"name":"a","memory":16}]})", "image"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16},{"name":"a","image":"${IMAGE}","memory":16}]})",
       "duplicate"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"linuxParameters":{"capabilities":{"add":["NOT_A_CAP"]}}}]})",
       "NOT_A_CAP"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"ulimits":[{"name":"nofile","softLimit":10,"hardLimit":5}]}]})",
       "ulimits"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"ulimits":[{"name":"bogus","softLimit":1,"hardLimit":1}]}]})",
       "bogus"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"dependsOn":[{"containerName":"ghost","condition":"START"}]}]})",
       "ghost"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"dependsOn":[{"containerName":"b","condition":"START"}]},{"name":"b","image":"${IMAGE}","memory":16,"dependsOn":[{"containerName":"a","condition":"START"}]}]})",
       "cycle"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":5}]})",
       "memory"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"portMappings":[{"containerPort":70000}]}]})",
       "containerPort"},
      {R"({"family":"f","containerDefinitions":[{"name":"a","image":"${IMAGE}","memory":16,"portMappings":[{"containerPort":80,"hostPort":-1}]}]})",
       "hostPort"},
  };
  std::string eleven = R"({"family":"f","containerDefinitions":[)";
  for (int i = 0; i < 11; ++i) {
    eleven +=
        fmt::format(R"({}{{"name":"c{}","image":"${{IMAGE}}","memory":16}})", i ? "," : "", i);
  }
  eleven += "]}";
  std::vector<Case> all(std::begin(cases), std::end(cases));
  all.push_back({eleven.c_str(), "10"});
  for (const auto& c : all) {
    auto run = this->run(c.definition);
    EXPECT_EQ(run.result.exit_code, 2) << c.definition << "\n" << run.describe();
    EXPECT_NE(run.result.err.find(c.message), std::string::npos)
        << "expected \"" << c.message << "\" in: " << run.result.err;
    EXPECT_TRUE(run.states.empty()) << c.definition;
  }
  EXPECT_EQ(ctr({"containers", "ls", "-q"}).out, "");
}

TEST_F(RunTaskTest, RestartPolicyRestartsAContainerThatRanLongEnough) {
  // ECS's minimum restartAttemptPeriod is 60 s: the container must run that long before an exit
  // restarts it. The second run (a marker file in a task-scoped tmpfs would not survive; the
  // restart count comes from the state line) exits 0, which is ignored.
  auto run = this->run(R"({
    "family": "restart",
    "containerDefinitions": [{"name": "app", "image": "${IMAGE}", "memory": 16,
      "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
      "command": ["sh", "-c", "if [ -e /tmp/ran-once ]; then echo second-run; exit 0; fi; touch /tmp/ran-once; sleep 61; echo first-run; exit 9"]}]
  })");
  EXPECT_EQ(run.result.exit_code, 0) << run.describe();
  EXPECT_EQ(run.output("app"), "first-run\nsecond-run\n");
  bool restarted = false;
  for (const auto& s : run.statesOf("app")) {
    restarted |= s.contains("reason") &&
                 std::string(s.at("reason").as_string()).find("restarted after exit code 9") !=
                     std::string::npos;
  }
  EXPECT_TRUE(restarted) << run.describe();
}

}  // namespace
