// The task endpoints as a container sees them, through `ecs-node-agent run`: it reads its own
// task metadata and stats at $ECS_CONTAINER_METADATA_URI_V4 and its task-role credentials at
// 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, through the network layer's routing.
// The host's credential chain is given as environment variables: nothing asks a real IMDS.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/agent_process.h"
#include "tests/support/harness_env.h"

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::BackgroundProcess;
using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using namespace std::chrono_literals;

class RunEndpointsFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace("endpoints");
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
            "ECS_CONTAINERD_NAMESPACE=" + ns_, "ECS_LOGLEVEL=warn",
            "ECS_DATADIR=" + data_dir_.string(), "ECS_BRIDGE_NAME=ecs-test-br1",
            "ECS_BRIDGE_SUBNET=172.31.251.0/24",
            "ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_),
            "ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_),
            "ECS_CLUSTER=endpoints-test", "AWS_REGION=eu-west-1",
            // The host's credentials, as a developer's shell has them.
            "AWS_ACCESS_KEY_ID=AKIDHOSTCHAINTEST", "AWS_SECRET_ACCESS_KEY=host-secret",
            "AWS_SESSION_TOKEN=host-token", "AWS_EC2_METADATA_DISABLED=true"};
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
};

class RunEndpointsTest : public RunEndpointsFixture,
                         public ::testing::WithParamInterface<std::string> {};

TEST_P(RunEndpointsTest, ContainerReadsItsOwnMetadataStatsAndCredentials) {
  const std::string mode = GetParam();
  // The task is RUNNING once the agent has seen the container start, a moment after the
  // container itself has, and its stats exist once the sampler has read them: the container
  // polls for each (30 s at most) before it prints. Each document on a line of its own, after a
  // marker, so that the test can tell them apart.
  const std::string script =
      "get() { busybox timeout 5 wget -qO- \"$1\"; }; "
      "until_has() { for i in $(seq 300); do get \"$1\" | grep -q \"$2\" && return; sleep 0.1; "
      "done; }; "
      "uri=$ECS_CONTAINER_METADATA_URI_V4; "
      // The task's own status comes before its containers' in the document.
      "until_has $uri/task '\"KnownStatus\":\"RUNNING\",\"Containers\"'; "
      "echo task=$(get $uri/task); "
      "echo container=$(get $uri); "
      "until_has $uri/stats cpu_stats; "
      "echo stats=$(get $uri/stats); "
      "echo creds=$(get http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)";
  json::object definition{
      {"family", "whoami"},
      {"networkMode", mode},
      {"taskRoleArn", "arn:aws:iam::123456789012:role/app"},
      {"containerDefinitions",
       json::array{json::object{{"name", "app"},
                                {"image", harnessEnv().registry() + "/test/busybox:oci"},
                                {"memory", 32},
                                {"command", json::array{"sh", "-c", script}}}}}};
  auto path = data_dir_ / "taskdef.json";
  std::ofstream(path) << json::serialize(definition);
  BackgroundProcess run({agent_, "run", path.string(), "--output", "json"}, agentEnv(),
                        data_dir_.string());
  ASSERT_EQ(run.wait(180s), 0) << run.out() << run.err();

  std::map<std::string, json::object> documents;
  std::string task_arn;
  for (const auto& line : run.jsonLines()) {
    if (line.at("type") == "state" && task_arn.empty()) task_arn = line.at("taskArn").as_string();
    if (line.at("type") != "log" || line.at("stream") != "stdout") continue;
    std::string text(line.at("log").as_string());
    auto eq = text.find('=');
    boost::system::error_code ec;
    auto value = json::parse(text.substr(eq + 1), ec);
    ASSERT_FALSE(ec) << text;
    documents[text.substr(0, eq)] = value.as_object();
  }
  ASSERT_EQ(documents.size(), 4u) << run.out();

  const auto& task = documents["task"];
  EXPECT_EQ(task.at("TaskARN").as_string(), task_arn);
  EXPECT_TRUE(std::regex_match(
      task_arn, std::regex(R"(arn:aws:ecs:eu-west-1:\d{12}:task/endpoints-test/[0-9a-f]{32})")))
      << task_arn;
  EXPECT_EQ(task.at("Family").as_string(), "whoami");
  EXPECT_EQ(task.at("KnownStatus").as_string(), "RUNNING");
  EXPECT_EQ(task.at("Containers").as_array().at(0).at("Name").as_string(), "app");

  const auto& container = documents["container"];
  EXPECT_EQ(container.at("Name").as_string(), "app");
  const auto& network = container.at("Networks").as_array().at(0).as_object();
  EXPECT_EQ(network.at("NetworkMode").as_string(), mode);
  EXPECT_TRUE(network.at("IPv4Addresses").as_array().at(0).as_string().starts_with("172.31.251."));

  const auto& stats = documents["stats"];
  EXPECT_TRUE(stats.contains("cpu_stats")) << json::serialize(stats);
  EXPECT_TRUE(stats.contains("memory_stats")) << json::serialize(stats);
  EXPECT_GT(stats.at("memory_stats").at("usage").to_number<double>(), 0);

  const auto& creds = documents["creds"];
  EXPECT_EQ(creds.at("AccessKeyId").as_string(), "AKIDHOSTCHAINTEST");
  EXPECT_EQ(creds.at("SecretAccessKey").as_string(), "host-secret");
  EXPECT_EQ(creds.at("Token").as_string(), "host-token");
  EXPECT_EQ(creds.at("RoleArn").as_string(), "arn:aws:iam::123456789012:role/app");
  // The secret never reaches the agent's own output.
  EXPECT_EQ(run.err().find("host-secret"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, RunEndpointsTest, ::testing::Values("bridge", "awsvpc"));

// Debian's AWS clients, unchanged, resolve a running task's credentials from its endpoint; the
// wrong requests get the real agent's statuses; a client over the rate limit gets 429.
TEST_F(RunEndpointsFixture, RealAwsClientsResolveTheRunningTasksCredentials) {
  json::object definition{
      {"family", "clients"},
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
  BackgroundProcess run({agent_, "run", path.string(), "--output", "json"}, agentEnv(),
                        data_dir_.string());
  auto line = run.waitForJson(
      [](const json::object& l) {
        return l.at("type") == "log" && l.at("log").as_string().starts_with("uri=");
      },
      120s);
  ASSERT_TRUE(line) << run.out() << run.err();
  const std::string relative = std::string(line->at("log").as_string()).substr(4);
  ASSERT_TRUE(relative.starts_with("/v2/credentials/")) << relative;
  const std::string base = "http://127.0.0.1:" + std::to_string(endpoint_port_);
  // Only the endpoint: no other source the clients could fall back to.
  const std::vector<std::string> client_env = {
      "AWS_CONTAINER_CREDENTIALS_FULL_URI=" + base + relative, "AWS_EC2_METADATA_DISABLED=true",
      "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONFIG_FILE=/nonexistent",
      "AWS_DEFAULT_REGION=eu-west-1"};

  auto boto3 = runCommand({"/usr/bin/python3", "-c",
                           "import boto3\n"
                           "s = boto3.Session()\n"
                           "c = s.get_credentials()\n"
                           "f = c.get_frozen_credentials()\n"
                           "print(c.method, f.access_key, f.secret_key, f.token)\n"},
                          client_env);
  EXPECT_EQ(boto3.out, "container-role AKIDHOSTCHAINTEST host-secret host-token\n")
      << boto3.describe();
  auto cli = runCommand({"/usr/bin/aws", "configure", "export-credentials", "--format", "env"},
                        client_env);
  EXPECT_NE(cli.out.find("AWS_ACCESS_KEY_ID=AKIDHOSTCHAINTEST"), std::string::npos)
      << cli.describe();
  EXPECT_NE(cli.out.find("AWS_SESSION_TOKEN=host-token"), std::string::npos) << cli.describe();

  auto status = [&](const std::string& target) {
    return runCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base + target}).out;
  };
  EXPECT_EQ(status("/v2/credentials/not-a-known-id"), "400");
  EXPECT_EQ(status("/v4/not-a-container/task"), "404");
  EXPECT_EQ(status("/no/such/route"), "404");
  auto oversized = runCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                               "X-Padding: " + std::string(40000, 'x'), base + relative});
  EXPECT_EQ(oversized.out, "431");

  // 100 requests on one connection, far above 40/s with a burst of 60: some are refused.
  std::vector<std::string> burst = {"curl", "-s", "-w", "%{http_code}\\n"};
  for (int i = 0; i < 100; ++i) burst.insert(burst.end(), {"-o", "/dev/null", base + relative});
  auto codes = runCommand(burst).out;
  size_t ok = 0, throttled = 0;
  std::istringstream lines(codes);
  for (std::string code; std::getline(lines, code);) {
    ok += code == "200";
    throttled += code == "429";
  }
  EXPECT_GE(ok, 30u) << codes;  // the requests above took part of the burst
  EXPECT_GT(throttled, 0u) << codes;
  EXPECT_EQ(ok + throttled, 100u) << codes;

  EXPECT_NE(run.stop(SIGTERM), -1);
}

// ECS_ENABLE_CONTAINER_METADATA=true: the container finds its metadata file where
// ECS_CONTAINER_METADATA_FILE says, INITIAL at first and READY once it runs; the host's copy goes
// with the task.
TEST_F(RunEndpointsFixture, ContainerMetadataFileBecomesReady) {
  json::object definition{
      {"family", "metafile"},
      {"containerDefinitions",
       json::array{json::object{
           {"name", "app"},
           {"image", harnessEnv().registry() + "/test/busybox:oci"},
           {"memory", 32},
           {"command",
            json::array{"sh", "-c",
                        "for i in $(seq 50); do grep -q READY $ECS_CONTAINER_METADATA_FILE && "
                        "break; sleep 0.1; done; echo file=$ECS_CONTAINER_METADATA_FILE; "
                        "echo json=$(cat $ECS_CONTAINER_METADATA_FILE)"}}}}}};
  auto path = data_dir_ / "taskdef.json";
  std::ofstream(path) << json::serialize(definition);
  auto env = agentEnv();
  env.push_back("ECS_ENABLE_CONTAINER_METADATA=true");
  BackgroundProcess run({agent_, "run", path.string(), "--output", "json"}, env,
                        data_dir_.string());
  ASSERT_EQ(run.wait(180s), 0) << run.out() << run.err();
  std::string file, body;
  for (const auto& line : run.jsonLines()) {
    if (line.at("type") != "log") continue;
    std::string text(line.at("log").as_string());
    if (text.starts_with("file=")) file = text.substr(5);
    if (text.starts_with("json=")) body = text.substr(5);
  }
  EXPECT_TRUE(std::regex_match(
      file, std::regex(R"(/opt/ecs/metadata/[0-9a-f-]{36}/ecs-container-metadata\.json)")))
      << file;
  boost::system::error_code ec;
  auto value = json::parse(body, ec);
  ASSERT_FALSE(ec) << body;
  const auto& metadata = value.as_object();
  EXPECT_EQ(metadata.at("MetadataFileStatus").as_string(), "READY");
  EXPECT_EQ(metadata.at("ContainerName").as_string(), "app");
  EXPECT_EQ(metadata.at("TaskDefinitionFamily").as_string(), "metafile");
  EXPECT_TRUE(metadata.at("TaskARN").as_string().starts_with("arn:aws:ecs:eu-west-1:"));
  EXPECT_FALSE(fs::exists(data_dir_ / "metadata") && !fs::is_empty(data_dir_ / "metadata"))
      << "the host's metadata files outlived the task";
}

}  // namespace
