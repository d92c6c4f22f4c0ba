// The pure parts of netns/: kernel object names and how they map back to tasks, the iptables
// rule text a bridge and a port mapping install, iptables-restore batches, and reading tags back
// from iptables-save output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "netns/iptables.h"
#include "netns/network_names.h"
#include "netns/network_rules.h"

namespace ecs::netns {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(NetnsNames, NamesCarryTheTaskAndFitTheKernelLimits) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(containerNamespaceName(id, 2), "ecs-" + id + "-2");
  EXPECT_EQ(taskNamespaceName(id), "ecs-" + id);
  const std::string veth = vethName(id, 2);
  EXPECT_EQ(veth.size(), 15u);  // IFNAMSIZ - 1
  EXPECT_TRUE(veth.starts_with("ecsv"));
  EXPECT_TRUE(veth.ends_with("002"));
  EXPECT_EQ(vethName(id, 2), veth);  // stable: a restarted agent finds it again
  EXPECT_NE(vethName(id, 3), veth);
  EXPECT_NE(vethName(id + "0", 2).substr(0, 12), veth.substr(0, 12));
  EXPECT_EQ(vethAlias(id, 2), "ecs-task:" + id + "/2");
  EXPECT_EQ(taskTag(id), "ecs-task:" + id);
  EXPECT_EQ(bridgeTag("ecs-br0"), "ecs-bridge:ecs-br0");
}

TEST(NetnsNames, MapsNamesBackToTasks) {
  EXPECT_EQ(taskOfNamespace("ecs-abc-0"), "abc");
  EXPECT_EQ(taskOfNamespace("ecs-abc-12"), "abc");
  EXPECT_EQ(taskOfNamespace("ecs-abc"), "abc");
  EXPECT_EQ(taskOfNamespace("other"), std::nullopt);
  EXPECT_EQ(taskOfNamespace("ecs-"), std::nullopt);
  EXPECT_EQ(taskOfVethAlias("ecs-task:abc/3"), "abc");
  EXPECT_EQ(taskOfVethAlias("ecs-task:abc"), std::nullopt);
  EXPECT_EQ(taskOfVethAlias("something else"), std::nullopt);
}

TEST(NetnsNames, RefusesTaskIdsThatCannotNameObjects) {
  EXPECT_TRUE(validateTaskId("0123456789abcdef0123456789abcdef"));
  EXPECT_TRUE(validateTaskId("task-1_a.b"));
  for (const char* bad : {"", "a b", "a/b", "a\"b", "a\nb"}) {
    auto valid = validateTaskId(bad);
    ASSERT_FALSE(valid) << bad;
    EXPECT_EQ(valid.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(validateTaskId(std::string(65, 'a')));
}

TEST(NetnsRules, BaseRulesJumpIntoOurChainsAndForwardComesFirst) {
  const auto rules = baseRules();
  ASSERT_FALSE(rules.empty());
  bool forward = false;
  for (const auto& rule : rules) {
    EXPECT_THAT(rule.spec, HasSubstr("-m comment --comment ecs-base"));
    EXPECT_THAT(rule.spec, HasSubstr("-j ECS-"));
    if (rule.chain == "FORWARD") {
      forward = true;
      EXPECT_TRUE(rule.insert_first);
      EXPECT_EQ(rule.table, "filter");
    }
  }
  EXPECT_TRUE(forward);
  IptablesBatch batch;
  for (const auto& rule : rules) batch.add(rule);
  const std::string text = batch.render();
  EXPECT_THAT(text, HasSubstr("-I FORWARD 1 -m comment --comment ecs-base -j ECS-FORWARD\n"));
  EXPECT_THAT(text, HasSubstr("-A ECS-OUTPUT -m comment --comment ecs-base -m addrtype "
                              "--dst-type LOCAL -j ECS-HOSTPORTS\n"));
}

TEST(NetnsRules, BridgeRules) {
  const auto rules = bridgeRules({.bridge = "ecs-br0",
                                  .subnet = "172.31.224.0/20",
                                  .endpoint_port = 51679,
                                  .host_network_endpoint = false});
  std::vector<std::string> lines;
  for (const auto& rule : rules) {
    EXPECT_THAT(rule.spec, HasSubstr("--comment ecs-bridge:ecs-br0"));
    lines.push_back(rule.table + " " + rule.chain + " " + rule.spec);
  }
  const std::string tag = "-m comment --comment ecs-bridge:ecs-br0";
  EXPECT_THAT(lines, ::testing::Contains("nat ECS-PREROUTING -i ecs-br0 -d 169.254.170.2/32 -p tcp "
                                         "-m tcp --dport 80 " +
                                         tag + " -j DNAT --to-destination 127.0.0.1:51679"));
  EXPECT_THAT(lines, ::testing::Contains("nat ECS-POSTROUTING -s 172.31.224.0/20 ! -o ecs-br0 " +
                                         tag + " -j MASQUERADE"));
  EXPECT_THAT(lines, ::testing::Contains("nat ECS-POSTROUTING -s 127.0.0.0/8 -o ecs-br0 " + tag +
                                         " -j MASQUERADE"));
  EXPECT_THAT(lines, ::testing::Contains(
                         "nat ECS-POSTROUTING -s 172.31.224.0/20 -d 172.31.224.0/20 -o ecs-br0 -m "
                         "conntrack --ctstate DNAT " +
                         tag + " -j MASQUERADE"));
  EXPECT_THAT(lines, ::testing::Contains("filter ECS-FORWARD -i ecs-br0 " + tag + " -j ACCEPT"));
  EXPECT_THAT(lines,
              ::testing::Contains("filter ECS-INPUT -i ecs-br0 -d 127.0.0.0/8 -m conntrack ! "
                                  "--ctstate RELATED,ESTABLISHED,DNAT " +
                                  tag + " -j DROP"));
  for (const auto& line : lines) EXPECT_THAT(line, ::testing::Not(HasSubstr("REDIRECT")));

  const auto host = bridgeRules({.bridge = "ecs-br0",
                                 .subnet = "172.31.224.0/20",
                                 .endpoint_port = 51679,
                                 .host_network_endpoint = true});
  ASSERT_EQ(host.size(), rules.size() + 1);
  EXPECT_EQ(host.back().chain, "ECS-OUTPUT");
  EXPECT_EQ(host.back().spec, "-d 169.254.170.2/32 -p tcp -m tcp --dport 80 " + tag +
                                  " -j REDIRECT --to-ports 51679");
}

TEST(NetnsRules, OneDnatPerHostPort) {
  const auto rules = portForwardRules(
      "t1", {{"tcp", 32768, "172.31.224.2", 80}, {"udp", 32769, "172.31.224.3", 53}});
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].table, "nat");
  EXPECT_EQ(rules[0].chain, "ECS-HOSTPORTS");
  EXPECT_EQ(rules[0].spec,
            "-p tcp -m tcp --dport 32768 -m comment --comment ecs-task:t1 -j DNAT "
            "--to-destination 172.31.224.2:80");
  EXPECT_EQ(rules[1].spec,
            "-p udp -m udp --dport 32769 -m comment --comment ecs-task:t1 -j DNAT "
            "--to-destination 172.31.224.3:53");
}

TEST(NetnsIptables, BatchOrdersDeclarationsDeletionsAdditionsPerTable) {
  IptablesBatch batch;
  EXPECT_TRUE(batch.empty());
  batch.add({"nat", "ECS-HOSTPORTS", "-j RETURN"});
  batch.deleteSaved("nat", "-A ECS-HOSTPORTS -p tcp -j RETURN");
  batch.declareChain("nat", "ECS-HOSTPORTS");
  batch.add({"filter", "FORWARD", "-j ECS-FORWARD", true});
  batch.deleteChain("nat", "ECS-OLD");
  EXPECT_EQ(batch.render(),
            "*nat\n"
            ":ECS-HOSTPORTS - [0:0]\n"
            "-D ECS-HOSTPORTS -p tcp -j RETURN\n"
            "-A ECS-HOSTPORTS -j RETURN\n"
            "-X ECS-OLD\n"
            "COMMIT\n"
            "*filter\n"
            "-I FORWARD 1 -j ECS-FORWARD\n"
            "COMMIT\n");
}

TEST(NetnsIptables, ReadsCommentsQuotedOrBare) {
  EXPECT_EQ(ruleComment("-A X -m comment --comment ecs-task:a -j DNAT"), "ecs-task:a");
  EXPECT_EQ(ruleComment("-A X -m comment --comment \"ecs-task:a\" -j DNAT"), "ecs-task:a");
  EXPECT_EQ(ruleComment("-A X -m comment --comment \"a \\\"b\\\" c\""), "a \"b\" c");
  EXPECT_EQ(ruleComment("-A X -j ACCEPT"), "");
}

TEST(NetnsIptables, SnapshotFindsChainsAndTaggedRules) {
  const auto snapshot = IptablesSnapshot::parse(
      "# Generated by iptables-save v1.8.9 (nf_tables)\n"
      "*nat\n"
      ":PREROUTING ACCEPT [0:0]\n"
      ":ECS-HOSTPORTS - [0:0]\n"
      "-A PREROUTING -m comment --comment ecs-base -j ECS-PREROUTING\n"
      "-A ECS-HOSTPORTS -p tcp -m tcp --dport 1 -m comment --comment \"ecs-task:a\" -j DNAT "
      "--to-destination 172.31.0.2:80\n"
      "-A ECS-HOSTPORTS -p tcp -m tcp --dport 2 -m comment --comment ecs-task:ab -j DNAT "
      "--to-destination 172.31.0.3:80\n"
      "COMMIT\n"
      "*filter\n"
      ":ECS-FORWARD - [0:0]\n"
      "-A FORWARD -j DROP\n"
      "COMMIT\n");
  EXPECT_TRUE(snapshot.hasChain("nat", "ECS-HOSTPORTS"));
  EXPECT_TRUE(snapshot.hasChain("filter", "ECS-FORWARD"));
  EXPECT_FALSE(snapshot.hasChain("filter", "ECS-HOSTPORTS"));
  const auto a = snapshot.tagged("ecs-task:a");
  ASSERT_EQ(a.size(), 1u);  // not ecs-task:ab
  EXPECT_EQ(a[0].table, "nat");
  EXPECT_THAT(a[0].text, HasSubstr("--dport 1 "));
  EXPECT_THAT(snapshot.tagsWithPrefix("ecs-task:"), ElementsAre("a", "ab"));
  IptablesBatch batch;
  batch.deleteSaved(a[0].table, a[0].text);
  EXPECT_THAT(batch.render(), HasSubstr("\n-D ECS-HOSTPORTS -p tcp -m tcp --dport 1 "));
}

}  // namespace
}  // namespace ecs::netns
