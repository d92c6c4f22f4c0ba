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
