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
  EXPECT_EQ(config->log_level, LogLevel::kDebug);
  EXPECT_EQ(config->containerd_namespace, "env-ns");
}

TEST(ConfigTest, ProxySettingsFromTheFilesAreKeptForTheProcessEnvironment) {
  auto dir =
      std::filesystem::temp_directory_path() / ("ecs-config-proxy-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "ecs.config") << "HTTP_PROXY=10.0.0.131:3128\n"
                                    << "NO_PROXY=169.254.169.254,169.254.170.2\n"
                                    << "OTHER=not a proxy setting\n";
  ConfigSources sources;
  sources.files = {(dir / "ecs.config").string()};
  sources.environment = {{"https_proxy", "http://env-proxy:8080"}};
  auto config = load(sources);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->proxy_environment,
            (std::map<std::string, std::string>{{"HTTP_PROXY", "10.0.0.131:3128"},
                                                {"NO_PROXY", "169.254.169.254,169.254.170.2"},
                                                {"https_proxy", "http://env-proxy:8080"}}));
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

// The one warning a load produced, which must name `key`.
void expectOneWarningNaming(const Config& config, const std::string& key) {
  ASSERT_EQ(config.warnings.size(), 1u) << ::testing::PrintToString(config.warnings);
  EXPECT_NE(config.warnings[0].find(key), std::string::npos) << config.warnings[0];
}

// Loads `key=value` alone, expecting a configuration (not an error).
Config loadOne(const std::string& key, const std::string& value) {
  auto config = load(envOnly({{key, value}}));
  EXPECT_TRUE(config) << key << "=" << value << ": " << config.error().message;
  return config ? *config : Config{};
}

TEST(ConfigTest, LogLevels) {
  EXPECT_FALSE(load(envOnly({}))->log_level.has_value());
  EXPECT_EQ(loadOne("ECS_LOGLEVEL", "DEBUG").log_level, LogLevel::kDebug);
  EXPECT_EQ(loadOne("ECS_LOGLEVEL", "crit").log_level, LogLevel::kCrit);
  EXPECT_EQ(loadOne("ECS_LOGLEVEL", "none").log_level, LogLevel::kNone);
  auto bad = loadOne("ECS_LOGLEVEL", "verbose");
  EXPECT_FALSE(bad.log_level.has_value());
  expectOneWarningNaming(bad, "ECS_LOGLEVEL");
}

TEST(ConfigTest, TaskSettings) {
  auto config = load(envOnly({{"ECS_CONTAINER_STOP_TIMEOUT", "200ms"},
                              {"ECS_ENABLE_TASK_CPU_MEM_LIMIT", "false"},
                              {"ECS_CGROUP_CPU_PERIOD", "10ms"},
                              {"ECS_TASK_PIDS_LIMIT", "512"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->container_stop_timeout, std::chrono::seconds(1));  // below 1s becomes 1s
  EXPECT_FALSE(config->task_cpu_mem_limit);
  EXPECT_EQ(config->cgroup_cpu_period, std::chrono::milliseconds(10));
  EXPECT_EQ(config->task_pids_limit, 512);
  EXPECT_TRUE(config->warnings.empty());

  for (auto [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"ECS_CONTAINER_STOP_TIMEOUT", "soon"},
                                                        {"ECS_CONTAINER_STOP_TIMEOUT", "0"},
                                                        {"ECS_ENABLE_TASK_CPU_MEM_LIMIT", "maybe"},
                                                        {"ECS_CGROUP_CPU_PERIOD", "1s"},
                                                        {"ECS_TASK_PIDS_LIMIT", "-1"},
                                                        {"ECS_TASK_PIDS_LIMIT", "5000000"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.container_stop_timeout, std::chrono::seconds(30));
    EXPECT_TRUE(bad.task_cpu_mem_limit);
    EXPECT_EQ(bad.cgroup_cpu_period, std::chrono::milliseconds(100));
    EXPECT_EQ(bad.task_pids_limit, 4096) << "the default";
    expectOneWarningNaming(bad, key);
  }
  EXPECT_EQ(loadOne("ECS_TASK_PIDS_LIMIT", "0").task_pids_limit, 0) << "0: no limit";
  EXPECT_EQ(loadOne("ECS_ENVIRONMENT_FILES_DIR", "/etc/ecs/env").environment_files_dir,
            "/etc/ecs/env");
  auto relative = loadOne("ECS_ENVIRONMENT_FILES_DIR", "env");
  EXPECT_EQ(relative.environment_files_dir, "");
  expectOneWarningNaming(relative, "ECS_ENVIRONMENT_FILES_DIR");
}

TEST(ConfigTest, ContainerLogLimits) {
  auto defaults = load(envOnly({}));
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->container_log_max_size, 10u * 1024 * 1024);
  EXPECT_EQ(defaults->container_log_max_files, 5u);

  auto config =
      load(envOnly({{"ECS_CONTAINER_LOG_MAX_SIZE", "512k"}, {"ECS_CONTAINER_LOG_MAX_FILES", "2"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->container_log_max_size, 512u * 1024);
  EXPECT_EQ(config->container_log_max_files, 2u);
  EXPECT_TRUE(config->warnings.empty());
  config = load(envOnly({{"ECS_CONTAINER_LOG_MAX_SIZE", "1.5g"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->container_log_max_size, 1536u * 1024 * 1024);

  for (auto [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"ECS_CONTAINER_LOG_MAX_SIZE", "lots"},
                                                        {"ECS_CONTAINER_LOG_MAX_SIZE", "10x"},
                                                        {"ECS_CONTAINER_LOG_MAX_SIZE", "1k"},
                                                        {"ECS_CONTAINER_LOG_MAX_SIZE", "-5m"},
                                                        {"ECS_CONTAINER_LOG_MAX_FILES", "0"},
                                                        {"ECS_CONTAINER_LOG_MAX_FILES", "101"},
                                                        {"ECS_CONTAINER_LOG_MAX_FILES", "two"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.container_log_max_size, 10u * 1024 * 1024) << value;
    EXPECT_EQ(bad.container_log_max_files, 5u) << value;
    expectOneWarningNaming(bad, key);
  }
}

TEST(ConfigTest, CleanupDefaultsFollowTheRealAgent) {
  auto config = load(envOnly({}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->task_cleanup_wait, std::chrono::hours(3));
  EXPECT_FALSE(config->image_cleanup_disabled);
  EXPECT_EQ(config->image_cleanup_interval, std::chrono::minutes(30));
  EXPECT_EQ(config->image_minimum_cleanup_age, std::chrono::hours(1));
  EXPECT_EQ(config->num_images_delete_per_cycle, 5);
}

TEST(ConfigTest, CleanupSettings) {
  auto config = load(envOnly({{"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "1500ms"},
                              {"ECS_DISABLE_IMAGE_CLEANUP", "true"},
                              {"ECS_IMAGE_CLEANUP_INTERVAL", "1h"},
                              {"ECS_IMAGE_MINIMUM_CLEANUP_AGE", "30s"},
                              {"ECS_NUM_IMAGES_DELETE_PER_CYCLE", "1"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->task_cleanup_wait, std::chrono::milliseconds(1500));
  EXPECT_TRUE(config->image_cleanup_disabled);
  EXPECT_EQ(config->image_cleanup_interval, std::chrono::hours(1));
  EXPECT_EQ(config->image_minimum_cleanup_age, std::chrono::seconds(30));
  EXPECT_EQ(config->num_images_delete_per_cycle, 1);
  EXPECT_TRUE(config->warnings.empty());

  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "500ms"},  // below the minimum of 1s
           {"ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", "3 hours"},
           {"ECS_DISABLE_IMAGE_CLEANUP", "yes"},
           {"ECS_IMAGE_CLEANUP_INTERVAL", "9m"},  // below the minimum of 10m
           {"ECS_IMAGE_MINIMUM_CLEANUP_AGE", "0"},
           {"ECS_IMAGE_MINIMUM_CLEANUP_AGE", "-1h"},
           {"ECS_NUM_IMAGES_DELETE_PER_CYCLE", "0"},
           {"ECS_NUM_IMAGES_DELETE_PER_CYCLE", "five"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.task_cleanup_wait, std::chrono::hours(3));
    EXPECT_FALSE(bad.image_cleanup_disabled);
    EXPECT_EQ(bad.image_cleanup_interval, std::chrono::minutes(30));
    EXPECT_EQ(bad.image_minimum_cleanup_age, std::chrono::hours(1));
    EXPECT_EQ(bad.num_images_delete_per_cycle, 5);
    expectOneWarningNaming(bad, key);
  }
  EXPECT_NE(loadOne("ECS_IMAGE_CLEANUP_INTERVAL", "9m").warnings[0].find("minimum of 10m"),
            std::string::npos);
}

TEST(ConfigTest, RegistrationDefaults) {
  auto config = load(envOnly({}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->backend_host, "");
  EXPECT_FALSE(config->external);
  EXPECT_FALSE(config->ec2_metadata_disabled);
  EXPECT_EQ(config->reserved_memory_mib, 0);
  EXPECT_TRUE(config->instance_attributes.empty());
  EXPECT_TRUE(config->container_instance_tags.empty());
}

TEST(ConfigTest, RegistrationSettings) {
  auto config = load(envOnly({{"ECS_BACKEND_HOST", "http://127.0.0.1:8080"},
                              {"ECS_EXTERNAL", "true"},
                              {"AWS_DEFAULT_REGION", "eu-west-1"},
                              {"AWS_EC2_METADATA_DISABLED", "TRUE"},
                              {"ECS_RESERVED_MEMORY", "256"},
                              {"ECS_INSTANCE_ATTRIBUTES", R"({"stack":"prod","tier":"web"})"},
                              {"ECS_CONTAINER_INSTANCE_TAGS", R"({"team":"infra"})"}}));
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->backend_host, "http://127.0.0.1:8080");
  EXPECT_TRUE(config->external);
  EXPECT_EQ(config->region, "eu-west-1");
  EXPECT_TRUE(config->ec2_metadata_disabled);
  EXPECT_EQ(config->reserved_memory_mib, 256);
  EXPECT_EQ(config->instance_attributes,
            (std::map<std::string, std::string>{{"stack", "prod"}, {"tier", "web"}}));
  EXPECT_EQ(config->container_instance_tags,
            (std::map<std::string, std::string>{{"team", "infra"}}));
  EXPECT_TRUE(config->warnings.empty());
  // A bare host is reached over HTTPS, as the AWS SDK does.
  EXPECT_EQ(loadOne("ECS_BACKEND_HOST", "ecs.eu-west-1.amazonaws.com").backend_host,
            "https://ecs.eu-west-1.amazonaws.com");
  EXPECT_FALSE(loadOne("AWS_EC2_METADATA_DISABLED", "false").ec2_metadata_disabled);
}

TEST(ConfigTest, BadRegistrationValuesWarnAndKeepDefaults) {
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"ECS_BACKEND_HOST", "ftp://ecs.example.com"},
           {"ECS_BACKEND_HOST", "https://"},
           {"ECS_EXTERNAL", "sometimes"},
           {"AWS_EC2_METADATA_DISABLED", "1"},  // the SDKs read only true and false
           {"ECS_RESERVED_MEMORY", "-5"},
           {"ECS_RESERVED_MEMORY", "70000"},
           {"ECS_RESERVED_MEMORY", "1GiB"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.backend_host, "");
    EXPECT_FALSE(bad.external);
    EXPECT_FALSE(bad.ec2_metadata_disabled);
    EXPECT_EQ(bad.reserved_memory_mib, 0);
    expectOneWarningNaming(bad, key);
  }
}

TEST(ConfigTest, MalformedAttributesOrTagsStopTheAgent) {
  for (const char* key : {"ECS_INSTANCE_ATTRIBUTES", "ECS_CONTAINER_INSTANCE_TAGS"}) {
    for (const char* value : {"stack=prod", R"(["stack"])", R"({"replicas":3})", R"({"a":)"}) {
      auto config = load(envOnly({{key, value}}));
      ASSERT_FALSE(config) << key << "=" << value;
      EXPECT_NE(config.error().message.find(key), std::string::npos) << config.error().message;
    }
  }
}

TEST(ConfigTest, ExternalNeedsARegion) {
  auto config = load(envOnly({{"ECS_EXTERNAL", "true"}}));
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("AWS_DEFAULT_REGION"), std::string::npos);
  EXPECT_TRUE(load(envOnly({{"ECS_EXTERNAL", "true"}, {"AWS_REGION", "us-west-2"}})));
}

TEST(ConfigTest, NetworkDefaultsFollowEcsInit) {
  auto config = load(envOnly({}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->reserved_ports, (std::vector<uint16_t>{22, 2375, 2376, 51678, 51679}));
  EXPECT_TRUE(config->reserved_ports_udp.empty());
  EXPECT_FALSE(config->dynamic_host_port_range.has_value());
  EXPECT_FALSE(config->awsvpc_block_imds);
  EXPECT_TRUE(config->task_iam_role_network_host);
  EXPECT_EQ(config->bridge_name, "ecs-br0");
  EXPECT_EQ(config->bridge_subnet.toString(), "172.31.224.0/20");
  EXPECT_EQ(config->task_metadata_rps_limit, (RpsLimit{40, 60}));
  EXPECT_EQ(config->task_endpoint_port, 51679);
  EXPECT_EQ(config->introspection_port, 51678);
  EXPECT_EQ(config->efs_mount_command, std::vector<std::string>{"mount"});
}

TEST(ConfigTest, ParsesNetworkAndEndpointSettings) {
  auto config = load(envOnly({{"ECS_RESERVED_PORTS", "[22, 8080]"},
                              {"ECS_RESERVED_PORTS_UDP", "[53]"},
                              {"ECS_DYNAMIC_HOST_PORT_RANGE", " 61000-61999 "},
                              {"ECS_AWSVPC_BLOCK_IMDS", "true"},
                              {"ECS_BRIDGE_NAME", "ecs-test-br0"},
                              {"ECS_BRIDGE_SUBNET", "10.200.0.0/24"},
                              {"ECS_TASK_METADATA_RPS_LIMIT", "100, 150"},
                              {"ECS_TASK_ENDPOINT_PORT", "41679"},
                              {"ECS_INTROSPECTION_PORT", "41678"},
                              {"ECS_EFS_MOUNT_COMMAND", "/opt/fake-mount  --verbose -t"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->reserved_ports, (std::vector<uint16_t>{22, 8080}));
  EXPECT_EQ(config->reserved_ports_udp, (std::vector<uint16_t>{53}));
  EXPECT_EQ(config->dynamic_host_port_range, (PortRange{61000, 61999}));
  EXPECT_TRUE(config->awsvpc_block_imds);
  EXPECT_EQ(config->bridge_name, "ecs-test-br0");
  EXPECT_EQ(config->bridge_subnet, (Ipv4Cidr{0x0ac80000, 24}));
  EXPECT_EQ(config->bridge_subnet.toString(), "10.200.0.0/24");
  EXPECT_EQ(config->task_metadata_rps_limit, (RpsLimit{100, 150}));
  EXPECT_EQ(config->task_endpoint_port, 41679);
  EXPECT_EQ(config->introspection_port, 41678);
  EXPECT_EQ(config->efs_mount_command,
            (std::vector<std::string>{"/opt/fake-mount", "--verbose", "-t"}));
  EXPECT_TRUE(config->warnings.empty());
}

TEST(ConfigTest, BadNetworkValuesWarnAndKeepDefaults) {
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"ECS_RESERVED_PORTS", "22,80"},
           {"ECS_RESERVED_PORTS", "[0]"},
           {"ECS_RESERVED_PORTS_UDP", "[70000]"},
           {"ECS_DYNAMIC_HOST_PORT_RANGE", "9000-8000"},
           {"ECS_DYNAMIC_HOST_PORT_RANGE", "9000"},
           {"ECS_DYNAMIC_HOST_PORT_RANGE", "0-100"},
           {"ECS_DYNAMIC_HOST_PORT_RANGE", "61000-70000"},
           {"ECS_BRIDGE_NAME", "a-name-longer-than-15"},
           {"ECS_BRIDGE_SUBNET", "172.31.224.0"},
           {"ECS_BRIDGE_SUBNET", "172.31.224.1/20"},  // host bits set
           {"ECS_BRIDGE_SUBNET", "172.31.224.0/31"},  // no room for a task
           {"ECS_BRIDGE_SUBNET", "300.1.1.0/24"},
           {"ECS_TASK_METADATA_RPS_LIMIT", "0,10"},
           {"ECS_TASK_METADATA_RPS_LIMIT", "40"},
           {"ECS_TASK_METADATA_RPS_LIMIT", "40,60,80"},
           {"ECS_TASK_ENDPOINT_PORT", "70000"},
           {"ECS_INTROSPECTION_PORT", "0"},
           {"ECS_AWSVPC_BLOCK_IMDS", "on"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.reserved_ports.size(), 5u);
    EXPECT_TRUE(bad.reserved_ports_udp.empty());
    EXPECT_FALSE(bad.dynamic_host_port_range.has_value());
    EXPECT_EQ(bad.bridge_name, "ecs-br0");
    EXPECT_EQ(bad.bridge_subnet.toString(), "172.31.224.0/20");
    EXPECT_EQ(bad.task_metadata_rps_limit, (RpsLimit{40, 60}));
    EXPECT_EQ(bad.task_endpoint_port, 51679);
    EXPECT_EQ(bad.introspection_port, 51678);
    EXPECT_FALSE(bad.awsvpc_block_imds);
    expectOneWarningNaming(bad, key);
  }
  EXPECT_NE(loadOne("ECS_BRIDGE_SUBNET", "172.31.224.1/20").warnings[0].find("172.31.224.0/20"),
            std::string::npos);
}

TEST(ConfigTest, EndpointConnectionCaps) {
  auto defaults = load(envOnly({}));
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->task_endpoint_max_connections, 1024u);
  EXPECT_EQ(defaults->task_endpoint_max_connections_per_client, 64u);
  EXPECT_EQ(defaults->reserved_fds, 512u);

  auto config = load(envOnly({{"ECS_TASK_ENDPOINT_MAX_CONNECTIONS", "4096"},
                              {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT", " 8 "},
                              {"ECS_RESERVED_FDS", "2048"}}));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->task_endpoint_max_connections, 4096u);
  EXPECT_EQ(config->task_endpoint_max_connections_per_client, 8u);
  EXPECT_EQ(config->reserved_fds, 2048u);
  EXPECT_TRUE(config->warnings.empty()) << ::testing::PrintToString(config->warnings);

  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS", "0"},
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS", "-1"},
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS", "many"},
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS", "2000000"},
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT", "0"},
           {"ECS_TASK_ENDPOINT_MAX_CONNECTIONS_PER_CLIENT", "8.5"},
           {"ECS_RESERVED_FDS", "63"},
           {"ECS_RESERVED_FDS", "512k"},
           {"ECS_RESERVED_FDS", "99999999999"}}) {
    auto bad = loadOne(key, value);
    EXPECT_EQ(bad.task_endpoint_max_connections, 1024u) << key << "=" << value;
    EXPECT_EQ(bad.task_endpoint_max_connections_per_client, 64u) << key << "=" << value;
    EXPECT_EQ(bad.reserved_fds, 512u) << key << "=" << value;
    expectOneWarningNaming(bad, key);
  }
  EXPECT_NE(loadOne("ECS_RESERVED_FDS", "10").warnings[0].find("from 64 to"), std::string::npos);
}

}  // namespace
}  // namespace ecs::config
