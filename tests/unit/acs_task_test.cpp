#include "agent/acs/acs_task.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>
#include <string>

#include "agent/acs/acs_frame.h"
#include "tests/support/json_pointers.h"
#include "tests/support/mutation_fuzzer.h"

namespace ecs::acs {
namespace {

using engine::ContainerDefinition;
using engine::ContainerDependency;
using engine::ContainerStatus;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A bridge-mode shop task as ACS sends it: the web container's Docker settings travel in
// dockerConfig (set by withDockerConfig below, as the JSON strings the wire carries).
constexpr std::string_view kBridgeTask = R"({
  "arn": "arn:aws:ecs:us-west-2:123456789012:task/shop/0f3c6d0e1a2b4c5d8e9f001122334455",
  "taskClusterArn": "arn:aws:ecs:us-west-2:123456789012:cluster/shop",
  "family": "shop-web",
  "version": "7",
  "desiredStatus": "RUNNING",
  "launchType": "EC2",
  "networkMode": "bridge",
  "cpu": 1.5,
  "memory": 2048,
  "pidMode": "task",
  "ipcMode": "none",
  "overrides": "{}",
  "serviceName": "web",
  "roleCredentials": {
    "credentialsId": "4f1a8c1e-task",
    "roleArn": "arn:aws:iam::123456789012:role/shop-task",
    "accessKeyId": "ASIAEXAMPLETASKKEY",
    "secretAccessKey": "task-secret-do-not-echo",
    "sessionToken": "task-token-do-not-echo",
    "expiration": "2030-03-25T06:17:19.318+0000",
    "credentialScope": "task"
  },
  "executionRoleCredentials": {
    "credentialsId": "77b2e0d4-exec",
    "roleArn": "arn:aws:iam::123456789012:role/shop-exec",
    "accessKeyId": "ASIAEXAMPLEEXECKEY",
    "secretAccessKey": "exec-secret-do-not-echo",
    "sessionToken": "exec-token-do-not-echo",
    "expiration": "2030-03-25T07:00:00.000+0000"
  },
  "volumes": [
    {"name": "static", "type": "host", "host": {"sourcePath": "/srv/static"}},
    {"name": "scratch"},
    {"name": "cache", "type": "docker", "dockerVolumeConfiguration": {
      "scope": "shared", "autoprovision": true, "driver": "local",
      "driverOpts": {"type": "tmpfs", "device": "tmpfs"}, "labels": {"app": "shop"}}},
    {"name": "assets", "type": "efs", "efsVolumeConfiguration": {
      "fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/",
      "transitEncryption": "ENABLED", "transitEncryptionPort": 2049,
      "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0", "iam": "ENABLED"}}}
  ],
  "containers": [
    {
      "name": "web",
      "containerArn": "arn:aws:ecs:us-west-2:123456789012:container/shop/0f3c/web",
      "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop/web:1.4.2",
      "command": ["nginx", "-g", "daemon off;"],
      "entryPoint": ["/usr/bin/tini", "--"],
      "cpu": 512,
      "memory": 512,
      "essential": true,
      "environment": {"MODE": "production", "EMPTY": ""},
      "environmentFiles": [{"value": "arn:aws:s3:::shop-config/web.env", "type": "s3"}],
      "links": ["sidecar:side"],
      "portMappings": [
        {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"},
        {"containerPort": 443},
        {"containerPort": 53, "hostPort": 0, "protocol": "udp"},
        {"containerPortRange": "9000-9010", "protocol": "tcp"}
      ],
      "mountPoints": [
        {"sourceVolume": "static", "containerPath": "/usr/share/nginx/html", "readOnly": true},
        {"sourceVolume": "scratch", "containerPath": "/scratch"},
        {"sourceVolume": "cache", "containerPath": "/cache"},
        {"sourceVolume": "assets", "containerPath": "/assets"}
      ],
      "volumesFrom": [{"sourceContainer": "sidecar", "readOnly": true}],
      "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "devices": [{"hostPath": "/dev/fuse", "permissions": ["read", "write"]}],
        "initProcessEnabled": false,
        "sharedMemorySize": 32
      },
      "privileged": false,
      "dependsOn": [{"containerName": "sidecar", "condition": "HEALTHY"}],
      "startTimeout": 60,
      "stopTimeout": 20,
      "restartPolicy": {"enabled": true, "ignoredExitCodes": [0, 143], "restartAttemptPeriod": 120},
      "secrets": [
        {"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-west-2:123456789012:parameter/db",
         "type": "ENVIRONMENT_VARIABLE", "provider": "ssm", "target": "CONTAINER",
         "region": "us-west-2"},
        {"name": "splunk-token", "valueFrom": "arn:aws:secretsmanager:us-west-2:123456789012:secret:splunk",
         "provider": "asm", "target": "LOG_DRIVER", "region": "us-west-2"}
      ],
      "registryAuthentication": {"type": "ecr",
        "ecrAuthData": {"registryId": "123456789012", "region": "us-west-2", "useExecutionRole": true}},
      "logsAuthStrategy": "ExecutionRole",
      "healthCheckType": "docker",
      "dockerConfig": {"version": "1.17"}
    },
    {
      "name": "sidecar",
      "image": "private.example.com/tools/busybox:1.36",
      "command": ["sh", "-c", "while true; do sleep 1; done"],
      "cpu": 128,
      "memory": 0,
      "essential": false,
      "environment": {},
      "portMappings": [],
      "registryAuthentication": {"type": "asm",
        "asmAuthData": {"credentialsParameter": "arn:aws:secretsmanager:us-west-2:123456789012:secret:registry", "region": "us-west-2"}},
      "dockerConfig": {
        "config": "{\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"]}}",
        "hostConfig": "{\"MemoryReservation\":67108864}"
      }
    }
  ]
})";

// container.Config of the web container, in the Docker Engine API's shape.
constexpr std::string_view kWebConfig = R"({
  "Hostname": "web",
  "User": "101:101",
  "WorkingDir": "/srv",
  "Labels": {"com.example.tier": "front"},
  "Env": ["FROM_CONFIG=1", "MODE=overridden"],
  "Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                  "Interval": 10000000000, "Timeout": 3000000000, "Retries": 5,
                  "StartPeriod": 15000000000}
})";

// container.HostConfig of the web container.
constexpr std::string_view kWebHostConfig = R"({
  "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
  "Ulimits": [{"Name": "nofile", "Soft": 65536, "Hard": 1048576}],
  "MemoryReservation": 268435456,
  "MemorySwap": 805306368,
  "MemorySwappiness": 10,
  "ReadonlyRootfs": true,
  "Dns": ["10.0.0.2"],
  "DnsSearch": ["shop.internal"],
  "ExtraHosts": ["db:10.0.0.10", "v6:fd00::10"],
  "SecurityOpt": ["no-new-privileges"],
  "Sysctls": {"net.core.somaxconn": "1024"},
  "CapAdd": ["NET_ADMIN", "SYS_TIME"],
  "Devices": [{"PathOnHost": "/dev/net/tun", "PathInContainer": "/dev/net/tun",
               "CgroupPermissions": "rwm"}],
  "Init": true,
  "ShmSize": 67108864,
  "Tmpfs": {"/run": "rw,noexec,size=16m"},
  "NetworkMode": "bridge",
  "CpuShares": 512
})";

boost::json::value document(std::string_view text) {
  return boost::json::parse(text);
}

// The task with `containers[index].dockerConfig.{config,hostConfig}` set to the documents given,
// as strings.
boost::json::value withDockerConfig(boost::json::value task, size_t index, std::string_view config,
                                    std::string_view host_config) {
  auto& docker = task.at("containers").at(index).as_object()["dockerConfig"].as_object();
  docker["config"] = boost::json::serialize(document(config));
  docker["hostConfig"] = boost::json::serialize(document(host_config));
  return task;
}

boost::json::value bridgeTask() {
  return withDockerConfig(document(kBridgeTask), 0, kWebConfig, kWebHostConfig);
}

AcsTask parsed(const boost::json::value& task) {
  auto result = parseAcsTask(task);
  EXPECT_TRUE(result) << result.error().message;
  return result ? *result : AcsTask{};
}

std::string parseError(const boost::json::value& task) {
  auto result = parseAcsTask(task);
  EXPECT_FALSE(result) << boost::json::serialize(task);
  if (result) return "";
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  return result.error().message;
}

std::string parseError(const char* text) {
  return parseError(document(text));
}

// --- a full task ---------------------------------------------------------------------------------

TEST(AcsTaskTest, BridgeTaskMapsTheTaskFields) {
  AcsTask task = parsed(bridgeTask());
  const engine::TaskSpec& spec = task.spec;
  EXPECT_EQ(spec.arn,
            "arn:aws:ecs:us-west-2:123456789012:task/shop/0f3c6d0e1a2b4c5d8e9f001122334455");
  EXPECT_EQ(spec.desired, ContainerStatus::kRunning);
  const engine::TaskDefinition& d = spec.definition;
  EXPECT_EQ(d.family, "shop-web");
  EXPECT_EQ(d.revision, 7);
  EXPECT_EQ(d.network_mode, "bridge");
  EXPECT_EQ(d.cpu_units, 1536) << "1.5 vCPU";
  EXPECT_EQ(d.memory_mib, 2048);
  EXPECT_EQ(d.pid_mode, "task");
  EXPECT_EQ(d.ipc_mode, "none");
  EXPECT_EQ(d.task_role_arn, "arn:aws:iam::123456789012:role/shop-task");
  EXPECT_EQ(d.execution_role_arn, "arn:aws:iam::123456789012:role/shop-exec");
  EXPECT_THAT(d.unsupported_fields, IsEmpty());
  ASSERT_EQ(d.container_definitions.size(), 2u);
}

TEST(AcsTaskTest, BridgeTaskMapsTheContainerFields) {
  AcsTask task = parsed(bridgeTask());
  const ContainerDefinition& web = task.spec.definition.container_definitions.at(0);
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.image, "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop/web:1.4.2");
  EXPECT_THAT(web.command, ElementsAre("nginx", "-g", "daemon off;"));
  EXPECT_THAT(web.entry_point, ElementsAre("/usr/bin/tini", "--"));
  EXPECT_EQ(web.cpu, 512);
  EXPECT_EQ(web.memory_mib, 512);
  EXPECT_TRUE(web.essential);
  // The environment map in document order, then dockerConfig.config's Env over it.
  ASSERT_EQ(web.environment.size(), 3u);
  EXPECT_EQ(web.environment[0].name, "MODE");
  EXPECT_EQ(web.environment[0].value, "overridden");
  EXPECT_EQ(web.environment[1].name, "EMPTY");
  EXPECT_EQ(web.environment[1].value, "");
  EXPECT_EQ(web.environment[2].name, "FROM_CONFIG");
  ASSERT_EQ(web.environment_files.size(), 1u);
  EXPECT_EQ(web.environment_files[0].value, "arn:aws:s3:::shop-config/web.env");
  EXPECT_THAT(web.links, ElementsAre("sidecar:side"));
  ASSERT_EQ(web.mount_points.size(), 4u);
  EXPECT_EQ(web.mount_points[0].source_volume, "static");
  EXPECT_TRUE(web.mount_points[0].read_only);
  ASSERT_EQ(web.volumes_from.size(), 1u);
  EXPECT_TRUE(web.volumes_from[0].read_only);
  ASSERT_EQ(web.depends_on.size(), 1u);
  EXPECT_EQ(web.depends_on[0].condition, ContainerDependency::Condition::kHealthy);
  EXPECT_EQ(web.start_timeout_seconds, 60);
  EXPECT_EQ(web.stop_timeout_seconds, 20);
  ASSERT_TRUE(web.restart_policy);
  EXPECT_THAT(web.restart_policy->ignored_exit_codes, ElementsAre(0, 143));
  EXPECT_EQ(web.restart_policy->restart_attempt_period_seconds, 120);
  ASSERT_EQ(web.secrets.size(), 1u);
  EXPECT_EQ(web.secrets[0].name, "DB_PASSWORD");
  EXPECT_EQ(web.secrets[0].value_from, "arn:aws:ssm:us-west-2:123456789012:parameter/db");
  EXPECT_EQ(web.repository_credentials_parameter, "") << "ECR needs no credentials parameter";

  const ContainerDefinition& sidecar = task.spec.definition.container_definitions.at(1);
  EXPECT_FALSE(sidecar.essential);
  EXPECT_EQ(sidecar.memory_mib, std::nullopt) << "memory 0 is unset";
  EXPECT_EQ(sidecar.memory_reservation_mib, 64);
  EXPECT_EQ(sidecar.repository_credentials_parameter,
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:registry");
  ASSERT_TRUE(sidecar.health_check);
  EXPECT_THAT(sidecar.health_check->command, ElementsAre("CMD", "true"));
  EXPECT_EQ(sidecar.health_check->interval_seconds, 30) << "Docker's 0 keeps the default";
}

TEST(AcsTaskTest, PortMappingsKeepDynamicHostPorts) {
  AcsTask task = parsed(bridgeTask());
  const auto& ports = task.spec.definition.container_definitions.at(0).port_mappings;
  ASSERT_EQ(ports.size(), 4u);
  EXPECT_EQ(ports[0].container_port, 80);
  EXPECT_EQ(ports[0].host_port, 8080);
  EXPECT_EQ(ports[0].protocol, "tcp");
  EXPECT_EQ(ports[1].container_port, 443);
  EXPECT_EQ(ports[1].host_port, std::nullopt) << "absent: dynamic";
  EXPECT_EQ(ports[1].protocol, "tcp");
  EXPECT_EQ(ports[2].host_port, 0) << "0: dynamic";
  EXPECT_EQ(ports[2].protocol, "udp");
  EXPECT_EQ(ports[3].container_port_range, "9000-9010");
  EXPECT_EQ(ports[3].container_port, std::nullopt);
}

TEST(AcsTaskTest, DockerConfigFillsTheTypedFields) {
  AcsTask task = parsed(bridgeTask());
  const ContainerDefinition& web = task.spec.definition.container_definitions.at(0);
  EXPECT_EQ(web.hostname, "web");
  EXPECT_EQ(web.user, "101:101");
  EXPECT_EQ(web.working_directory, "/srv");
  EXPECT_EQ(web.docker_labels.at("com.example.tier"), "front");
  ASSERT_TRUE(web.health_check);
  EXPECT_THAT(web.health_check->command,
              ElementsAre("CMD-SHELL", "curl -f http://localhost/ || exit 1"));
  EXPECT_EQ(web.health_check->interval_seconds, 10);
  EXPECT_EQ(web.health_check->timeout_seconds, 3);
  EXPECT_EQ(web.health_check->retries, 5);
  EXPECT_EQ(web.health_check->start_period_seconds, 15);
}

TEST(AcsTaskTest, DockerHostConfigFillsTheTypedFields) {
  AcsTask task = parsed(bridgeTask());
  const ContainerDefinition& web = task.spec.definition.container_definitions.at(0);
  ASSERT_TRUE(web.log_configuration);
  EXPECT_EQ(web.log_configuration->log_driver, "json-file");
  EXPECT_EQ(web.log_configuration->options.at("max-size"), "10m");
  EXPECT_EQ(web.log_configuration->options.at("max-file"), "3");
  ASSERT_EQ(web.log_configuration->secret_options.size(), 1u) << "the LOG_DRIVER secret";
  EXPECT_EQ(web.log_configuration->secret_options[0].name, "splunk-token");
  ASSERT_EQ(web.ulimits.size(), 1u);
  EXPECT_EQ(web.ulimits[0].name, "nofile");
  EXPECT_EQ(web.ulimits[0].soft_limit, 65536);
  EXPECT_EQ(web.ulimits[0].hard_limit, 1048576);
  EXPECT_EQ(web.memory_mib, 512);
  EXPECT_EQ(web.memory_reservation_mib, 256);
  EXPECT_TRUE(web.readonly_root_filesystem);
  EXPECT_FALSE(web.privileged);
  EXPECT_THAT(web.dns_servers, ElementsAre("10.0.0.2"));
  EXPECT_THAT(web.dns_search_domains, ElementsAre("shop.internal"));
  ASSERT_EQ(web.extra_hosts.size(), 2u);
  EXPECT_EQ(web.extra_hosts[0].hostname, "db");
  EXPECT_EQ(web.extra_hosts[0].ip_address, "10.0.0.10");
  EXPECT_EQ(web.extra_hosts[1].ip_address, "fd00::10");
  EXPECT_THAT(web.docker_security_options, ElementsAre("no-new-privileges"));
  ASSERT_EQ(web.system_controls.size(), 1u);
  EXPECT_EQ(web.system_controls[0].name, "net.core.somaxconn");
  EXPECT_EQ(web.system_controls[0].value, "1024");

  ASSERT_TRUE(web.linux_parameters);
  const engine::LinuxParameters& linux = *web.linux_parameters;
  EXPECT_THAT(linux.capabilities_add, ElementsAre("NET_ADMIN", "SYS_TIME"));
  EXPECT_THAT(linux.capabilities_drop, ElementsAre("MKNOD"));
  ASSERT_EQ(linux.devices.size(), 2u);
  EXPECT_EQ(linux.devices[0].host_path, "/dev/fuse");
  EXPECT_EQ(linux.devices[1].host_path, "/dev/net/tun");
  EXPECT_THAT(linux.devices[1].permissions, ElementsAre("read", "write", "mknod"));
  EXPECT_TRUE(linux.init_process_enabled) << "hostConfig.Init over linuxParameters";
  EXPECT_EQ(linux.shared_memory_size_mib, 64) << "hostConfig.ShmSize over linuxParameters";
  ASSERT_EQ(linux.tmpfs.size(), 1u);
  EXPECT_EQ(linux.tmpfs[0].container_path, "/run");
  EXPECT_EQ(linux.tmpfs[0].size_mib, 16);
  EXPECT_THAT(linux.tmpfs[0].mount_options, ElementsAre("rw", "noexec"));
  EXPECT_EQ(linux.max_swap_mib, 256) << "768 MiB memory + swap over a 512 MiB limit";
  EXPECT_EQ(linux.swappiness, 10);
}

TEST(AcsTaskTest, DockerConfigStringsAsTheWireCarriesThem) {
  AcsTask task = parsed(document(R"({"arn": "t", "family": "f", "version": "1",
      "desiredStatus": "RUNNING",
      "containers": [{"name": "app", "image": "busybox", "memory": 64, "essential": true,
        "dockerConfig": {
          "config": "{\"User\":\"nobody\",\"Healthcheck\":{\"Test\":[\"CMD\",\"true\"],\"Interval\":5500000000}}",
          "hostConfig": "{\"Privileged\":true,\"Memory\":134217728,\"MemorySwap\":-1}",
          "version": "1.17"}}]})"));
  const ContainerDefinition& app = task.spec.definition.container_definitions.at(0);
  EXPECT_EQ(app.user, "nobody");
  EXPECT_EQ(app.health_check->interval_seconds, 6) << "durations round up to whole seconds";
  EXPECT_TRUE(app.privileged);
  EXPECT_EQ(app.memory_mib, 128) << "hostConfig.Memory over the memory field";
  EXPECT_FALSE(app.linux_parameters) << "MemorySwap -1 leaves swap to the host";
}

TEST(AcsTaskTest, BridgeTaskIsValidAndCarriesItsCredentials) {
  AcsTask task = parsed(bridgeTask());
  ASSERT_TRUE(task.role_credentials);
  const RoleCredentials& role = *task.role_credentials;
  EXPECT_EQ(role.credentials_id, "4f1a8c1e-task");
  EXPECT_EQ(role.role_arn, "arn:aws:iam::123456789012:role/shop-task");
  EXPECT_EQ(role.access_key_id, "ASIAEXAMPLETASKKEY");
  EXPECT_EQ(role.secret_access_key, "task-secret-do-not-echo");
  EXPECT_EQ(role.session_token, "task-token-do-not-echo");
  EXPECT_EQ(role.expiration, "2030-03-25T06:17:19.318+0000");
  EXPECT_EQ(role.role_type, "TaskApplication");
  ASSERT_TRUE(task.execution_role_credentials);
  EXPECT_EQ(task.execution_role_credentials->credentials_id, "77b2e0d4-exec");
  EXPECT_EQ(task.execution_role_credentials->role_type, "TaskExecution");
  EXPECT_EQ(task.spec.role_credentials_id, "4f1a8c1e-task");
  EXPECT_EQ(task.spec.execution_role_credentials_id, "77b2e0d4-exec");
}

TEST(AcsTaskTest, TaskWithoutCredentials) {
  AcsTask task = parsed(document(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "containers": [{"name": "app", "image": "busybox", "memory": 64, "essential": true}]})"));
  EXPECT_FALSE(task.role_credentials);
  EXPECT_FALSE(task.execution_role_credentials);
  EXPECT_EQ(task.spec.role_credentials_id, "");
  EXPECT_EQ(task.spec.definition.revision, 1) << "no version";
}

TEST(AcsTaskTest, CredentialsNeedAnIdAndAreNeverEchoed) {
  boost::json::value task = bridgeTask();
  task.as_object()["roleCredentials"].as_object().erase("credentialsId");
  task.as_object()["executionRoleCredentials"].as_object()["credentialsId"] = "";
  task.as_object()["executionRoleCredentials"].as_object()["secretAccessKey"] = 12;
  std::string message = parseError(task);
  EXPECT_THAT(message, HasSubstr("roleCredentials.credentialsId: required"));
  EXPECT_THAT(message, HasSubstr("executionRoleCredentials.credentialsId: must not be empty"));
  EXPECT_THAT(message, HasSubstr("executionRoleCredentials.secretAccessKey: expected a string, "
                                 "got an integer"));

  // A task that fails validation: still nothing of the credentials in the message.
  task = bridgeTask();
  task.at("containers").at(0).as_object()["image"] = "";
  message = parseError(task);
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"web\").image: required"));
  for (const char* secret : {"do-not-echo", "ASIAEXAMPLE"}) {
    EXPECT_THAT(message, Not(HasSubstr(secret)));
  }
}

// --- overrides -----------------------------------------------------------------------------------

TEST(AcsTaskTest, OverridesAsAStringReplaceTheCommand) {
  boost::json::value task = bridgeTask();
  task.at("containers").at(1).as_object()["overrides"] =
      R"({"command": ["sh", "-c", "echo overridden"], "environment": {"IGNORED": "1"}})";
  AcsTask parsed_task = parsed(task);
  const ContainerDefinition& sidecar = parsed_task.spec.definition.container_definitions.at(1);
  EXPECT_THAT(sidecar.command, ElementsAre("sh", "-c", "echo overridden"));
  EXPECT_THAT(sidecar.environment, IsEmpty()) << "only command is taken from overrides";
}

TEST(AcsTaskTest, OverridesAsAnObjectReplaceTheCommand) {
  boost::json::value task = bridgeTask();
  task.at("containers").at(1).as_object()["overrides"] =
      document(R"({"command": ["sleep", "3600"]})");
  AcsTask parsed_task = parsed(task);
  EXPECT_THAT(parsed_task.spec.definition.container_definitions.at(1).command,
              ElementsAre("sleep", "3600"));
}

TEST(AcsTaskTest, OverridesWithoutACommandKeepIt) {
  boost::json::value task = bridgeTask();
  task.at("containers").at(1).as_object()["overrides"] = "{}";
  task.at("containers").at(0).as_object()["overrides"] = document(R"({"command": null})");
  AcsTask parsed_task = parsed(task);
  EXPECT_THAT(parsed_task.spec.definition.container_definitions.at(0).command,
              ElementsAre("nginx", "-g", "daemon off;"));
  EXPECT_THAT(parsed_task.spec.definition.container_definitions.at(1).command,
              ElementsAre("sh", "-c", "while true; do sleep 1; done"));
}

TEST(AcsTaskTest, BadOverridesNameThePath) {
  boost::json::value task = bridgeTask();
  task.at("containers").at(1).as_object()["overrides"] = R"({"command": "sleep 1"})";
  EXPECT_THAT(parseError(task),
              HasSubstr("containers[1].overrides.command: expected an array, got a string"));
  task.at("containers").at(1).as_object()["overrides"] = R"({"command": [)";
  EXPECT_THAT(parseError(task),
              HasSubstr("containers[1].overrides: malformed JSON at line 1, column 14"));
  task.at("containers").at(1).as_object()["overrides"] = 5;
  EXPECT_THAT(parseError(task), HasSubstr("containers[1].overrides: expected an object or a JSON "
                                          "string, got an integer"));
}

// --- awsvpc --------------------------------------------------------------------------------------

TEST(AcsTaskTest, AwsvpcTask) {
  AcsTask task = parsed(document(R"({
    "arn": "arn:aws:ecs:us-west-2:123456789012:task/shop/9a8b7c6d5e4f30211203f4e5d6c7b8a9",
    "family": "api", "version": "12", "desiredStatus": "RUNNING", "networkMode": "awsvpc",
    "cpu": 0.25, "memory": 512,
    "elasticNetworkInterfaces": [{"attachmentArn": "arn:aws:ecs:us-west-2:123456789012:attachment/1",
      "ec2Id": "eni-0abc", "macAddress": "0a:1b:2c:3d:4e:5f",
      "ipv4Addresses": [{"primary": true, "privateAddress": "10.0.1.23"}],
      "subnetGatewayIpv4Address": "10.0.1.1/24"}],
    "containers": [{"name": "api", "image": "public.ecr.aws/docker/library/nginx:1.25",
      "cpu": 0, "memory": 256, "essential": true,
      "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"},
                       {"containerPort": 9090}]}]})"));
  const engine::TaskDefinition& d = task.spec.definition;
  EXPECT_EQ(d.network_mode, "awsvpc");
  EXPECT_EQ(d.cpu_units, 256);
  EXPECT_EQ(d.revision, 12);
  const auto& ports = d.container_definitions.at(0).port_mappings;
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_EQ(ports[0].host_port, 8080);
  EXPECT_EQ(ports[1].host_port, std::nullopt);
}

TEST(AcsTaskTest, AwsvpcRulesApply) {
  std::string message = parseError(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "networkMode": "awsvpc", "containers": [{"name": "app", "image": "busybox", "memory": 64,
      "essential": true, "portMappings": [{"containerPort": 80, "hostPort": 8080}],
      "dockerConfig": {"config": "{\"Hostname\":\"app\"}"}}]})");
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"app\").portMappings[0].hostPort: 8080 "
                                 "must equal containerPort (80)"));
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"app\").hostname: not allowed with "
                                 "networkMode awsvpc"));
}

// --- volumes -------------------------------------------------------------------------------------

TEST(AcsTaskTest, VolumesOfEachType) {
  AcsTask task = parsed(bridgeTask());
  const auto& volumes = task.spec.definition.volumes;
  ASSERT_EQ(volumes.size(), 4u);
  ASSERT_TRUE(volumes[0].host);
  EXPECT_EQ(volumes[0].host->source_path, "/srv/static");
  ASSERT_TRUE(volumes[1].host) << "no type: host";
  EXPECT_EQ(volumes[1].host->source_path, "") << "agent-managed";
  EXPECT_FALSE(volumes[1].docker_volume_configuration);
  ASSERT_TRUE(volumes[2].docker_volume_configuration);
  EXPECT_FALSE(volumes[2].host);
  EXPECT_EQ(volumes[2].docker_volume_configuration->scope, "shared");
  EXPECT_EQ(volumes[2].docker_volume_configuration->autoprovision, true);
  EXPECT_EQ(volumes[2].docker_volume_configuration->driver_opts.at("type"), "tmpfs");
  EXPECT_EQ(volumes[2].docker_volume_configuration->labels.at("app"), "shop");
  ASSERT_TRUE(volumes[3].efs_volume_configuration);
  const auto& efs = *volumes[3].efs_volume_configuration;
  EXPECT_EQ(efs.file_system_id, "fs-0123456789abcdef0");
  EXPECT_TRUE(efs.transit_encryption);
  EXPECT_EQ(efs.transit_encryption_port, 2049);
  EXPECT_EQ(efs.access_point_id, "fsap-0123456789abcdef0");
  EXPECT_TRUE(efs.iam);
}

TEST(AcsTaskTest, OnlyTheConfigurationOfTheTypeIsRead) {
  AcsTask task = parsed(document(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "volumes": [{"name": "data", "type": "docker", "host": {"sourcePath": "/ignored"},
                   "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}},
                  {"name": "empty", "type": "host", "host": null}],
      "containers": [{"name": "app", "image": "busybox", "memory": 64, "essential": true}]})"));
  const auto& volumes = task.spec.definition.volumes;
  EXPECT_FALSE(volumes[0].host);
  ASSERT_TRUE(volumes[0].docker_volume_configuration);
  EXPECT_EQ(volumes[0].docker_volume_configuration->scope, "task");
  ASSERT_TRUE(volumes[1].host);
  EXPECT_EQ(volumes[1].host->source_path, "");
}

TEST(AcsTaskTest, VolumeTypesThisAgentCannotMountAreUnsupported) {
  constexpr std::string_view kTask = R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "volumes": [{"name": "win", "type": "fsxWindowsFileServer",
                   "fsxWindowsFileServerVolumeConfiguration": {"fileSystemId": "fs-1"}},
                  {"name": "block", "type": "amazonebs"}],
      "containers": [{"name": "app", "image": "busybox", "memory": 64, "essential": true}]})";
  std::string message = parseError(document(kTask));
  EXPECT_THAT(message, HasSubstr("volumes[0].fsxWindowsFileServerVolumeConfiguration: not "
                                 "supported by this agent"));
  EXPECT_THAT(message, HasSubstr("volumes[1].type: not supported by this agent"));

  // The same task being stopped reads, its unsupported parts recorded.
  boost::json::value stopped = document(kTask);
  stopped.as_object()["desiredStatus"] = "STOPPED";
  AcsTask task = parsed(stopped);
  EXPECT_THAT(task.spec.definition.unsupported_fields,
              ElementsAre("volumes[0].fsxWindowsFileServerVolumeConfiguration", "volumes[1].type"));
}

// --- a stop --------------------------------------------------------------------------------------

TEST(AcsTaskTest, MinimalStoppedTaskParses) {
  AcsTask task = parsed(document(
      R"({"arn": "arn:aws:ecs:us-west-2:123456789012:task/shop/0f3c", "desiredStatus": "STOPPED"})"));
  EXPECT_EQ(task.spec.arn, "arn:aws:ecs:us-west-2:123456789012:task/shop/0f3c");
  EXPECT_EQ(task.spec.desired, ContainerStatus::kStopped);
  EXPECT_THAT(task.spec.definition.container_definitions, IsEmpty());
  EXPECT_FALSE(task.role_credentials);

  // A stop that repeats the whole task, including problems that would refuse a start.
  boost::json::value full = bridgeTask();
  full.as_object()["desiredStatus"] = "STOPPED";
  full.at("containers").at(0).as_object()["image"] = "";
  AcsTask stopped = parsed(full);
  EXPECT_EQ(stopped.spec.desired, ContainerStatus::kStopped);
  EXPECT_EQ(stopped.spec.definition.container_definitions.size(), 2u);
}

TEST(AcsTaskTest, ArnAndDesiredStatusAreRequired) {
  std::string message = parseError(R"({"family": "f"})");
  EXPECT_THAT(message, HasSubstr("arn: required"));
  EXPECT_THAT(message, HasSubstr("desiredStatus: required"));
  EXPECT_THAT(parseError(R"({"arn": "t", "desiredStatus": "PENDING"})"),
              HasSubstr("desiredStatus: unknown status \"PENDING\" (expected RUNNING or "
                        "STOPPED)"));
  EXPECT_THAT(parseError(R"({"arn": "t", "desiredStatus": "STOPPED", "version": "v2"})"),
              HasSubstr("version: \"v2\" is not a revision number"));
  EXPECT_THAT(parseError(boost::json::value(boost::json::array{})),
              HasSubstr("expected a task object, got an array"));
}

TEST(AcsTaskTest, ArnOfATaskThatDoesNotParse) {
  EXPECT_EQ(acsTaskArn(document(R"({"arn": "t-1", "containers": 5})")), "t-1");
  EXPECT_EQ(acsTaskArn(document(R"({"arn": 5})")), std::nullopt);
  EXPECT_EQ(acsTaskArn(document(R"({"arn": ""})")), std::nullopt);
  EXPECT_EQ(acsTaskArn(document("[]")), std::nullopt);
}

// --- errors --------------------------------------------------------------------------------------

TEST(AcsTaskTest, MalformedDockerConfigNamesThePathAndNotTheText) {
  boost::json::value task = bridgeTask();
  auto& docker = task.at("containers").at(1).as_object()["dockerConfig"].as_object();
  docker["hostConfig"] = "{\"MemoryReservation\": 67108864,\n \"Secret\" \"s3cr3t-value\"}";
  std::string message = parseError(task);
  EXPECT_THAT(message, HasSubstr("containers[1].dockerConfig.hostConfig: malformed JSON at line 2, "
                                 "column 11: syntax error"));
  EXPECT_THAT(message, Not(HasSubstr("s3cr3t")));

  docker["hostConfig"] = "[1]";
  EXPECT_THAT(parseError(task), HasSubstr("containers[1].dockerConfig.hostConfig: expected a JSON "
                                          "object, got an array"));
  docker["hostConfig"] = document(R"({"Privileged": true})");
  EXPECT_THAT(parseError(task), HasSubstr("containers[1].dockerConfig.hostConfig: expected a "
                                          "string, got an object"));
  docker["hostConfig"] = "";
  docker["config"] = "{\"Healthcheck\": {\"Test\": [\"CMD\", \"true\"], \"Interval\": \"10s\"}}";
  EXPECT_THAT(parseError(task), HasSubstr("containers[1].dockerConfig.config.Healthcheck.Interval: "
                                          "expected an integer, got a string"));
}

TEST(AcsTaskTest, DockerShapesAreCheckedWithTheirPaths) {
  boost::json::value task = withDockerConfig(document(kBridgeTask), 0, R"({"Env": ["NOVALUE"]})",
                                             R"({
      "Ulimits": [{"Name": "nofile", "Soft": "many", "Hard": 10}],
      "Devices": [{"PathOnHost": "/dev/fuse", "CgroupPermissions": "rx"}],
      "ExtraHosts": ["nocolon"],
      "Tmpfs": {"/run": "size=lots"},
      "MemoryReservation": -1,
      "LogConfig": {"Type": 5}})");
  std::string message = parseError(task);
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.config.Env[0]: expected NAME=value"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.Ulimits[0].Soft: expected "
                                 "an integer, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.Devices[0]."
                                 "CgroupPermissions: \"rx\" is not a combination of r, w and m"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.ExtraHosts[0]: "
                                 "\"nocolon\" is not hostname:address"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.Tmpfs./run: \"size=lots\" "
                                 "is not a size like size=64m"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.MemoryReservation: -1 "
                                 "bytes must not be negative"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.LogConfig.Type: expected "
                                 "a string, got an integer"));
}

TEST(AcsTaskTest, UnknownVolumeTypeIsAnError) {
  EXPECT_THAT(parseError(R"({"arn": "t", "desiredStatus": "RUNNING",
      "volumes": [{"name": "ok"}, {"name": "nfs", "type": "nfs"}]})"),
              HasSubstr("volumes[1].type: unknown volume type \"nfs\" (expected host, docker or "
                        "efs)"));
  EXPECT_THAT(parseError(R"({"arn": "t", "desiredStatus": "STOPPED",
      "volumes": [{"name": "v", "type": 1}]})"),
              HasSubstr("volumes[0].type: expected a string, got an integer"));
}

TEST(AcsTaskTest, WrongTypesNameThePath) {
  std::string message = parseError(R"({"arn": "t", "desiredStatus": "RUNNING", "cpu": "1024",
      "memory": "2 GB", "containers": [{"name": "a", "cpu": "x", "essential": "yes",
        "environment": {"MODE": 1}, "portMappings": [{"containerPort": "80"}],
        "links": "b", "dockerConfig": "{}"},
        {"name": "b", "environment": [{"name": "A", "value": "1"}],
         "linuxParameters": {"capabilities": {"add": "NET_ADMIN"}}}],
      "volumes": {"name": "v"}})");
  EXPECT_THAT(message, HasSubstr("cpu: expected a number, got a string"));
  EXPECT_THAT(message, HasSubstr("memory: expected an integer, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].cpu: expected an integer, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].essential: expected a boolean, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].environment.MODE: expected a string, got an "
                                 "integer"));
  EXPECT_THAT(message, HasSubstr("containers[0].portMappings[0].containerPort: expected an "
                                 "integer, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].links: expected an array, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig: expected an object, got a string"));
  EXPECT_THAT(message, HasSubstr("containers[1].environment: expected an object, got an array"));
  EXPECT_THAT(message, HasSubstr("containers[1].linuxParameters.capabilities.add: expected an "
                                 "array, got a string"));
  EXPECT_THAT(message, HasSubstr("volumes: expected an array, got an object"));
}

TEST(AcsTaskTest, EnumsAreChecked) {
  std::string message = parseError(R"({"arn": "t", "desiredStatus": "RUNNING",
      "containers": [{"name": "a", "healthCheckType": "ecs",
        "dependsOn": [{"containerName": "b", "condition": "READY"}],
        "registryAuthentication": {"type": "basic"},
        "secrets": [{"name": "s", "valueFrom": "p", "target": "SIDECAR"}]},
        {"name": "b", "healthCheckType": "docker"}]})");
  EXPECT_THAT(message, HasSubstr("containers[0].healthCheckType: unknown type \"ecs\" (expected "
                                 "docker)"));
  EXPECT_THAT(message, HasSubstr("containers[0].dependsOn[0].condition: unknown condition "
                                 "\"READY\""));
  EXPECT_THAT(message, HasSubstr("containers[0].registryAuthentication.type: unknown type "
                                 "\"basic\" (expected ecr or asm)"));
  EXPECT_THAT(message, HasSubstr("containers[0].secrets[0].target: unknown target \"SIDECAR\""));
  EXPECT_THAT(message, HasSubstr("containers[1].healthCheckType: \"docker\" needs a Healthcheck "
                                 "in dockerConfig.config"));
}

TEST(AcsTaskTest, FeaturesThisAgentCannotRunRefuseTheTask) {
  std::string message = parseError(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "associations": [{"name": "gpu0", "type": "gpu", "containers": ["app"],
                        "content": {"value": "0", "encoding": "identity"}}],
      "proxyConfiguration": {"type": "APPMESH", "containerName": "envoy"},
      "enableFaultInjection": false,
      "containers": [{"name": "app", "image": "busybox", "memory": 64, "essential": true,
        "firelensConfiguration": {"type": "fluentbit"},
        "managedAgents": [{"name": "ExecuteCommandAgent"}],
        "secrets": [{"name": "cert", "valueFrom": "arn:aws:secretsmanager:::secret:c",
                     "type": "MOUNT_POINT", "containerPath": "/etc/cert"}],
        "dockerConfig": {"hostConfig": "{\"Runtime\":\"nvidia\"}"}}]})");
  EXPECT_THAT(message, HasSubstr("associations: not supported by this agent"));
  EXPECT_THAT(message, HasSubstr("proxyConfiguration: not supported by this agent"));
  EXPECT_THAT(message, Not(HasSubstr("enableFaultInjection")));
  EXPECT_THAT(message, HasSubstr("containers[0].firelensConfiguration: not supported"));
  EXPECT_THAT(message, HasSubstr("containers[0].managedAgents: not supported"));
  EXPECT_THAT(message, HasSubstr("containers[0].secrets[0].type: not supported"));
  EXPECT_THAT(message, HasSubstr("containers[0].dockerConfig.hostConfig.Runtime: not supported"));
}

TEST(AcsTaskTest, ValidationProblemsUseTheContainersName) {
  std::string message = parseError(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "containers": [{"name": "a", "image": "busybox", "memory": 4, "essential": true},
                     {"name": "a", "image": "busybox", "memory": 64}]})");
  EXPECT_THAT(message, HasSubstr("containers[1] (name \"a\").name: duplicate of containers[0]"));
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"a\").memory: 4 MiB is below the 6 MiB "
                                 "minimum"));
  EXPECT_THAT(message, Not(HasSubstr("containerDefinitions")));
}

// The cluster's tasks meet the same hostile-value rules as a task definition file.
TEST(AcsTaskTest, HostileValuesAreRefusedAsInATaskDefinition) {
  boost::json::value task = bridgeTask();
  auto& web = task.at("containers").at(0).as_object();
  web["mountPoints"].as_array()[1].as_object()["containerPath"] = "/proc/sys";
  std::string message = parseError(task);
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"web\").mountPoints[1].containerPath: "
                                 "\"/proc/sys\" must not be in /proc"));
  // Hostname, ExtraHosts and DnsSearch travel in dockerConfig.
  task = withDockerConfig(document(kBridgeTask), 0, R"({"Hostname": "web\n10.0.0.1 evil",
      "Healthcheck": {"Test": ["CMD", "true"]}})",
                          R"({"ExtraHosts": ["db\nevil:10.0.0.10"], "DnsSearch": ["a..b"]})");
  message = parseError(task);
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"web\").hostname: \"web\\n10.0.0.1 evil\" "
                                 "must not contain a line break"));
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"web\").extraHosts[0].hostname"));
  EXPECT_THAT(message, HasSubstr("containers[0] (name \"web\").dnsSearchDomains[0]: \"a..b\""));
}

TEST(AcsTaskTest, NulCharactersAreRefusedEvenInsideDockerConfig) {
  boost::json::value task = bridgeTask();
  task.at("containers").at(0).as_object()["environment"].as_object()["MODE"] =
      std::string("prod\0x", 6);
  EXPECT_THAT(parseError(task), HasSubstr("containers[0].environment.MODE: contains a NUL "
                                          "character"));
  task = bridgeTask();
  task.at("containers").at(0).as_object()["environment"].as_object()[std::string("A\0B", 3)] = "1";
  EXPECT_THAT(parseError(task), HasSubstr("containers[0].environment.A\\0B: the member name "
                                          "contains a NUL character"));
  task =
      withDockerConfig(document(kBridgeTask), 0, R"({"User": "nobody\u0000root"})", kWebHostConfig);
  std::string message = parseError(task);
  EXPECT_THAT(message,
              HasSubstr("containers[0].dockerConfig.config.User: contains a NUL character"));
  EXPECT_THAT(message, Not(HasSubstr("root")));

  // A stop is only read: it must still stop the task whatever its fields hold.
  task = bridgeTask();
  task.as_object()["desiredStatus"] = "STOPPED";
  task.at("containers").at(0).as_object()["command"] = boost::json::array{std::string("a\0b", 3)};
  EXPECT_TRUE(parseAcsTask(task));
}

TEST(AcsTaskTest, EssentialIsFalseWhenAbsent) {
  EXPECT_THAT(parseError(R"({"arn": "t", "family": "f", "desiredStatus": "RUNNING",
      "containers": [{"name": "app", "image": "busybox", "memory": 64}]})"),
              HasSubstr("containers: at least one container must be essential"));
}

TEST(AcsTaskTest, LongValuesAreClippedInMessages) {
  std::string long_value(5000, 'x');
  boost::json::value task = bridgeTask();
  task.as_object()["networkMode"] = long_value;
  task.at("containers").at(0).as_object()["image"] = "Bad/" + long_value;
  task.at("containers").at(1).as_object()["healthCheckType"] = long_value;
  task.at("volumes").at(0).as_object()["type"] = long_value;
  std::string message = parseError(task);
  EXPECT_THAT(message, HasSubstr("volumes[0].type: unknown volume type \"xxx"));
  EXPECT_THAT(message, Not(HasSubstr(std::string(201, 'x'))));
  EXPECT_LT(message.size(), 1000u);

  task = bridgeTask();
  task.as_object()["networkMode"] = long_value;
  task.at("containers").at(0).as_object()["image"] = "Bad/" + long_value;
  message = parseError(task);
  EXPECT_THAT(message, HasSubstr("networkMode: \"xxx"));
  EXPECT_THAT(message, HasSubstr("(5004 characters) is not a valid image reference"));
  EXPECT_THAT(message, Not(HasSubstr(std::string(201, 'x'))));
}

TEST(AcsTaskTest, FromText) {
  auto task = parseAcsTask(boost::json::serialize(bridgeTask()));
  ASSERT_TRUE(task) << task.error().message;
  EXPECT_EQ(task->spec.definition.family, "shop-web");
  auto malformed = parseAcsTask(std::string_view(R"({"arn": "t", "roleCredentials":
      {"secretAccessKey": "s3cr3t" "x"}})"));
  ASSERT_FALSE(malformed);
  EXPECT_THAT(malformed.error().message, HasSubstr("malformed JSON at line 2, column 36"));
  EXPECT_THAT(malformed.error().message, Not(HasSubstr("s3cr3t")));
}

// Every value of the full task, in turn, replaced by each JSON kind: a parse or an error naming
// a path, never a crash.
TEST(AcsTaskFuzzTest, EveryValueReplacedByEveryKind) {
  boost::json::value task = bridgeTask();
  const std::vector<std::string> slots = ecs::testing::jsonPointers(task);
  const std::vector<boost::json::value> replacements = {nullptr,
                                                        true,
                                                        -1,
                                                        0,
                                                        70000,
                                                        1.5,
                                                        "",
                                                        "x",
                                                        "{}",
                                                        "[",
                                                        boost::json::array{},
                                                        boost::json::object{},
                                                        boost::json::array{"a", 1},
                                                        boost::json::object{{"k", 1}}};
  int errors = 0;
  for (const std::string& pointer : slots) {
    if (pointer.empty()) continue;
    boost::json::value* slot = &task.at_pointer(pointer);
    boost::json::value original = *slot;
    for (const auto& replacement : replacements) {
      *slot = replacement;
      auto result = parseAcsTask(task);
      if (!result) {
        ++errors;
        EXPECT_THAT(result.error().message, HasSubstr(": ")) << pointer;
        EXPECT_THAT(result.error().message, Not(HasSubstr("do-not-echo"))) << pointer;
      }
    }
    *slot = original;
  }
  EXPECT_GT(errors, 500);
  EXPECT_TRUE(parseAcsTask(task));
}

// Whole ACS frames, as the session reads them (parseAcsFrame, then readPayloadMessage), mutated
// for a fixed time (ECS_FUZZ_SECONDS; scripts/test.sh gives the sanitizer build 30 s): no
// crash, no hang, and every task's problem is one bounded line.
TEST(AcsFrameFuzzTest, TimedMutationsOfWholeFrames) {
  auto frame = [](boost::json::array tasks) {
    return boost::json::serialize(boost::json::object{
        {"type", "PayloadMessage"},
        {"message", boost::json::object{{"messageId", "m-1"},
                                        {"clusterArn", "arn:aws:ecs:us-west-2:1:cluster/shop"},
                                        {"containerInstanceArn", "arn:aws:ecs:us-west-2:1:ci/x"},
                                        {"seqNum", 7},
                                        {"generatedAt", 1700000000000},
                                        {"tasks", std::move(tasks)}}}});
  };
  boost::json::value stopped = bridgeTask();
  stopped.as_object()["desiredStatus"] = "STOPPED";
  std::vector<std::string> seeds = {
      frame({bridgeTask()}),
      frame({stopped, document(R"({"arn": "t2", "desiredStatus": "RUNNING", "family": "f",
          "containers": [{"name": "a", "image": "busybox", "memory": 64, "essential": true}]})")}),
      R"({"type": "HeartbeatMessage", "message": {"messageId": "h"}})",
      R"({"InvalidClusterException": "Invalid cluster"})"};
  auto options = ecs::testing::MutationFuzzer::optionsFromEnvironment(std::chrono::seconds(2));
  ecs::testing::MutationFuzzer fuzzer(seeds, options);
  size_t runs = fuzzer.run([](std::string_view text) {
    std::optional<AcsFrame> read = parseAcsFrame(text);
    if (!read) return false;
    if (read->type != "PayloadMessage") return true;
    std::optional<AcsPayload> payload = readPayloadMessage(read->message());
    if (!payload) return true;
    for (const PayloadTask& task : payload->tasks) {
      if (task.task) continue;
      const std::string& message = task.task.error().message;
      EXPECT_FALSE(message.empty());
      EXPECT_LT(message.size(), 64u << 10);
      EXPECT_EQ(message.find_first_of(std::string("\n\r\0", 3)), std::string::npos)
          << message.substr(0, 1000);
    }
    return true;
  });
  EXPECT_GT(runs, 100u);
}

}  // namespace
}  // namespace ecs::acs
