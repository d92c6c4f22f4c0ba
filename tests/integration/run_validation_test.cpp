// `ecs-node-agent run` on hostile task definitions: each is refused before anything happens on
// the host (exit status 2, the field named on stderr, no container, no host directory), and the
// message stays small however large the bad value is.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/harness_env.h"

namespace {

namespace fs = std::filesystem;
using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using ecs::testing::RunResult;

// A message quotes at most 200 characters of a value; with the field's path and the wording, one
// problem stays well under this.
constexpr size_t kMaxErrorBytes = 2048;

struct Case {
  std::string container_fields;  // JSON members added to the one container
  std::string field;             // expected on stderr
  std::string task_fields = "";  // JSON members added to the task (a later "volumes" wins)
};

class RunValidationTest : public ::testing::Test {
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
    EXPECT_EQ(ctr({"containers", "ls", "-q"}).out, "") << "a refused task made a container";
    ecs::testing::expectNoLeaks(ns_);
    // Only the task definitions this test wrote: the agent made nothing here.
    for (const auto& entry : fs::directory_iterator(data_dir_)) {
      EXPECT_TRUE(entry.path().filename().string().starts_with("taskdef-"))
          << "the agent created " << entry.path();
    }
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  RunResult ctr(std::vector<std::string> args) {
    args.insert(args.begin(), {"ctr", "-a", harnessEnv().containerdAddress(), "-n", ns_});
    return runCommand(args, {}, std::chrono::seconds(60));
  }

  // A task of one container (`container_fields` added to it) with the harness's image.
  std::string definition(const Case& c) {
    std::string image = harnessEnv().registry() + "/test/busybox:oci";
    return fmt::format(
        R"({{"family": "hostile", "volumes": [{{"name": "scratch"}}], {}
            "containerDefinitions": [{{"name": "a", "image": "{}", "memory": 32, {}
                                       "command": ["true"]}}]}})",
        c.task_fields.empty() ? "" : c.task_fields + ",", image,
        c.container_fields.empty() ? "" : c.container_fields + ",");
  }

  RunResult run(const std::string& text) {
    auto path = data_dir_ / fmt::format("taskdef-{}.json", counter_++);
    std::ofstream(path, std::ios::binary) << text;
    return runCommand({agent_, "run", path.string(), "--output", "json"},
                      {"ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
                       "ECS_CONTAINERD_NAMESPACE=" + ns_, "ECS_LOGLEVEL=warn",
                       "ECS_DATADIR=" + data_dir_.string(), "ECS_BRIDGE_NAME=ecs-test-br2",
                       "ECS_BRIDGE_SUBNET=172.31.252.0/24",
                       "ECS_TASK_ENDPOINT_PORT=" + std::to_string(ecs::testing::unusedPort()),
                       "ECS_INTROSPECTION_PORT=" + std::to_string(ecs::testing::unusedPort())},
                      std::chrono::seconds(60));
  }

  void expectRefused(const std::vector<Case>& cases) {
    for (const Case& c : cases) {
      std::string text = definition(c);
      RunResult result = run(text);
      std::string shown = text.size() > 300 ? text.substr(0, 300) + "..." : text;
      EXPECT_EQ(result.exit_code, 2) << shown << "\n" << result.describe().substr(0, 2000);
      EXPECT_NE(result.err.find(c.field), std::string::npos)
          << "expected \"" << c.field << "\" in: " << result.err.substr(0, 2000);
      EXPECT_LT(result.err.size(), kMaxErrorBytes) << shown;
      EXPECT_EQ(result.out, "") << "no state line: nothing started";
    }
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int counter_ = 0;
};

const std::string kContainer = "containerDefinitions[0] (name \"a\")";

TEST_F(RunValidationTest, MountTargetsTheRuntimeOwns) {
  std::vector<Case> cases;
  for (std::string path : {"/", "/proc", "/proc/sys", "//proc/./sys", "/sys", "/sys/fs/cgroup",
                           "relative/path", "/data/../etc"}) {
    cases.push_back(
        {fmt::format(R"("mountPoints": [{{"sourceVolume": "scratch", "containerPath": "{}"}}])",
                     path),
         kContainer + ".mountPoints[0].containerPath: \"" + path + "\""});
    cases.push_back(
        {fmt::format(R"("linuxParameters": {{"tmpfs": [{{"containerPath": "{}", "size": 8}}]}})",
                     path),
         kContainer + ".linuxParameters.tmpfs[0].containerPath: \"" + path + "\""});
  }
  cases.push_back(
      {R"("linuxParameters": {"devices": [{"hostPath": "/dev/null", "containerPath": "/proc/x"}]})",
       kContainer + ".linuxParameters.devices[0].containerPath: \"/proc/x\""});
  expectRefused(cases);
}

TEST_F(RunValidationTest, NulCharactersAndNoHostDirectory) {
  // The part of sourcePath before the NUL is what a C string would see: it must not be created.
  fs::path truncated = data_dir_ / "nul-source";
  fs::path parent_escape = data_dir_ / "escape";
  expectRefused({
      {R"("environment": [{"name": "A\u0000B", "value": "1"}])",
       "containerDefinitions[0].environment[0].name: contains a NUL character"},
      {R"("environment": [{"name": "A", "value": "1\u00002"}])",
       "containerDefinitions[0].environment[0].value: contains a NUL character"},
      {R"("entryPoint": ["/bin/sh\u0000"])",
       "containerDefinitions[0].entryPoint[0]: contains a NUL character"},
      {R"("dockerLabels": {"k": "v\u0000"})",
       "containerDefinitions[0].dockerLabels.k: contains a NUL character"},
      {R"("mountPoints": [{"sourceVolume": "host", "containerPath": "/data"}])",
       "volumes[1].host.sourcePath: contains a NUL character",
       fmt::format(R"("volumes": [{{"name": "scratch"}},
                                  {{"name": "host", "host": {{"sourcePath": "{}\u0000tail"}}}}])",
                   truncated.string())},
      {R"("mountPoints": [{"sourceVolume": "host", "containerPath": "/data"}])",
       "volumes[1] (name \"host\").host.sourcePath",
       fmt::format(R"("volumes": [{{"name": "scratch"}},
                                  {{"name": "host", "host": {{"sourcePath": "{}/../escape"}}}}])",
                   (data_dir_ / "x").string())},
  });
  EXPECT_FALSE(fs::exists(truncated)) << "the agent created the NUL-truncated sourcePath";
  EXPECT_FALSE(fs::exists(parent_escape)) << "the agent created the sourcePath's target";
}

TEST_F(RunValidationTest, LineBreaksInNamesAndAddresses) {
  expectRefused({
      {R"("hostname": "web\n10.0.0.1 evil")", kContainer + ".hostname: \"web\\n10.0.0.1 evil\""},
      {R"("extraHosts": [{"hostname": "db\nevil", "ipAddress": "172.31.0.1"}])",
       kContainer + ".extraHosts[0].hostname"},
      {R"("extraHosts": [{"hostname": "db", "ipAddress": "172.31.0.1\n172.31.0.2 evil"}])",
       kContainer + ".extraHosts[0].ipAddress"},
      {R"("dnsSearchDomains": ["example.com\nnameserver 172.31.0.9"])",
       kContainer + ".dnsSearchDomains[0]"},
      {R"("dnsServers": ["172.31.0.9\nsearch evil"])", kContainer + ".dnsServers[0]"},
      {R"("dockerLabels": {"a\nb": "v"})", kContainer + ".dockerLabels: label name \"a\\nb\""},
      {R"("dockerLabels": {"k": "v\r\nX: y"})", kContainer + ".dockerLabels.k"},
      {R"("environment": [{"name": "A\nB", "value": "1"}])", kContainer + ".environment[0].name"},
  });
}

TEST_F(RunValidationTest, OversizedHostnames) {
  expectRefused({
      {fmt::format(R"("hostname": "{}")", std::string(300, 'h')),
       kContainer + ".hostname: \"" + std::string(200, 'h') + "...\" is 300 characters long"},
      {fmt::format(R"("hostname": "{}.example")", std::string(64, 'h')), kContainer + ".hostname"},
      {fmt::format(R"("extraHosts": [{{"hostname": "{}", "ipAddress": "172.31.0.1"}}])",
                   std::string(254, 'e')),
       kContainer + ".extraHosts[0].hostname"},
  });
}

TEST_F(RunValidationTest, PortMappingCountsAndRanges) {
  std::string many;
  for (int i = 0; i < 10000; ++i) {
    many += fmt::format(R"({}{{"containerPort": {}}})", i ? "," : "", 1 + i % 65535);
  }
  expectRefused({
      {R"("portMappings": [)" + many + "]",
       kContainer + ".portMappings: 10000 mappings is more than the limit of 100"},
      {R"("portMappings": [{"containerPort": 80, "hostPort": 65536}])",
       kContainer + ".portMappings[0].hostPort: 65536 is outside 0..65535"},
      {R"("portMappings": [{"containerPort": 0}])",
       kContainer + ".portMappings[0].containerPort: 0 is outside 1..65535"},
      {R"("portMappings": [{"containerPort": 99999999999}])",
       "containerDefinitions[0].portMappings[0].containerPort: 99999999999 is out of range"},
      {R"("portMappings": [{"containerPortRange": "1-70000"}])",
       kContainer + ".portMappings[0].containerPortRange: \"1-70000\" is outside 1..65535"},
      {R"("portMappings": [{"containerPortRange": "9000-"}])",
       kContainer + ".portMappings[0].containerPortRange: \"9000-\" is not a port range"},
  });
}

// A megabyte of bad value costs a couple of hundred bytes of message, escaped.
TEST_F(RunValidationTest, HugeValuesGiveSmallErrors) {
  const std::string huge(1 << 20, 'x');
  expectRefused({
      {R"("hostname": ")" + huge + "\"", kContainer + ".hostname: \"xxx"},
      {R"("mountPoints": [{"sourceVolume": "scratch", "containerPath": ")" + huge + "\"}]",
       kContainer + ".mountPoints[0].containerPath: \"xxx"},
      {R"("environment": [{"name": ")" + huge + "\\n\", \"value\": \"1\"}]",
       kContainer + ".environment[0].name: \"xxx"},
      {R"("dockerSecurityOptions": [")" + huge + "\"]", kContainer + ".dockerSecurityOptions[0]"},
      {"", "networkMode: \"xxx", R"("networkMode": ")" + huge + "\""},
  });
}

}  // namespace
