// Host-level network housekeeping (netns/host_network.h) on this machine's real kernel, as root:
// sweeping and tearing down from the options alone must create nothing — no bridge, chain, rule,
// store or directory — on a host where the agent has no bridge, and must leave alone a link of
// the bridge's name that is not a bridge. Needs no harness peer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "netns/host_network.h"
#include "tests/support/harness_env.h"

namespace ecs::netns {
namespace {

namespace fs = std::filesystem;
using ecs::testing::runCommand;

// Above the kernel's largest pid_max (2^22): no process ever has it, so its owner is dead.
constexpr int kNeverAPid = 4194305;

// The agent's part of iptables-save: its chains and every rule that names them or carries a tag.
std::string agentRules() {
  std::string out;
  std::istringstream in(runCommand({"iptables-save"}).out);
  for (std::string line; std::getline(in, line);) {
    if (line.find("ECS-") != std::string::npos || line.find("ecs-") != std::string::npos) {
      out += line + "\n";
    }
  }
  return out;
}

bool linkExists(const std::string& name) {
  return runCommand({"ip", "link", "show", name}).ok();
}

class NetnsHostNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char tmpl[] = "/tmp/netns-host-network-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_ = {.bridge_name = "ecs-test-nobr", .state_dir = (dir_ / "netns").string()};
    ASSERT_FALSE(linkExists(options_.bridge_name));
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  fs::path dir_;
  HostNetworkOptions options_;
};

TEST_F(NetnsHostNetworkTest, TeardownWithoutABridgeSucceedsAndCreatesNothing) {
  const std::string rules_before = agentRules();
  auto torn = teardownHostNetwork(options_);
  ASSERT_TRUE(torn) << torn.error().message;
  EXPECT_FALSE(linkExists(options_.bridge_name));
  EXPECT_FALSE(fs::exists(options_.state_dir));
  EXPECT_EQ(agentRules(), rules_before);
  // Again: nothing to do is still success.
  EXPECT_TRUE(teardownHostNetwork(options_));
}

TEST_F(NetnsHostNetworkTest, SweepWithoutStoresCreatesNothing) {
  const std::string rules_before = agentRules();
  EXPECT_THAT(sweepDeadAgents(options_), ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(options_.state_dir));
  EXPECT_FALSE(linkExists(options_.bridge_name));
  EXPECT_EQ(agentRules(), rules_before);
}

TEST_F(NetnsHostNetworkTest, SweepFreesADeadAgentsAddressesWithoutSettingUpTheBridge) {
  fs::create_directories(options_.state_dir);
  const fs::path ipam = fs::path(options_.state_dir) / "ipam.json";
  std::ofstream(ipam) << fmt::format(
      R"({{"owners":{{"ntdead":{{"pid":{},"start_time":1,"addresses":{{"app":"10.9.0.2"}}}}}}}})",
      kNeverAPid);
  EXPECT_THAT(sweepDeadAgents(options_), ::testing::ElementsAre("ntdead"));
  std::ifstream in(ipam);
  const std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content.find("ntdead"), std::string::npos) << content;
  EXPECT_FALSE(linkExists(options_.bridge_name));
  EXPECT_FALSE(fs::exists(fs::path(options_.state_dir) / "host_ports.json"));
}

TEST_F(NetnsHostNetworkTest, ALinkThatIsNotABridgeIsLeftAlone) {
  ASSERT_TRUE(runCommand({"ip", "link", "add", options_.bridge_name, "type", "veth", "peer", "name",
                          options_.bridge_name + "p"})
                  .ok());
  auto removed = removeBridge(options_.bridge_name);
  EXPECT_FALSE(removed);
  if (!removed) {
    EXPECT_THAT(removed.error().message, ::testing::HasSubstr("not a bridge"));
  }
  EXPECT_TRUE(linkExists(options_.bridge_name));
  EXPECT_TRUE(runCommand({"ip", "link", "del", options_.bridge_name}).ok());  // and its peer
}

}  // namespace
}  // namespace ecs::netns
