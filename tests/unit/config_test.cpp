#include "agent/config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace ecs::config {
namespace {

ConfigSources envOnly(std::map<std::string, std::string> env) {
  ConfigSources sources;
  sources.environment = std::move(env);
  sources.files = {};
  return sources;
}

TEST(ConfigTest, DefaultsMatchTheRealAgent) {
  auto config = load(envOnly({}));
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->containerd_address, "/run/containerd/containerd.sock");
  EXPECT_EQ(config->containerd_namespace, "ecs");
  EXPECT_EQ(config->image_pull_behavior, ImagePullBehavior::kDefault);
  EXPECT_EQ(config->image_pull_inactivity_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config->manifest_pull_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config->cluster, "default");
  EXPECT_TRUE(config->warnings.empty());
}

TEST(ConfigTest, ReadsContainerdSettings) {
  auto config = load(envOnly({{"ECS_CONTAINERD_ADDRESS", "unix:///tmp/c.sock"},
                              {"ECS_CONTAINERD_NAMESPACE", "prod-tasks"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->containerd_address, "/tmp/c.sock");
  EXPECT_EQ(config->containerd_namespace, "prod-tasks");
}

TEST(ConfigTest, RejectsAnUnusableNamespace) {
  auto config = load(envOnly({{"ECS_CONTAINERD_NAMESPACE", "bad/ns"}}));
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("ECS_CONTAINERD_NAMESPACE"), std::string::npos);
}

TEST(ConfigTest, PullBehaviorValuesAndWarnings) {
  EXPECT_EQ(load(envOnly({{"ECS_IMAGE_PULL_BEHAVIOR", "prefer-cached"}}))->image_pull_behavior,
            ImagePullBehavior::kPreferCached);
  EXPECT_EQ(load(envOnly({{"ECS_IMAGE_PULL_BEHAVIOR", "once"}}))->image_pull_behavior,
            ImagePullBehavior::kOnce);
  auto bad = load(envOnly({{"ECS_IMAGE_PULL_BEHAVIOR", "sometimes"}}));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->image_pull_behavior, ImagePullBehavior::kDefault);
  ASSERT_EQ(bad->warnings.size(), 1u);
  EXPECT_NE(bad->warnings[0].find("ECS_IMAGE_PULL_BEHAVIOR"), std::string::npos);
}

TEST(ConfigTest, InsecureRegistriesAsJsonOrCommaList) {
  EXPECT_EQ(load(envOnly({{"ECS_INSECURE_REGISTRIES", R"(["a:5000","b"])"}}))->insecure_registries,
            (std::vector<std::string>{"a:5000", "b"}));
  EXPECT_EQ(load(envOnly({{"ECS_INSECURE_REGISTRIES", "a:5000, b"}}))->insecure_registries,
            (std::vector<std::string>{"a:5000", "b"}));
  auto bad = load(envOnly({{"ECS_INSECURE_REGISTRIES", "[1,2]"}}));
  EXPECT_TRUE(bad->insecure_registries.empty());
  EXPECT_EQ(bad->warnings.size(), 1u);
}

TEST(ConfigTest, DurationMinimumsKeepTheDefault) {
  auto config = load(
      envOnly({{"ECS_IMAGE_PULL_INACTIVITY_TIMEOUT", "5s"}, {"ECS_MANIFEST_PULL_TIMEOUT", "2m"}}));
  EXPECT_EQ(config->image_pull_inactivity_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config->manifest_pull_timeout, std::chrono::seconds(120));
  EXPECT_EQ(config->warnings.size(), 1u);
}

TEST(ConfigTest, EnvironmentOverridesFilesAndLaterFilesOverrideEarlier) {
  auto dir =
      std::filesystem::temp_directory_path() / ("ecs-config-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "instance.config") << "ECS_CLUSTER=from-instance\nECS_LOGLEVEL=debug\n";
  std::ofstream(dir / "ecs.config")
      << "  ECS_CLUSTER = ignored-key-has-space\nECS_CLUSTER=from-file\n"
      << "# comment line without equals\nECS_CONTAINERD_NAMESPACE=file-ns\n";
  ConfigSources sources;
  sources.files = {(dir / "instance.config").string(), (dir / "ecs.config").string(),
                   (dir / "missing.config").string()};
  sources.environment = {{"ECS_CONTAINERD_NAMESPACE", "env-ns"}};
  auto config = load(sources);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->cluster, "from-file");
  EXPECT_EQ(config->log_level, "debug");
  EXPECT_EQ(config->containerd_namespace, "env-ns");
}

TEST(ConfigTest, EnvFileParsingFollowsEcsInit) {
  auto values = parseEnvFile("A=1\n  B=x=y  \nno equals here\n=empty-key\nC=\n");
  EXPECT_EQ(values["A"], "1");
  EXPECT_EQ(values["B"], "x=y");
  EXPECT_EQ(values.count("no equals here"), 0u);
  EXPECT_EQ(values["C"], "");
}

TEST(ConfigTest, GoDurations) {
  EXPECT_EQ(*parseDuration("30s"), std::chrono::seconds(30));
  EXPECT_EQ(*parseDuration("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(*parseDuration("1.5h"), std::chrono::minutes(90));
  EXPECT_EQ(*parseDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_FALSE(parseDuration("30"));
  EXPECT_FALSE(parseDuration("5 parsecs"));
  EXPECT_FALSE(parseDuration(""));
}

TEST(ConfigTest, GoBooleans) {
  EXPECT_TRUE(*parseBool("TRUE"));
  EXPECT_TRUE(*parseBool("1"));
  EXPECT_FALSE(*parseBool("f"));
  EXPECT_FALSE(parseBool("yes"));
}

}  // namespace
}  // namespace ecs::config

TEST(ConfigNetworkTest, DefaultsFollowEcsInit) {
  auto config = ecs::config::load({{}, {}});
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(config->reserved_ports, (std::vector<int>{22, 2375, 2376, 51678, 51679}));
  EXPECT_TRUE(config->reserved_ports_udp.empty());
  EXPECT_TRUE(config->dynamic_host_port_range.empty());
  EXPECT_FALSE(config->awsvpc_block_imds);
  EXPECT_TRUE(config->task_iam_role_network_host);
  EXPECT_EQ(config->bridge_name, "ecs-br0");
  EXPECT_EQ(config->task_metadata_rps_steady, 40);
  EXPECT_EQ(config->task_metadata_rps_burst, 60);
  EXPECT_EQ(config->efs_mount_command, "mount");
}

TEST(ConfigNetworkTest, ParsesNetworkAndEndpointSettings) {
  auto config = ecs::config::load({{{"ECS_RESERVED_PORTS", "[22, 8080]"},
                                    {"ECS_RESERVED_PORTS_UDP", "[53]"},
                                    {"ECS_DYNAMIC_HOST_PORT_RANGE", "61000-61999"},
                                    {"ECS_AWSVPC_BLOCK_IMDS", "true"},
                                    {"ECS_TASK_METADATA_RPS_LIMIT", "100,150"},
                                    {"ECS_TASK_ENDPOINT_PORT", "41679"},
                                    {"ECS_EFS_MOUNT_COMMAND", "/opt/fake-mount"}},
                                   {}});
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(config->reserved_ports, (std::vector<int>{22, 8080}));
  EXPECT_EQ(config->reserved_ports_udp, (std::vector<int>{53}));
  EXPECT_EQ(config->dynamic_host_port_range, "61000-61999");
  EXPECT_TRUE(config->awsvpc_block_imds);
  EXPECT_EQ(config->task_metadata_rps_steady, 100);
  EXPECT_EQ(config->task_metadata_rps_burst, 150);
  EXPECT_EQ(config->task_endpoint_port, 41679);
  EXPECT_EQ(config->efs_mount_command, "/opt/fake-mount");
  EXPECT_TRUE(config->warnings.empty());
}

TEST(ConfigNetworkTest, BadValuesWarnAndKeepDefaults) {
  auto config = ecs::config::load({{{"ECS_RESERVED_PORTS", "22,80"},
                                    {"ECS_DYNAMIC_HOST_PORT_RANGE", "9000-8000"},
                                    {"ECS_TASK_METADATA_RPS_LIMIT", "0,10"},
                                    {"ECS_TASK_ENDPOINT_PORT", "70000"}},
                                   {}});
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(config->reserved_ports.size(), 5u);
  EXPECT_TRUE(config->dynamic_host_port_range.empty());
  EXPECT_EQ(config->task_metadata_rps_steady, 40);
  EXPECT_EQ(config->task_endpoint_port, 51679);
  EXPECT_EQ(config->warnings.size(), 4u);
}
