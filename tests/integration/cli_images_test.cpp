// The ecs-node-agent binary as an operator uses it: `images pull|ls|rm`, with the proof that an
// image it pulled is really unpacked: `ctr run` starts it.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/harness_env.h"

namespace {

using ecs::testing::harnessEnv;
using ecs::testing::runCommand;
using ecs::testing::RunResult;

class CliImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  void TearDown() override {
    ecs::testing::expectNoLeaks(ns_);
    // What a failed test left is removed, so the run's final leak check stays meaningful.
    ecs::testing::removeAllImages(ns_);
  }

  RunResult agent(std::vector<std::string> args) {
    args.insert(args.begin(), agent_);
    return runCommand(args,
                      {"ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
                       "ECS_CONTAINERD_NAMESPACE=" + ns_, "ECS_LOGLEVEL=warn"},
                      std::chrono::seconds(120));
  }

  RunResult ctr(std::vector<std::string> args) {
    args.insert(args.begin(), {"ctr", "-a", harnessEnv().containerdAddress(), "-n", ns_});
    return runCommand(args, {}, std::chrono::seconds(60));
  }

  std::string agent_;
  std::string ns_;
};

TEST_F(CliImagesTest, PulledImageRunsWithCtr) {
  const std::string busybox = harnessEnv().registry() + "/test/busybox:oci";
  const std::string multiarch = harnessEnv().registry() + "/test/multiarch:latest";
  auto pulled = agent({"images", "pull", busybox, multiarch});
  ASSERT_TRUE(pulled.ok()) << pulled.describe();
  EXPECT_NE(pulled.out.find(busybox + ": pulled " + harnessEnv().busyboxOciDigest()),
            std::string::npos)
      << pulled.out;

  auto listed = agent({"images", "ls", "-q"});
  ASSERT_TRUE(listed.ok()) << listed.describe();
  EXPECT_EQ(listed.out, busybox + "\n" + multiarch + "\n");

  auto ran = ctr({"run", "--rm", busybox, ns_ + "-busybox", "cat", "/etc/ecs-test-image"});
  ASSERT_TRUE(ran.ok()) << ran.describe();
  EXPECT_EQ(ran.out, "busybox\n");
  // The index resolved to the host's platform, and the layer on top of busybox is there.
  ran = ctr({"run", "--rm", multiarch, ns_ + "-multiarch", "cat", "/platform"});
  ASSERT_TRUE(ran.ok()) << ran.describe();
  EXPECT_EQ(ran.out.substr(0, 5), "amd64");

  auto removed = agent({"images", "rm", busybox, multiarch});
  ASSERT_TRUE(removed.ok()) << removed.describe();
  listed = agent({"images", "ls", "-q"});
  EXPECT_EQ(listed.out, "");
}

TEST_F(CliImagesTest, LayeredImageWhiteoutsApply) {
  const std::string layered = harnessEnv().registry() + "/test/layered:oci";
  ASSERT_TRUE(agent({"images", "pull", layered}).ok());
  auto ran =
      ctr({"run", "--rm", layered, ns_ + "-layered", "sh", "-c",
           "cat /etc/ecs-test-image /layer2 /layer3; test -e /layer2-doomed && echo doomed; true"});
  ASSERT_TRUE(ran.ok()) << ran.describe();
  // Every layer applied in order, and the top layer's whiteout removed /layer2-doomed.
  EXPECT_EQ(ran.out, "busybox\nlayer2\nlayer3\n");
  ASSERT_TRUE(agent({"images", "rm", layered}).ok());
}

TEST_F(CliImagesTest, FailuresExitNonZeroWithAReason) {
  auto bad_ref = agent({"images", "pull", "UPPER/case:tag"});
  EXPECT_EQ(bad_ref.exit_code, 1);
  EXPECT_NE(bad_ref.err.find("UPPER/case:tag"), std::string::npos) << bad_ref.err;

  const std::string missing = harnessEnv().registry() + "/test/busybox:missing";
  auto unknown = agent({"images", "pull", missing});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find(missing), std::string::npos) << unknown.err;

  auto not_there = agent({"images", "rm", missing});
  EXPECT_EQ(not_there.exit_code, 1);
  EXPECT_NE(not_there.err.find("not found"), std::string::npos) << not_there.err;

  EXPECT_EQ(agent({"images"}).exit_code, 2);
  EXPECT_EQ(agent({"images", "frobnicate"}).exit_code, 2);
  EXPECT_EQ(agent({"no-such-command"}).exit_code, 2);

  auto no_containerd =
      runCommand({agent_, "images", "ls"},
                 {"ECS_CONTAINERD_ADDRESS=/nonexistent/containerd.sock", "ECS_LOGLEVEL=warn"});
  EXPECT_EQ(no_containerd.exit_code, 1);
  EXPECT_NE(no_containerd.err.find("/nonexistent/containerd.sock"), std::string::npos)
      << no_containerd.err;
}

TEST_F(CliImagesTest, PrivateRegistryThroughEngineAuth) {
  const auto& env = harnessEnv();
  const std::string image = env.basicRegistry() + "/test/busybox:docker";
  auto anonymous = agent({"images", "pull", image});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_NE(anonymous.err.find(env.basicRegistry()), std::string::npos) << anonymous.err;

  std::vector<std::string> argv = {agent_, "images", "pull", image};
  auto pulled = runCommand(
      argv, {"ECS_CONTAINERD_ADDRESS=" + env.containerdAddress(), "ECS_CONTAINERD_NAMESPACE=" + ns_,
             "ECS_ENGINE_AUTH_TYPE=docker",
             "ECS_ENGINE_AUTH_DATA={\"" + env.basicRegistry() + "\":{\"username\":\"" +
                 env.registryUser() + "\",\"password\":\"" + env.registryPassword() + "\"}}"});
  ASSERT_TRUE(pulled.ok()) << pulled.describe();
  EXPECT_EQ(pulled.err.find(env.registryPassword()), std::string::npos) << "password in the log";
  ASSERT_TRUE(agent({"images", "rm", image}).ok());
}

}  // namespace
