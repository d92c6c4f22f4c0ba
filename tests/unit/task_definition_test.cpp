#include "agent/engine/task_definition.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "agent/common/text.h"
#include "tests/support/json_pointers.h"
#include "tests/support/mutation_fuzzer.h"

namespace ecs::engine {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// A web server and a sidecar with every field the parser reads set at least once.
constexpr std::string_view kSample = R"({
  "family": "shop-web",
  "taskRoleArn": "arn:aws:iam::123456789012:role/shop-task",
  "executionRoleArn": "arn:aws:iam::123456789012:role/shop-exec",
  "networkMode": "bridge",
  "cpu": "1 vCPU",
  "memory": "2 GB",
  "pidMode": "task",
  "ipcMode": "task",
  "requiresCompatibilities": ["EC2", "EXTERNAL"],
  "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
  "tags": [{"key": "team", "value": "shop"}, {"key": "env", "value": "prod"}],
  "placementConstraints": [{"type": "memberOf", "expression": "attribute:x == y"}],
  "someFutureField": {"ignored": true},
  "volumes": [
    {"name": "static", "host": {"sourcePath": "/srv/static"}},
    {"name": "scratch"},
    {"name": "cache", "dockerVolumeConfiguration": {
      "scope": "shared", "autoprovision": true, "driver": "local",
      "driverOpts": {"type": "tmpfs", "device": "tmpfs"}, "labels": {"app": "shop"}}},
    {"name": "assets", "efsVolumeConfiguration": {
      "fileSystemId": "fs-0123456789abcdef0", "rootDirectory": "/",
      "transitEncryption": "ENABLED", "transitEncryptionPort": 2049,
      "authorizationConfig": {"accessPointId": "fsap-0123456789abcdef0", "iam": "ENABLED"}}}
  ],
  "containerDefinitions": [
    {
      "name": "web",
      "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/web:1.4.2",
      "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:123456789012:secret:reg"},
      "cpu": 512,
      "memory": 512,
      "memoryReservation": 256,
      "links": ["sidecar:side"],
      "portMappings": [
        {"containerPort": 80, "hostPort": 8080, "protocol": "TCP", "name": "http", "appProtocol": "http"},
        {"containerPortRange": "9000-9010", "protocol": "udp"}
      ],
      "essential": true,
      "entryPoint": ["/usr/bin/tini", "--"],
      "command": ["nginx", "-g", "daemon off;"],
      "environment": [{"name": "MODE", "value": "production"}, {"name": "EMPTY", "value": ""}],
      "environmentFiles": [{"value": "arn:aws:s3:::bucket/web.env", "type": "s3"}],
      "mountPoints": [
        {"sourceVolume": "static", "containerPath": "/usr/share/nginx/html", "readOnly": true},
        {"sourceVolume": "assets", "containerPath": "/assets"}
      ],
      "volumesFrom": [{"sourceContainer": "sidecar", "readOnly": true}],
      "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN", "cap_sys_time"], "drop": ["ALL"]},
        "devices": [{"hostPath": "/dev/fuse", "containerPath": "/dev/fuse", "permissions": ["read", "write"]}],
        "initProcessEnabled": true,
        "sharedMemorySize": 64,
        "tmpfs": [{"containerPath": "/run", "size": 32, "mountOptions": ["nosuid", "mode=0755"]}],
        "maxSwap": 0,
        "swappiness": 10
      },
      "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/db"}],
      "dependsOn": [{"containerName": "sidecar", "condition": "HEALTHY"}],
      "startTimeout": 60,
      "stopTimeout": 20,
      "hostname": "web",
      "user": "101:101",
      "workingDirectory": "/srv",
      "disableNetworking": false,
      "privileged": false,
      "readonlyRootFilesystem": true,
      "dnsServers": ["10.0.0.2", "fd00::2"],
      "dnsSearchDomains": ["shop.internal"],
      "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.10"}],
      "dockerSecurityOptions": ["no-new-privileges", "apparmor:docker-default", "label:type:svirt_apache_t"],
      "interactive": true,
      "pseudoTerminal": true,
      "dockerLabels": {"com.example.tier": "front"},
      "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 1048576}],
      "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"},
                           "secretOptions": [{"name": "token", "valueFrom": "arn:aws:ssm:::parameter/t"}]},
      "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                      "interval": 10, "timeout": 3, "retries": 5, "startPeriod": 15},
      "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"},
                         {"namespace": "kernel.shmmax", "value": "68719476736"}],
      "restartPolicy": {"enabled": true, "ignoredExitCodes": [0, 143], "restartAttemptPeriod": 120}
    },
    {
      "name": "sidecar",
      "image": "busybox",
      "memoryReservation": 64,
      "cpu": 128,
      "essential": false,
      "command": ["sh", "-c", "while true; do sleep 1; done"],
      "healthCheck": {"command": ["CMD", "true"]},
      "restartPolicy": {"enabled": true},
      "entryPoint": null,
      "portMappings": [{"containerPort": 53, "protocol": "udp"}]
    }
  ]
})";

TaskDefinition sample() {
  auto definition = parseTaskDefinition(kSample);
  EXPECT_TRUE(definition) << definition.error().message;
  return definition ? *definition : TaskDefinition{};
}

// The smallest definition that runs, for tests that build one up.
TaskDefinition minimal() {
  TaskDefinition definition;
  definition.family = "tiny";
  ContainerDefinition app;
  app.name = "app";
  app.image = "busybox";
  app.memory_mib = 128;
  definition.container_definitions.push_back(app);
  return definition;
}

ContainerDefinition& web(TaskDefinition& d) {
  return d.container_definitions.at(0);
}
ContainerDefinition& sidecar(TaskDefinition& d) {
  return d.container_definitions.at(1);
}

std::string parseError(std::string_view json) {
  auto definition = parseTaskDefinition(json);
  EXPECT_FALSE(definition) << json;
  if (definition) return "";
  EXPECT_EQ(definition.error().code, ErrorCode::kInvalidArgument);
  return definition.error().message;
}

// --- parsing ---------------------------------------------------------------------------------

TEST(TaskDefinitionParseTest, SampleRoundTripsIntoTheStructs) {
  TaskDefinition d = sample();
  EXPECT_EQ(d.family, "shop-web");
  EXPECT_EQ(d.revision, 1);
  EXPECT_EQ(d.task_role_arn, "arn:aws:iam::123456789012:role/shop-task");
  EXPECT_EQ(d.execution_role_arn, "arn:aws:iam::123456789012:role/shop-exec");
  EXPECT_EQ(d.network_mode, "bridge");
  EXPECT_EQ(d.cpu_units, 1024);
  EXPECT_EQ(d.memory_mib, 2048);
  EXPECT_EQ(d.pid_mode, "task");
  EXPECT_EQ(d.ipc_mode, "task");
  EXPECT_THAT(d.requires_compatibilities, ElementsAre("EC2", "EXTERNAL"));
  ASSERT_TRUE(d.runtime_platform);
  EXPECT_EQ(d.runtime_platform->cpu_architecture, "X86_64");
  EXPECT_EQ(d.runtime_platform->operating_system_family, "LINUX");
  EXPECT_EQ(d.tags, (std::map<std::string, std::string>{{"team", "shop"}, {"env", "prod"}}));
  EXPECT_THAT(d.unsupported_fields, IsEmpty());

  ASSERT_EQ(d.volumes.size(), 4u);
  ASSERT_TRUE(d.volumes[0].host);
  EXPECT_EQ(d.volumes[0].host->source_path, "/srv/static");
  ASSERT_TRUE(d.volumes[1].host) << "a volume with no configuration is an agent-managed host{}";
  EXPECT_EQ(d.volumes[1].host->source_path, "");
  EXPECT_FALSE(d.volumes[1].docker_volume_configuration);
  const auto& docker = d.volumes[2].docker_volume_configuration;
  ASSERT_TRUE(docker);
  EXPECT_FALSE(d.volumes[2].host);
  EXPECT_EQ(docker->scope, "shared");
  EXPECT_EQ(docker->autoprovision, true);
  EXPECT_EQ(docker->driver, "local");
  EXPECT_EQ(docker->driver_opts.at("device"), "tmpfs");
  EXPECT_EQ(docker->labels.at("app"), "shop");
  const auto& efs = d.volumes[3].efs_volume_configuration;
  ASSERT_TRUE(efs);
  EXPECT_EQ(efs->file_system_id, "fs-0123456789abcdef0");
  EXPECT_EQ(efs->root_directory, "/");
  EXPECT_TRUE(efs->transit_encryption);
  EXPECT_EQ(efs->transit_encryption_port, 2049);
  EXPECT_EQ(efs->access_point_id, "fsap-0123456789abcdef0");
  EXPECT_TRUE(efs->iam);

  ASSERT_EQ(d.container_definitions.size(), 2u);
  const ContainerDefinition& w = d.container_definitions[0];
  EXPECT_EQ(w.name, "web");
  EXPECT_EQ(w.image, "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/web:1.4.2");
  EXPECT_EQ(w.repository_credentials_parameter,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:reg");
  EXPECT_EQ(w.cpu, 512);
  EXPECT_EQ(w.memory_mib, 512);
  EXPECT_EQ(w.memory_reservation_mib, 256);
  EXPECT_THAT(w.links, ElementsAre("sidecar:side"));
  ASSERT_EQ(w.port_mappings.size(), 2u);
  EXPECT_EQ(w.port_mappings[0].container_port, 80);
  EXPECT_EQ(w.port_mappings[0].host_port, 8080);
  EXPECT_EQ(w.port_mappings[0].protocol, "tcp") << "protocol is lowercased";
  EXPECT_EQ(w.port_mappings[0].name, "http");
  EXPECT_EQ(w.port_mappings[0].app_protocol, "http");
  EXPECT_FALSE(w.port_mappings[1].container_port);
  EXPECT_FALSE(w.port_mappings[1].host_port);
  EXPECT_EQ(w.port_mappings[1].container_port_range, "9000-9010");
  EXPECT_EQ(w.port_mappings[1].protocol, "udp");
  EXPECT_TRUE(w.essential);
  EXPECT_THAT(w.entry_point, ElementsAre("/usr/bin/tini", "--"));
  EXPECT_THAT(w.command, ElementsAre("nginx", "-g", "daemon off;"));
  ASSERT_EQ(w.environment.size(), 2u);
  EXPECT_EQ(w.environment[0].name, "MODE");
  EXPECT_EQ(w.environment[0].value, "production");
  EXPECT_EQ(w.environment[1].value, "");
  ASSERT_EQ(w.environment_files.size(), 1u);
  EXPECT_EQ(w.environment_files[0].value, "arn:aws:s3:::bucket/web.env");
  EXPECT_EQ(w.environment_files[0].type, "s3");
  ASSERT_EQ(w.mount_points.size(), 2u);
  EXPECT_EQ(w.mount_points[0].source_volume, "static");
  EXPECT_EQ(w.mount_points[0].container_path, "/usr/share/nginx/html");
  EXPECT_TRUE(w.mount_points[0].read_only);
  EXPECT_FALSE(w.mount_points[1].read_only);
  ASSERT_EQ(w.volumes_from.size(), 1u);
  EXPECT_EQ(w.volumes_from[0].source_container, "sidecar");
  EXPECT_TRUE(w.volumes_from[0].read_only);

  ASSERT_TRUE(w.linux_parameters);
  const LinuxParameters& lp = *w.linux_parameters;
  EXPECT_THAT(lp.capabilities_add, ElementsAre("NET_ADMIN", "cap_sys_time"));
  EXPECT_THAT(lp.capabilities_drop, ElementsAre("ALL"));
  ASSERT_EQ(lp.devices.size(), 1u);
  EXPECT_EQ(lp.devices[0].host_path, "/dev/fuse");
  EXPECT_EQ(lp.devices[0].container_path, "/dev/fuse");
  EXPECT_THAT(lp.devices[0].permissions, ElementsAre("read", "write"));
  EXPECT_TRUE(lp.init_process_enabled);
  EXPECT_EQ(lp.shared_memory_size_mib, 64);
  ASSERT_EQ(lp.tmpfs.size(), 1u);
  EXPECT_EQ(lp.tmpfs[0].container_path, "/run");
  EXPECT_EQ(lp.tmpfs[0].size_mib, 32);
  EXPECT_THAT(lp.tmpfs[0].mount_options, ElementsAre("nosuid", "mode=0755"));
  EXPECT_EQ(lp.max_swap_mib, 0);
  EXPECT_EQ(lp.swappiness, 10);

  ASSERT_EQ(w.secrets.size(), 1u);
  EXPECT_EQ(w.secrets[0].name, "DB_PASSWORD");
  EXPECT_EQ(w.secrets[0].value_from, "arn:aws:ssm:us-east-1:123456789012:parameter/db");
  ASSERT_EQ(w.depends_on.size(), 1u);
  EXPECT_EQ(w.depends_on[0].container_name, "sidecar");
  EXPECT_EQ(w.depends_on[0].condition, ContainerDependency::Condition::kHealthy);
  EXPECT_EQ(w.start_timeout_seconds, 60);
  EXPECT_EQ(w.stop_timeout_seconds, 20);
  EXPECT_EQ(w.hostname, "web");
  EXPECT_EQ(w.user, "101:101");
  EXPECT_EQ(w.working_directory, "/srv");
  EXPECT_FALSE(w.disable_networking);
  EXPECT_FALSE(w.privileged);
  EXPECT_TRUE(w.readonly_root_filesystem);
  EXPECT_THAT(w.dns_servers, ElementsAre("10.0.0.2", "fd00::2"));
  EXPECT_THAT(w.dns_search_domains, ElementsAre("shop.internal"));
  ASSERT_EQ(w.extra_hosts.size(), 1u);
  EXPECT_EQ(w.extra_hosts[0].hostname, "db");
  EXPECT_EQ(w.extra_hosts[0].ip_address, "10.0.0.10");
  EXPECT_THAT(w.docker_security_options, ElementsAre("no-new-privileges", "apparmor:docker-default",
                                                     "label:type:svirt_apache_t"));
  EXPECT_TRUE(w.interactive);
  EXPECT_TRUE(w.pseudo_terminal);
  EXPECT_EQ(w.docker_labels.at("com.example.tier"), "front");
  ASSERT_EQ(w.ulimits.size(), 1u);
  EXPECT_EQ(w.ulimits[0].name, "nofile");
  EXPECT_EQ(w.ulimits[0].soft_limit, 65536);
  EXPECT_EQ(w.ulimits[0].hard_limit, 1048576);
  ASSERT_TRUE(w.log_configuration);
  EXPECT_EQ(w.log_configuration->log_driver, "json-file");
  EXPECT_EQ(w.log_configuration->options.at("max-size"), "10m");
  ASSERT_EQ(w.log_configuration->secret_options.size(), 1u);
  EXPECT_EQ(w.log_configuration->secret_options[0].name, "token");
  ASSERT_TRUE(w.health_check);
  EXPECT_THAT(w.health_check->command,
              ElementsAre("CMD-SHELL", "curl -f http://localhost/ || exit 1"));
  EXPECT_EQ(w.health_check->interval_seconds, 10);
  EXPECT_EQ(w.health_check->timeout_seconds, 3);
  EXPECT_EQ(w.health_check->retries, 5);
  EXPECT_EQ(w.health_check->start_period_seconds, 15);
  ASSERT_EQ(w.system_controls.size(), 2u);
  EXPECT_EQ(w.system_controls[0].name, "net.core.somaxconn");
  EXPECT_EQ(w.system_controls[0].value, "1024");
  ASSERT_TRUE(w.restart_policy);
  EXPECT_TRUE(w.restart_policy->enabled);
  EXPECT_THAT(w.restart_policy->ignored_exit_codes, ElementsAre(0, 143));
  EXPECT_EQ(w.restart_policy->restart_attempt_period_seconds, 120);

  const ContainerDefinition* s = d.container("sidecar");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s, &d.container_definitions[1]);
  EXPECT_EQ(d.container("nope"), nullptr);
  EXPECT_FALSE(s->essential);
  EXPECT_FALSE(s->memory_mib);
  EXPECT_EQ(s->memory_reservation_mib, 64);
  EXPECT_THAT(s->entry_point, IsEmpty()) << "null reads as absent";
  EXPECT_FALSE(s->linux_parameters);
  EXPECT_FALSE(s->log_configuration);
  ASSERT_TRUE(s->health_check);
  EXPECT_EQ(s->health_check->interval_seconds, 30);
  EXPECT_EQ(s->health_check->timeout_seconds, 5);
  EXPECT_EQ(s->health_check->retries, 3);
  EXPECT_EQ(s->health_check->start_period_seconds, 0);
  ASSERT_TRUE(s->restart_policy);
  EXPECT_EQ(s->restart_policy->restart_attempt_period_seconds, 300);
  EXPECT_EQ(s->port_mappings.at(0).protocol, "udp");
}

TEST(TaskDefinitionParseTest, SampleIsValid) {
  EXPECT_THAT(validateTaskDefinition(sample()), IsEmpty());
  auto loaded = loadTaskDefinition(kSample);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->family, "shop-web");
}

TEST(TaskDefinitionParseTest, DefaultsWhenFieldsAreAbsent) {
  auto d = parseTaskDefinition(
      R"({"family": "f", "containerDefinitions": [{"name": "a", "image": "busybox",
          "portMappings": [{"containerPort": 80}]}]})");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->network_mode, "bridge");
  EXPECT_FALSE(d->cpu_units);
  EXPECT_FALSE(d->memory_mib);
  const auto& a = d->container_definitions.at(0);
  EXPECT_TRUE(a.essential);
  EXPECT_EQ(a.cpu, 0);
  EXPECT_FALSE(a.memory_mib);
  EXPECT_FALSE(a.health_check);
  EXPECT_EQ(a.port_mappings.at(0).protocol, "tcp");
  EXPECT_FALSE(a.port_mappings.at(0).host_port);
}

TEST(TaskDefinitionParseTest, UnwrapsDescribeTaskDefinitionOutput) {
  auto d = parseTaskDefinition(R"({
    "taskDefinition": {
      "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/shop-web:7",
      "family": "shop-web",
      "revision": 7,
      "status": "ACTIVE",
      "compatibilities": ["EC2"],
      "registeredAt": "2024-05-01T10:00:00.000000+00:00",
      "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}],
      "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64,
                                "essential": true, "mountPoints": [], "volumesFrom": []}],
      "volumes": []
    },
    "tags": [{"key": "team", "value": "shop"}]
  })");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->revision, 7);
  EXPECT_EQ(d->family, "shop-web");
  EXPECT_EQ(d->task_definition_arn,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/shop-web:7");
  EXPECT_EQ(d->tags.at("team"), "shop");
  ASSERT_EQ(d->container_definitions.size(), 1u);
  EXPECT_EQ(d->container_definitions[0].memory_mib, 64);
  EXPECT_THAT(validateTaskDefinition(*d), IsEmpty());
}

TEST(TaskDefinitionParseTest, ErrorsInsideTheWrapperNameTheRealPath) {
  EXPECT_THAT(parseError(R"({"taskDefinition": {"containerDefinitions": [{"cpu": "1"}]}})"),
              HasSubstr("taskDefinition.containerDefinitions[0].cpu: expected an integer, got a "
                        "string"));
  EXPECT_THAT(parseError(R"({"taskDefinition": []})"),
              HasSubstr("taskDefinition: expected an object, got an array"));
}

TEST(TaskDefinitionParseTest, MalformedJsonNamesLineAndColumn) {
  // Line 7 lacks the comma after "memory": 128, so the parser stops at line 7, column 5.
  std::string json =
      "{\n"                              // 1
      "  \"family\": \"f\",\n"           // 2
      "  \"containerDefinitions\": [\n"  // 3
      "    {\n"                          // 4
      "    \"name\": \"a\",\n"           // 5
      "    \"memory\": 128\n"            // 6
      "    \"image\": \"busybox\"\n"     // 7
      "    }\n"                          // 8
      "  ]\n"                            // 9
      "}\n";
  EXPECT_THAT(parseError(json), HasSubstr("malformed JSON at line 7, column 5: syntax error"));
  EXPECT_THAT(parseError(json), HasSubstr("near '\"image\": \"busybox\"'"));
}

TEST(TaskDefinitionParseTest, MalformedJsonOtherFaults) {
  EXPECT_THAT(parseError(""), HasSubstr("line 1, column 1: incomplete JSON (at the end"));
  EXPECT_THAT(parseError("{\"family\": \"f\""), HasSubstr("line 1, column 15: incomplete JSON"));
  EXPECT_THAT(parseError("{\"a\": 1}\n  x"), HasSubstr("line 2, column 3: extra data"));
  // Columns count characters, not bytes: "é" is two bytes.
  EXPECT_THAT(parseError("{\"é\": tru}"), HasSubstr("line 1, column 7:"));
  EXPECT_THAT(parseError("{\"a\": \"\xff\"}"), HasSubstr("line 1, column 8:"));
  EXPECT_THAT(parseError(std::string(100, '[')), HasSubstr("too deep"));
  EXPECT_THAT(parseError("[1, 2]"), HasSubstr("expected a JSON object at the top level, got an "
                                              "array"));
}

TEST(TaskDefinitionParseTest, TypeErrorsNameThePath) {
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"name": "a"}, {"name": "b",
                  "portMappings": [{"containerPort": "80"}]}]})"),
              HasSubstr("containerDefinitions[1].portMappings[0].containerPort: expected an "
                        "integer, got a string"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": {"name": "a"}})"),
              HasSubstr("containerDefinitions: expected an array, got an object"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"essential": "yes"}]})"),
              HasSubstr("containerDefinitions[0].essential: expected a boolean, got a string"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"command": ["a", 1]}]})"),
              HasSubstr("containerDefinitions[0].command[1]: expected a string, got an integer"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"dockerLabels": {"a": 1}}]})"),
              HasSubstr("containerDefinitions[0].dockerLabels.a: expected a string, got an "
                        "integer"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"memory": 1.5}]})"),
              HasSubstr("containerDefinitions[0].memory: expected an integer, got 1.5"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"memory": 99999999999}]})"),
              HasSubstr("containerDefinitions[0].memory: 99999999999 is out of range"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"linuxParameters":
                  {"capabilities": {"add": "NET_ADMIN"}}}]})"),
              HasSubstr("containerDefinitions[0].linuxParameters.capabilities.add: expected an "
                        "array, got a string"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"ulimits": [{"name": "nofile",
                  "softLimit": 1}]}]})"),
              HasSubstr("containerDefinitions[0].ulimits[0].hardLimit: required"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"systemControls": [{"namespace": 5}]}]})"),
              HasSubstr("containerDefinitions[0].systemControls[0].namespace: expected a string"));
  EXPECT_THAT(parseError(R"({"volumes": [{"name": "v", "host": "/data"}]})"),
              HasSubstr("volumes[0].host: expected an object, got a string"));
  EXPECT_THAT(parseError(R"({"tags": [{"key": true}]})"),
              HasSubstr("tags[0].key: expected a string, got a boolean"));
}

TEST(TaskDefinitionParseTest, EveryTypeErrorIsReported) {
  std::string message = parseError(
      R"({"family": 1, "containerDefinitions": [{"name": "a", "cpu": "x", "essential": 0}]})");
  EXPECT_THAT(message, HasSubstr("family: expected a string, got an integer"));
  EXPECT_THAT(message, HasSubstr("containerDefinitions[0].cpu: expected an integer, got a string"));
  EXPECT_THAT(message,
              HasSubstr("containerDefinitions[0].essential: expected a boolean, got an integer"));
}

TEST(TaskDefinitionParseTest, WholeNumbersWithAFractionAreIntegers) {
  auto d = parseTaskDefinition(R"({"containerDefinitions": [{"memory": 512.0, "cpu": 1e2}]})");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->container_definitions[0].memory_mib, 512);
  EXPECT_EQ(d->container_definitions[0].cpu, 100);
}

TEST(TaskDefinitionParseTest, EnumsAreCheckedWhileParsing) {
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"dependsOn":
                  [{"containerName": "b", "condition": "READY"}]}]})"),
              HasSubstr("containerDefinitions[0].dependsOn[0].condition: unknown condition "
                        "\"READY\" (expected START, COMPLETE, SUCCESS or HEALTHY)"));
  EXPECT_THAT(parseError(R"({"containerDefinitions": [{"dependsOn": [{"containerName": "b"}]}]})"),
              HasSubstr("containerDefinitions[0].dependsOn[0].condition: required"));
  EXPECT_THAT(parseError(R"({"volumes": [{"name": "v", "efsVolumeConfiguration":
                  {"fileSystemId": "fs-1", "transitEncryption": "yes"}}]})"),
              HasSubstr("volumes[0].efsVolumeConfiguration.transitEncryption: unknown value "
                        "\"yes\" (expected ENABLED or DISABLED)"));
  EXPECT_THAT(parseError(R"({"volumes": [{"name": "v", "efsVolumeConfiguration":
                  {"fileSystemId": "fs-1", "authorizationConfig": {"iam": "on"}}}]})"),
              HasSubstr("volumes[0].efsVolumeConfiguration.authorizationConfig.iam: unknown "
                        "value \"on\""));
  auto d = parseTaskDefinition(R"({"containerDefinitions": [{"dependsOn": [
      {"containerName": "a", "condition": "START"}, {"containerName": "b", "condition": "COMPLETE"},
      {"containerName": "c", "condition": "SUCCESS"}]}]})");
  ASSERT_TRUE(d) << d.error().message;
  using Condition = ContainerDependency::Condition;
  const auto& deps = d->container_definitions[0].depends_on;
  ASSERT_EQ(deps.size(), 3u);
  EXPECT_EQ(deps[0].condition, Condition::kStart);
  EXPECT_EQ(deps[1].condition, Condition::kComplete);
  EXPECT_EQ(deps[2].condition, Condition::kSuccess);
}

TEST(TaskDefinitionParseTest, RecordsFeaturesThisAgentCannotRun) {
  auto d = parseTaskDefinition(R"({"family": "f",
      "proxyConfiguration": {"containerName": "envoy"},
      "inferenceAccelerators": [],
      "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64,
          "firelensConfiguration": {"type": "fluentbit"},
          "resourceRequirements": [{"type": "GPU", "value": "1"}]}],
      "volumes": [{"name": "w", "fsxWindowsFileServerVolumeConfiguration": {"fileSystemId": "x"}}]})");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_THAT(
      d->unsupported_fields,
      ElementsAre("containerDefinitions[0].resourceRequirements",
                  "containerDefinitions[0].firelensConfiguration",
                  "volumes[0].fsxWindowsFileServerVolumeConfiguration", "proxyConfiguration"));
  EXPECT_FALSE(d->volumes[0].host) << "an FSx volume is not an empty host volume";
  auto problems = validateTaskDefinition(*d);
  EXPECT_THAT(problems, Contains("proxyConfiguration: not supported by this agent"));
  EXPECT_THAT(
      problems,
      Contains("containerDefinitions[0].resourceRequirements: not supported by this agent"));
}

// --- task cpu and memory strings ---------------------------------------------------------------

struct SizeCase {
  std::string text;
  std::optional<int> value;
};

class TaskCpuTest : public ::testing::TestWithParam<SizeCase> {};
TEST_P(TaskCpuTest, Parses) {
  auto parsed = parseTaskCpu(GetParam().text);
  if (GetParam().value) {
    ASSERT_TRUE(parsed) << GetParam().text << ": " << parsed.error().message;
    EXPECT_EQ(*parsed, *GetParam().value) << GetParam().text;
  } else {
    ASSERT_FALSE(parsed) << GetParam().text << " gave " << *parsed;
    EXPECT_THAT(parsed.error().message, HasSubstr("is not a whole number of CPU units"));
  }
}
INSTANTIATE_TEST_SUITE_P(
    Forms, TaskCpuTest,
    ::testing::Values(SizeCase{"256", 256}, SizeCase{"1024", 1024}, SizeCase{"1 vCPU", 1024},
                      SizeCase{"0.5 vcpu", 512}, SizeCase{".25 vCPU", 256},
                      SizeCase{"0.125 VCPU", 128}, SizeCase{"2vCPU", 2048},
                      SizeCase{" 4 vCPU ", 4096}, SizeCase{"16 vCPU", 16384},
                      SizeCase{"lots", std::nullopt}, SizeCase{"", std::nullopt},
                      SizeCase{"-256", std::nullopt}, SizeCase{"256.5", std::nullopt},
                      SizeCase{"0.1 vCPU", std::nullopt}, SizeCase{"1 cpu", std::nullopt},
                      SizeCase{"1..2 vCPU", std::nullopt}, SizeCase{"vCPU", std::nullopt},
                      SizeCase{"99999999999", std::nullopt}, SizeCase{"1 GB", std::nullopt}));

class TaskMemoryTest : public ::testing::TestWithParam<SizeCase> {};
TEST_P(TaskMemoryTest, Parses) {
  auto parsed = parseTaskMemory(GetParam().text);
  if (GetParam().value) {
    ASSERT_TRUE(parsed) << GetParam().text << ": " << parsed.error().message;
    EXPECT_EQ(*parsed, *GetParam().value) << GetParam().text;
  } else {
    ASSERT_FALSE(parsed) << GetParam().text << " gave " << *parsed;
    EXPECT_THAT(parsed.error().message, HasSubstr("is not a whole number of MiB"));
  }
}
INSTANTIATE_TEST_SUITE_P(
    Forms, TaskMemoryTest,
    ::testing::Values(SizeCase{"512", 512}, SizeCase{"1 GB", 1024}, SizeCase{"2GB", 2048},
                      SizeCase{"0.5 gb", 512}, SizeCase{"1.5 GiB", 1536}, SizeCase{"512 MiB", 512},
                      SizeCase{"300 MB", 300}, SizeCase{"garbage", std::nullopt},
                      SizeCase{"1 TB", std::nullopt}, SizeCase{"512.5", std::nullopt},
                      SizeCase{"0.0001 GB", std::nullopt}, SizeCase{"-1", std::nullopt},
                      SizeCase{"1 GB extra", std::nullopt}));

TEST(TaskDefinitionParseTest, TaskSizeErrorsNameTheField) {
  EXPECT_THAT(parseError(R"({"cpu": "a lot"})"),
              HasSubstr("cpu: \"a lot\" is not a whole number of CPU units or a vCPU amount"));
  EXPECT_THAT(parseError(R"({"taskDefinition": {"memory": "2 TB"}})"),
              HasSubstr("taskDefinition.memory: \"2 TB\" is not a whole number of MiB"));
  EXPECT_THAT(parseError(R"({"memory": true})"),
              HasSubstr("memory: expected a string, got a boolean"));
  auto numbers = parseTaskDefinition(R"({"cpu": 256, "memory": 512})");
  ASSERT_TRUE(numbers) << numbers.error().message;
  EXPECT_EQ(numbers->cpu_units, 256);
  EXPECT_EQ(numbers->memory_mib, 512);
}

// --- helpers -------------------------------------------------------------------------------------

TEST(TaskDefinitionHelpersTest, PortRanges) {
  auto range = parsePortRange("8000-8010");
  ASSERT_TRUE(range);
  EXPECT_EQ(range->first, 8000);
  EXPECT_EQ(range->last, 8010);
  EXPECT_EQ(range->size(), 11);
  EXPECT_THAT(parsePortRange("8000").error().message, HasSubstr("is not a port range"));
  EXPECT_THAT(parsePortRange("a-b").error().message, HasSubstr("is not a port range"));
  EXPECT_THAT(parsePortRange("8000-").error().message, HasSubstr("is not a port range"));
  EXPECT_THAT(parsePortRange(" 1-2").error().message, HasSubstr("is not a port range"));
  EXPECT_THAT(parsePortRange("0-10").error().message, HasSubstr("outside 1..65535"));
  EXPECT_THAT(parsePortRange("65000-65536").error().message, HasSubstr("outside 1..65535"));
  EXPECT_THAT(parsePortRange("9000-8000").error().message,
              HasSubstr("the first port must be below the last"));
  EXPECT_THAT(parsePortRange("9000-9000").error().message,
              HasSubstr("the first port must be below the last"));
}

TEST(TaskDefinitionHelpersTest, CapabilityNamesAsDockerSpellsThem) {
  EXPECT_EQ(canonicalCapabilityName("NET_ADMIN"), "CAP_NET_ADMIN");
  EXPECT_EQ(canonicalCapabilityName("cap_net_admin"), "CAP_NET_ADMIN");
  EXPECT_EQ(canonicalCapabilityName("Sys_Time"), "CAP_SYS_TIME");
  EXPECT_EQ(canonicalCapabilityName("all"), "ALL");
  EXPECT_EQ(canonicalCapabilityName("ALL"), "ALL");
  EXPECT_EQ(canonicalCapabilityName("NET_FLY"), std::nullopt);
  EXPECT_EQ(canonicalCapabilityName("12"), std::nullopt) << "libcap takes numbers; Docker not";
  EXPECT_EQ(canonicalCapabilityName("net_admin,sys_admin"), std::nullopt);
  EXPECT_EQ(canonicalCapabilityName("CAP_"), std::nullopt);
  EXPECT_EQ(canonicalCapabilityName(""), std::nullopt);
}

// --- validation: one test per rule, each asserting the message names the field ------------------

#define EXPECT_PROBLEM(definition, text) \
  EXPECT_THAT(validateTaskDefinition(definition), Contains(HasSubstr(text)))
#define EXPECT_NO_PROBLEMS(definition) EXPECT_THAT(validateTaskDefinition(definition), IsEmpty())

TEST(TaskDefinitionValidateTest, MinimalIsValid) {
  EXPECT_NO_PROBLEMS(minimal());
}

TEST(TaskDefinitionValidateTest, ContainerCount) {
  TaskDefinition d = minimal();
  d.container_definitions.clear();
  EXPECT_PROBLEM(d, "containerDefinitions: at least one container is required");
  d = minimal();
  for (int i = 1; i <= 10; ++i) {
    d.container_definitions.push_back(d.container_definitions[0]);
    d.container_definitions.back().name = "c" + std::to_string(i);
  }
  EXPECT_PROBLEM(d, "containerDefinitions: 11 containers is more than the ECS limit of 10");
  d.container_definitions.pop_back();
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, ContainerNames) {
  TaskDefinition d = sample();
  sidecar(d).name = "";
  EXPECT_PROBLEM(d, "containerDefinitions[1].name: required");
  d = sample();
  sidecar(d).name = "side car";
  EXPECT_PROBLEM(d, "containerDefinitions[1] (name \"side car\").name: must be 1-255 letters");
  sidecar(d).name = std::string(256, 'a');
  EXPECT_PROBLEM(d, ".name: must be 1-255 letters");
  d = sample();
  sidecar(d).name = "web";
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"web\").name: duplicate of "
                 "containerDefinitions[0]");
}

TEST(TaskDefinitionValidateTest, Family) {
  TaskDefinition d = minimal();
  d.family = "";
  EXPECT_PROBLEM(d, "family: required");
  d.family = "my:family";
  EXPECT_PROBLEM(d, "family: \"my:family\" must be 1-255 letters");
}

TEST(TaskDefinitionValidateTest, Image) {
  TaskDefinition d = sample();
  sidecar(d).image = "";
  EXPECT_PROBLEM(d, "containerDefinitions[1] (name \"sidecar\").image: required");
  sidecar(d).image = "Upper/Case:tag";
  EXPECT_PROBLEM(d, "containerDefinitions[1] (name \"sidecar\").image: ");
  sidecar(d).image = "busybox:bad tag";
  EXPECT_PROBLEM(d, "containerDefinitions[1] (name \"sidecar\").image: ");
}

TEST(TaskDefinitionValidateTest, AtLeastOneEssentialContainer) {
  TaskDefinition d = minimal();
  d.container_definitions[0].essential = false;
  EXPECT_PROBLEM(d, "containerDefinitions: at least one container must be essential");
}

TEST(TaskDefinitionValidateTest, Capabilities) {
  TaskDefinition d = sample();
  web(d).linux_parameters->capabilities_add.push_back("NET_FLY");
  web(d).linux_parameters->capabilities_drop.push_back("cap_bogus");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").linuxParameters.capabilities.add[2]: "
                 "unknown capability \"NET_FLY\"");
  EXPECT_PROBLEM(d, "linuxParameters.capabilities.drop[1]: unknown capability \"cap_bogus\"");
  d = sample();
  web(d).linux_parameters->capabilities_add = {"sys_admin", "CAP_SYS_PTRACE", "Net_Raw", "all"};
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, Ulimits) {
  TaskDefinition d = sample();
  web(d).ulimits = {{"files", 1, 2}, {"nofile", 10, 5}, {"nproc", -1, 10}, {"core", 0, -1}};
  std::string prefix = "containerDefinitions[0] (name \"web\").ulimits";
  EXPECT_PROBLEM(d, prefix + "[0].name: unknown ulimit \"files\"");
  EXPECT_PROBLEM(d, prefix + "[1].softLimit: 10 is more than hardLimit 5");
  EXPECT_PROBLEM(d, prefix + "[2].softLimit: -1 is negative");
  EXPECT_PROBLEM(d, prefix + "[3].hardLimit: -1 is negative");
  web(d).ulimits.clear();
  for (std::string name : {"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}) {
    web(d).ulimits.push_back({name, 1, 1});
  }
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, DependsOnUnknownOrSelf) {
  TaskDefinition d = sample();
  web(d).depends_on.push_back({"db", ContainerDependency::Condition::kStart});
  web(d).depends_on.push_back({"web", ContainerDependency::Condition::kStart});
  web(d).depends_on.push_back({"", ContainerDependency::Condition::kStart});
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").dependsOn[1].containerName: unknown "
                 "container \"db\"");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").dependsOn[2].containerName: a "
                 "container cannot depend on itself");
  EXPECT_PROBLEM(d, "dependsOn[3].containerName: required");
}

TEST(TaskDefinitionValidateTest, DependsOnCycleIsNamed) {
  TaskDefinition d = sample();
  sidecar(d).depends_on.push_back({"web", ContainerDependency::Condition::kStart});
  // web links to and mounts volumes from sidecar too, so the cycle goes through those edges.
  web(d).links.clear();
  web(d).volumes_from.clear();
  EXPECT_PROBLEM(d, "dependsOn cycle: web -> sidecar -> web");

  TaskDefinition three = minimal();
  for (std::string name : {"b", "c"}) {
    three.container_definitions.push_back(three.container_definitions[0]);
    three.container_definitions.back().name = name;
  }
  using Condition = ContainerDependency::Condition;
  three.container_definitions[0].depends_on = {{"b", Condition::kStart}};
  three.container_definitions[1].depends_on = {{"c", Condition::kStart}};
  three.container_definitions[2].depends_on = {{"app", Condition::kStart}};
  auto problems = validateTaskDefinition(three);
  EXPECT_THAT(problems, ElementsAre("dependsOn cycle: app -> b -> c -> app"));
}

TEST(TaskDefinitionValidateTest, CycleThroughLinksAndVolumesFrom) {
  TaskDefinition d = sample();
  sidecar(d).volumes_from.push_back({"web", false});
  web(d).links.clear();
  web(d).depends_on.clear();
  EXPECT_PROBLEM(d, "dependency cycle: web -(volumesFrom)-> sidecar -(volumesFrom)-> web");
}

TEST(TaskDefinitionValidateTest, LongChainWithoutCycle) {
  TaskDefinition d = minimal();
  for (int i = 1; i < 10; ++i) {
    d.container_definitions.push_back(d.container_definitions[0]);
    d.container_definitions.back().name = "c" + std::to_string(i);
    d.container_definitions.back().depends_on = {
        {d.container_definitions[i - 1].name, ContainerDependency::Condition::kStart}};
  }
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, DependencyConditions) {
  TaskDefinition d = sample();
  sidecar(d).health_check.reset();
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").dependsOn[0].condition: HEALTHY needs "
                 "a healthCheck on \"sidecar\"");
  d = sample();
  sidecar(d).essential = true;
  web(d).depends_on[0].condition = ContainerDependency::Condition::kSuccess;
  EXPECT_PROBLEM(d,
                 "dependsOn[0].condition: SUCCESS cannot be used on essential container "
                 "\"sidecar\"");
  web(d).depends_on[0].condition = ContainerDependency::Condition::kComplete;
  EXPECT_PROBLEM(d, "dependsOn[0].condition: COMPLETE cannot be used on essential container");
  sidecar(d).essential = false;
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, LinksAndVolumesFrom) {
  TaskDefinition d = sample();
  web(d).links.push_back("db:database");
  web(d).volumes_from.push_back({"data", false});
  web(d).volumes_from.push_back({"web", false});
  EXPECT_PROBLEM(d, "containerDefinitions[0] (name \"web\").links[1]: unknown container \"db\"");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").volumesFrom[1].sourceContainer: "
                 "unknown container \"data\"");
  EXPECT_PROBLEM(d, "volumesFrom[2].sourceContainer: a container cannot mount its own volumes");
  d = sample();
  d.network_mode = "host";
  web(d).port_mappings.pop_back();
  web(d).port_mappings[0].host_port = 80;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").links[0]: links need networkMode "
                 "\"bridge\"");
}

TEST(TaskDefinitionValidateTest, ContainerMemory) {
  TaskDefinition d = sample();
  web(d).memory_mib = 4;
  web(d).memory_reservation_mib = 5;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").memory: 4 MiB is below the 6 MiB "
                 "minimum");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").memoryReservation: 5 MiB is below the "
                 "6 MiB minimum");
  d = sample();
  web(d).memory_reservation_mib = 1024;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").memoryReservation: 1024 MiB is more "
                 "than memory (512 MiB)");
  d = sample();
  web(d).memory_reservation_mib = 512;  // equal is fine
  EXPECT_NO_PROBLEMS(d);
  web(d).memory_mib = 4096;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").memory: 4096 MiB is more than the "
                 "task's memory (2048 MiB)");
}

TEST(TaskDefinitionValidateTest, MemoryIsRequiredWithoutTaskMemory) {
  TaskDefinition d = sample();
  d.memory_mib.reset();
  d.cpu_units.reset();
  EXPECT_NO_PROBLEMS(d) << "web has memory, sidecar memoryReservation";
  sidecar(d).memory_reservation_mib.reset();
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"sidecar\").memory: memory or "
                 "memoryReservation is required when the task sets no memory");
  d.memory_mib = 1024;
  EXPECT_NO_PROBLEMS(d) << "task memory makes container memory optional";
}

TEST(TaskDefinitionValidateTest, TaskMemoryAndCpu) {
  TaskDefinition d = sample();
  d.memory_mib = 5;
  EXPECT_PROBLEM(d, "memory: 5 MiB is below the 6 MiB minimum");
  d = sample();
  d.memory_mib = 300;
  web(d).memory_mib = 300;
  EXPECT_PROBLEM(d,
                 "memory: the containers' memoryReservation total 320 MiB is more than the "
                 "task's 300 MiB");
  d = sample();
  d.cpu_units = 512;
  EXPECT_PROBLEM(d, "cpu: the containers' cpu total 640 units is more than the task's 512");
  d.cpu_units = 64;
  EXPECT_PROBLEM(d, "cpu: 64 units is outside 128..196608");
  d = sample();
  web(d).cpu = -1;
  EXPECT_PROBLEM(d, "containerDefinitions[0] (name \"web\").cpu: -1 must not be negative");
}

TEST(TaskDefinitionValidateTest, PortNumbers) {
  TaskDefinition d = sample();
  web(d).port_mappings[0].container_port = 0;
  web(d).port_mappings[0].host_port = 70000;
  sidecar(d).port_mappings[0].container_port = 65536;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings[0].containerPort: 0 is "
                 "outside 1..65535");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings[0].hostPort: 70000 is "
                 "outside 0..65535");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"sidecar\").portMappings[0].containerPort: "
                 "65536 is outside 1..65535");
  d = sample();
  web(d).port_mappings[0].host_port = 0;  // dynamic
  EXPECT_NO_PROBLEMS(d);
  web(d).port_mappings[0].container_port.reset();
  EXPECT_PROBLEM(d, "portMappings[0].containerPort: required (or containerPortRange)");
}

TEST(TaskDefinitionValidateTest, PortProtocolAndAppProtocol) {
  TaskDefinition d = sample();
  web(d).port_mappings[0].protocol = "sctp";
  web(d).port_mappings[0].app_protocol = "websocket";
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings[0].protocol: \"sctp\" is "
                 "not one of tcp, udp");
  EXPECT_PROBLEM(d, "portMappings[0].appProtocol: \"websocket\" is not one of http, http2, grpc");
}

TEST(TaskDefinitionValidateTest, ContainerPortRanges) {
  TaskDefinition d = sample();
  PortMapping& range = web(d).port_mappings[1];
  std::string field = "containerDefinitions[0] (name \"web\").portMappings[1]";
  range.container_port_range = "9010-9000";
  EXPECT_PROBLEM(d, field + ".containerPortRange: \"9010-9000\": the first port must be below");
  range.container_port_range = "9000-99999";
  EXPECT_PROBLEM(d, field + ".containerPortRange: \"9000-99999\" is outside 1..65535");
  range.container_port_range = "9000-123456";
  EXPECT_PROBLEM(d, field + ".containerPortRange: \"9000-123456\" is not a port range");
  range.container_port_range = "0-10";
  EXPECT_PROBLEM(d, field + ".containerPortRange: \"0-10\" is outside 1..65535");
  range.container_port_range = "nine";
  EXPECT_PROBLEM(d, field + ".containerPortRange: \"nine\" is not a port range");
  range.container_port_range = "9000-9010";
  range.container_port = 9000;
  range.host_port = 9000;
  EXPECT_PROBLEM(d, field + ".containerPortRange: cannot be combined with containerPort");
  EXPECT_PROBLEM(d, field + ".hostPort: cannot be combined with containerPortRange");

  d = sample();
  d.network_mode = "host";
  web(d).links.clear();
  web(d).port_mappings[0].host_port = 80;
  EXPECT_PROBLEM(d, field + ".containerPortRange: needs networkMode bridge or awsvpc");

  d = sample();
  web(d).port_mappings.push_back({std::nullopt, std::nullopt, "udp", "9005-9020", "", ""});
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings[2]: container port "
                 "9005/udp is also used by containerDefinitions[0] (name \"web\")."
                 "portMappings[1]");
  web(d).port_mappings.back().protocol = "tcp";
  EXPECT_NO_PROBLEMS(d) << "tcp and udp ranges may overlap";

  d = sample();
  for (int i = 0; i < 100; ++i) {
    web(d).port_mappings.push_back({std::nullopt, std::nullopt, "tcp",
                                    fmt::format("{}-{}", 20000 + 2 * i, 20001 + 2 * i), "", ""});
  }
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings: 102 mappings is more than "
                 "the limit of 100 per container");
}

TEST(TaskDefinitionValidateTest, DuplicatePorts) {
  TaskDefinition d = sample();
  web(d).port_mappings.push_back({80, std::nullopt, "tcp", "", "", ""});
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").portMappings[2]: container port "
                 "80/tcp is also used by containerDefinitions[0] (name \"web\").portMappings[0]");
  web(d).port_mappings.back().protocol = "udp";
  EXPECT_NO_PROBLEMS(d);

  // Bridge: each container has its own namespace, so only fixed host ports clash.
  d = sample();
  sidecar(d).port_mappings = {{80, std::nullopt, "tcp", "", "", ""}};
  EXPECT_NO_PROBLEMS(d);
  sidecar(d).port_mappings[0].host_port = 8080;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"sidecar\").portMappings[0]: host port "
                 "8080/tcp is also used by containerDefinitions[0] (name \"web\").portMappings[0]");

  // awsvpc: one namespace for the task, so container ports clash across containers.
  d = sample();
  d.network_mode = "awsvpc";
  web(d).links.clear();
  web(d).hostname.clear();
  web(d).dns_servers.clear();
  web(d).dns_search_domains.clear();
  web(d).extra_hosts.clear();
  web(d).port_mappings[0].host_port.reset();
  sidecar(d).port_mappings = {{80, std::nullopt, "tcp", "", "", ""}};
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"sidecar\").portMappings[0]: container port "
                 "80/tcp is also used by containerDefinitions[0] (name \"web\").portMappings[0]");
  sidecar(d).port_mappings = {{9005, std::nullopt, "udp", "", "", ""}};
  EXPECT_PROBLEM(d,
                 "containerDefinitions[1] (name \"sidecar\").portMappings[0]: container port "
                 "9005/udp is also used by containerDefinitions[0] (name \"web\").portMappings[1]");
  sidecar(d).port_mappings = {{81, std::nullopt, "tcp", "", "", ""}};
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, HostPortMustMatchInHostAndAwsvpcModes) {
  for (std::string mode : {"host", "awsvpc"}) {
    TaskDefinition d = minimal();
    d.network_mode = mode;
    d.container_definitions[0].port_mappings = {{80, 8080, "tcp", "", "", ""}};
    EXPECT_PROBLEM(d,
                   "containerDefinitions[0] (name \"app\").portMappings[0].hostPort: 8080 must "
                   "equal containerPort (80) or be omitted with networkMode \"" +
                       mode + "\"");
    d.container_definitions[0].port_mappings[0].host_port = 80;
    EXPECT_NO_PROBLEMS(d) << mode;
    d.container_definitions[0].port_mappings[0].host_port.reset();
    EXPECT_NO_PROBLEMS(d) << mode;
  }
}

TEST(TaskDefinitionValidateTest, NetworkModes) {
  TaskDefinition d = minimal();
  d.network_mode = "nat";
  EXPECT_PROBLEM(d, "networkMode: \"nat\" is not one of bridge, host, awsvpc, none");
  d.network_mode = "none";
  EXPECT_NO_PROBLEMS(d);
  d.container_definitions[0].port_mappings = {{80, std::nullopt, "tcp", "", "", ""}};
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"app\").portMappings: not allowed with "
                 "networkMode \"none\"");
}

TEST(TaskDefinitionValidateTest, AwsvpcRefusesHostnameAndDnsSettings) {
  TaskDefinition d = sample();
  d.network_mode = "awsvpc";
  web(d).links.clear();
  web(d).port_mappings[0].host_port = 80;
  std::string prefix = "containerDefinitions[0] (name \"web\").";
  EXPECT_PROBLEM(d, prefix + "hostname: not allowed with networkMode awsvpc");
  EXPECT_PROBLEM(d, prefix + "dnsServers: not allowed with networkMode awsvpc");
  EXPECT_PROBLEM(d, prefix + "dnsSearchDomains: not allowed with networkMode awsvpc");
  EXPECT_PROBLEM(d, prefix + "extraHosts: not allowed with networkMode awsvpc");
}

TEST(TaskDefinitionValidateTest, HealthCheck) {
  TaskDefinition d = sample();
  std::string prefix = "containerDefinitions[0] (name \"web\").healthCheck";
  web(d).health_check->command.clear();
  EXPECT_PROBLEM(d, prefix + ".command: required");
  web(d).health_check->command = {"curl", "-f", "http://localhost/"};
  EXPECT_PROBLEM(d, prefix + ".command[0]: \"curl\" must be CMD, CMD-SHELL or NONE");
  web(d).health_check->command = {"CMD-SHELL"};
  EXPECT_PROBLEM(d, prefix + ".command: CMD-SHELL needs a command after it");
  web(d).health_check->command = {"NONE"};
  EXPECT_NO_PROBLEMS(d);
  *web(d).health_check = HealthCheck{{"CMD", "true"}, 4, 1, 0, -1};
  EXPECT_PROBLEM(d, prefix + ".interval: 4 is outside 5..300");
  EXPECT_PROBLEM(d, prefix + ".timeout: 1 is outside 2..60");
  EXPECT_PROBLEM(d, prefix + ".retries: 0 is outside 1..10");
  EXPECT_PROBLEM(d, prefix + ".startPeriod: -1 is outside 0..300");
  *web(d).health_check = HealthCheck{{"CMD", "true"}, 301, 61, 11, 301};
  EXPECT_PROBLEM(d, prefix + ".interval: 301 is outside 5..300");
  EXPECT_PROBLEM(d, prefix + ".timeout: 61 is outside 2..60");
  EXPECT_PROBLEM(d, prefix + ".retries: 11 is outside 1..10");
  EXPECT_PROBLEM(d, prefix + ".startPeriod: 301 is outside 0..300");
  *web(d).health_check = HealthCheck{{"CMD", "true"}, 300, 60, 10, 300};
  EXPECT_NO_PROBLEMS(d);
  // A disabled check never turns healthy, so HEALTHY on it can never be met.
  d = sample();
  sidecar(d).health_check->command = {"NONE"};
  EXPECT_PROBLEM(d, "dependsOn[0].condition: HEALTHY needs a healthCheck on \"sidecar\"");
}

TEST(TaskDefinitionValidateTest, MountPoints) {
  TaskDefinition d = sample();
  web(d).mount_points.push_back({"logs", "/var/log", false});
  web(d).mount_points.push_back({"static", "relative/path", false});
  web(d).mount_points.push_back({"", "/x", false});
  web(d).mount_points.push_back({"scratch", "/assets", false});
  std::string prefix = "containerDefinitions[0] (name \"web\").mountPoints";
  EXPECT_PROBLEM(d, prefix + "[2].sourceVolume: unknown volume \"logs\"");
  EXPECT_PROBLEM(d, prefix + "[3].containerPath: \"relative/path\" must be an absolute path");
  EXPECT_PROBLEM(d, prefix + "[4].sourceVolume: required");
  EXPECT_PROBLEM(d, prefix + "[5].containerPath: \"/assets\" is mounted twice");
}

TEST(TaskDefinitionValidateTest, Volumes) {
  TaskDefinition d = sample();
  d.volumes[1].name = "static";
  EXPECT_PROBLEM(d, "volumes[1] (name \"static\").name: duplicate volume name");
  d = sample();
  d.volumes[0].docker_volume_configuration = DockerVolumeConfiguration{};
  EXPECT_PROBLEM(d,
                 "volumes[0] (name \"static\"): only one of host, dockerVolumeConfiguration "
                 "and efsVolumeConfiguration may be set");
  d = sample();
  d.volumes[2].docker_volume_configuration->scope = "global";
  EXPECT_PROBLEM(d,
                 "volumes[2] (name \"cache\").dockerVolumeConfiguration.scope: \"global\" is "
                 "not one of task, shared");
  d.volumes[2].docker_volume_configuration->scope = "task";
  EXPECT_PROBLEM(d,
                 "volumes[2] (name \"cache\").dockerVolumeConfiguration.autoprovision: only "
                 "allowed with scope \"shared\"");
  d.volumes[2].docker_volume_configuration->autoprovision = false;
  EXPECT_NO_PROBLEMS(d);
  d.volumes[2].docker_volume_configuration->driver = "rexray/ebs";
  EXPECT_PROBLEM(d,
                 "volumes[2] (name \"cache\").dockerVolumeConfiguration.driver: \"rexray/ebs\" "
                 "is not supported");
  d = sample();
  d.volumes[3].efs_volume_configuration->file_system_id = "";
  EXPECT_PROBLEM(d, "volumes[3] (name \"assets\").efsVolumeConfiguration.fileSystemId: required");
  d = sample();
  d.volumes[0].name = "";
  EXPECT_PROBLEM(d, "volumes[0].name: required");
  d.volumes[0].name = "bad name";
  EXPECT_PROBLEM(d, "volumes[0] (name \"bad name\").name: must be 1-255 letters");
  d = sample();
  d.volumes[0].host->source_path = "srv/static";
  EXPECT_PROBLEM(d,
                 "volumes[0] (name \"static\").host.sourcePath: \"srv/static\" must be an "
                 "absolute path");
}

TEST(TaskDefinitionValidateTest, EfsNeedsTransitEncryptionForIamAndAccessPoints) {
  TaskDefinition d = sample();
  auto& efs = *d.volumes[3].efs_volume_configuration;
  efs.transit_encryption = false;
  std::string prefix = "volumes[3] (name \"assets\").efsVolumeConfiguration";
  EXPECT_PROBLEM(d, prefix + ".authorizationConfig.iam: ENABLED needs transitEncryption ENABLED");
  EXPECT_PROBLEM(d, prefix + ".authorizationConfig.accessPointId: needs transitEncryption ENABLED");
  EXPECT_PROBLEM(d, prefix + ".transitEncryptionPort: needs transitEncryption ENABLED");
  efs.transit_encryption = true;
  efs.root_directory = "/data";
  EXPECT_PROBLEM(d, prefix + ".rootDirectory: must be omitted or \"/\" with an access point");
  efs.root_directory = "/";
  efs.transit_encryption_port = 0;
  EXPECT_PROBLEM(d, prefix + ".transitEncryptionPort: 0 is outside 1..65535");
}

TEST(TaskDefinitionValidateTest, RestartPolicy) {
  TaskDefinition d = sample();
  web(d).restart_policy->ignored_exit_codes.assign(51, 1);
  web(d).restart_policy->restart_attempt_period_seconds = 59;
  std::string prefix = "containerDefinitions[0] (name \"web\").restartPolicy";
  EXPECT_PROBLEM(d, prefix + ".ignoredExitCodes: 51 entries is more than the limit of 50");
  EXPECT_PROBLEM(d, prefix + ".restartAttemptPeriod: 59 is outside 60..1800 seconds");
  web(d).restart_policy->ignored_exit_codes.assign(50, 1);
  web(d).restart_policy->restart_attempt_period_seconds = 1801;
  EXPECT_PROBLEM(d, prefix + ".restartAttemptPeriod: 1801 is outside 60..1800 seconds");
  web(d).restart_policy->restart_attempt_period_seconds = 1800;
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, Timeouts) {
  TaskDefinition d = sample();
  web(d).start_timeout_seconds = -1;
  web(d).stop_timeout_seconds = 121;
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").startTimeout: -1 is outside 0..120 "
                 "seconds");
  EXPECT_PROBLEM(d,
                 "containerDefinitions[0] (name \"web\").stopTimeout: 121 is outside 0..120 "
                 "seconds");
  web(d).start_timeout_seconds = 120;
  web(d).stop_timeout_seconds = 0;
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, SystemControls) {
  TaskDefinition d = sample();
  std::string prefix = "containerDefinitions[0] (name \"web\").systemControls";
  web(d).system_controls.push_back({"vm.swappiness", "10"});
  web(d).system_controls.push_back({"kernel.hostname", "x"});
  web(d).system_controls.push_back({"", "1"});
  web(d).system_controls.push_back({"fs.mqueue.msg_max", ""});
  EXPECT_PROBLEM(d, prefix + "[2].namespace: \"vm.swappiness\" is not a namespaced sysctl");
  EXPECT_PROBLEM(d, prefix + "[3].namespace: \"kernel.hostname\" is not a namespaced sysctl");
  EXPECT_PROBLEM(d, prefix + "[4].namespace: required");
  EXPECT_PROBLEM(d, prefix + "[5].value: required");

  d = sample();
  web(d).system_controls = {{"kernel.msgmax", "1"},
                            {"kernel.sem", "250 32000 32 128"},
                            {"kernel.shm_rmid_forced", "1"},
                            {"fs.mqueue.queues_max", "256"},
                            {"net.ipv4.ip_forward", "1"}};
  EXPECT_NO_PROBLEMS(d);
  d.network_mode = "host";
  web(d).links.clear();
  web(d).port_mappings = {{80, 80, "tcp", "", "", ""}};
  sidecar(d).port_mappings.clear();
  EXPECT_PROBLEM(d, prefix +
                        "[4].namespace: \"net.ipv4.ip_forward\" cannot be set with "
                        "networkMode host");
  d.ipc_mode = "host";
  EXPECT_PROBLEM(d, prefix + "[0].namespace: \"kernel.msgmax\" cannot be set with ipcMode host");
}

TEST(TaskDefinitionValidateTest, DockerSecurityOptions) {
  TaskDefinition d = minimal();
  auto& options = d.container_definitions[0].docker_security_options;
  options = {"no-new-privileges",
             "no-new-privileges:true",
             "no-new-privileges=false",
             "apparmor:unconfined",
             "apparmor=my-profile",
             "label:disable",
             "label=user:system_u",
             "label:level:s0:c100,c200",
             "seccomp=unconfined",
             "seccomp:unconfined",
             R"(seccomp={"defaultAction":"SCMP_ACT_ALLOW"})"};
  EXPECT_NO_PROBLEMS(d);
  options = {"no-new-privileges:maybe",
             "apparmor:",
             "label:color:red",
             "seccomp=/etc/p.json",
             "credentialspec:file://x.json",
             "systempaths=unconfined",
             "privileged"};
  std::string prefix = "containerDefinitions[0] (name \"app\").dockerSecurityOptions";
  EXPECT_PROBLEM(d, prefix +
                        "[0]: \"no-new-privileges:maybe\": no-new-privileges takes true or "
                        "false");
  EXPECT_PROBLEM(d, prefix + "[1]: \"apparmor:\": apparmor needs a profile name");
  EXPECT_PROBLEM(d, prefix + "[2]: \"label:color:red\": label takes user:");
  EXPECT_PROBLEM(d, prefix +
                        "[3]: \"seccomp=/etc/p.json\": seccomp takes \"unconfined\" or an "
                        "inline JSON profile");
  EXPECT_PROBLEM(d, prefix +
                        "[4]: \"credentialspec:file://x.json\": credentialspec is for "
                        "Windows containers");
  EXPECT_PROBLEM(d, prefix +
                        "[5]: \"systempaths=unconfined\": unknown security option "
                        "\"systempaths\"");
  EXPECT_PROBLEM(d, prefix + "[6]: \"privileged\" is not a security option");
}

TEST(TaskDefinitionValidateTest, PidAndIpcModes) {
  TaskDefinition d = minimal();
  d.pid_mode = "container";
  d.ipc_mode = "shareable";
  EXPECT_PROBLEM(d, "pidMode: \"container\" is not one of host, task");
  EXPECT_PROBLEM(d, "ipcMode: \"shareable\" is not one of host, task, none");
  d.pid_mode = "host";
  d.ipc_mode = "none";
  EXPECT_NO_PROBLEMS(d);
}

TEST(TaskDefinitionValidateTest, LinuxParametersDetails) {
  TaskDefinition d = sample();
  LinuxParameters& lp = *web(d).linux_parameters;
  lp.devices.push_back({"dev/null", "rel", {"execute"}});
  lp.tmpfs.push_back({"tmp", 0, {"noexec", "huge=always"}});
  lp.tmpfs.push_back({"/run", 8, {}});
  lp.shared_memory_size_mib = 0;
  lp.max_swap_mib = -1;
  lp.swappiness = 101;
  std::string prefix = "containerDefinitions[0] (name \"web\").linuxParameters";
  EXPECT_PROBLEM(d, prefix + ".devices[1].hostPath: \"dev/null\" must be an absolute path");
  EXPECT_PROBLEM(d, prefix + ".devices[1].containerPath: \"rel\" must be an absolute path");
  EXPECT_PROBLEM(d, prefix +
                        ".devices[1].permissions[0]: \"execute\" is not one of read, write, "
                        "mknod");
  EXPECT_PROBLEM(d, prefix + ".tmpfs[1].containerPath: \"tmp\" must be an absolute path");
  EXPECT_PROBLEM(d, prefix + ".tmpfs[1].size: 0 MiB must be positive");
  EXPECT_PROBLEM(d, prefix + ".tmpfs[1].mountOptions[1]: unknown mount option \"huge=always\"");
  EXPECT_PROBLEM(d, prefix + ".tmpfs[2].containerPath: \"/run\" is mounted twice");
  EXPECT_PROBLEM(d, prefix + ".sharedMemorySize: 0 MiB must be positive");
  EXPECT_PROBLEM(d, prefix + ".maxSwap: -1 MiB must not be negative");
  EXPECT_PROBLEM(d, prefix + ".swappiness: 101 is outside 0..100");
}

TEST(TaskDefinitionValidateTest, ContainerOddsAndEnds) {
  TaskDefinition d = sample();
  ContainerDefinition& w = web(d);
  w.environment.push_back({"", "x"});
  w.environment.push_back({"A=B", "x"});
  w.environment_files.push_back({"", "local"});
  w.secrets.push_back({"", ""});
  w.working_directory = "srv";
  w.dns_servers.push_back("dns.example");
  w.extra_hosts.push_back({"", "300.1.1.1"});
  w.log_configuration->log_driver = "loki";
  std::string prefix = "containerDefinitions[0] (name \"web\")";
  EXPECT_PROBLEM(d, prefix + ".environment[2].name: required");
  EXPECT_PROBLEM(d, prefix + ".environment[3].name: \"A=B\" must not contain '='");
  EXPECT_PROBLEM(d, prefix + ".environmentFiles[1].value: required");
  EXPECT_PROBLEM(d, prefix + ".environmentFiles[1].type: \"local\" is not \"s3\"");
  EXPECT_PROBLEM(d, prefix + ".secrets[1].name: required");
  EXPECT_PROBLEM(d, prefix + ".secrets[1].valueFrom: required");
  EXPECT_PROBLEM(d, prefix + ".workingDirectory: \"srv\" must be an absolute path");
  EXPECT_PROBLEM(d, prefix + ".dnsServers[2]: \"dns.example\" is not an IP address");
  EXPECT_PROBLEM(d, prefix + ".extraHosts[1].hostname: required");
  EXPECT_PROBLEM(d, prefix + ".extraHosts[1].ipAddress: \"300.1.1.1\" is not an IP address");
  EXPECT_PROBLEM(d, prefix + ".logConfiguration.logDriver: \"loki\" is not one of json-file");
}

TEST(TaskDefinitionValidateTest, TaskLevelEnums) {
  TaskDefinition d = minimal();
  d.requires_compatibilities = {"EC2", "LAMBDA"};
  d.runtime_platform = RuntimePlatform{"RISCV", "WINDOWS_SERVER_2022_CORE"};
  d.revision = 0;
  EXPECT_PROBLEM(d, "requiresCompatibilities[1]: \"LAMBDA\" is not one of EC2, FARGATE, EXTERNAL");
  EXPECT_PROBLEM(d, "runtimePlatform.cpuArchitecture: \"RISCV\" is not one of X86_64, ARM64");
  EXPECT_PROBLEM(d,
                 "runtimePlatform.operatingSystemFamily: \"WINDOWS_SERVER_2022_CORE\" cannot "
                 "run on this Linux agent");
  EXPECT_PROBLEM(d, "revision: 0 must be at least 1");
}

TEST(TaskDefinitionValidateTest, LoadJoinsEveryProblem) {
  auto loaded = loadTaskDefinition(R"({"family": "f", "containerDefinitions": [
      {"name": "a", "memory": 4}, {"name": "a", "image": "busybox", "memory": 64}]})");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(loaded.error().message,
            "containerDefinitions[1] (name \"a\").name: duplicate of containerDefinitions[0]; "
            "containerDefinitions[0] (name \"a\").memory: 4 MiB is below the 6 MiB minimum; "
            "containerDefinitions[0] (name \"a\").image: required");
  auto malformed = loadTaskDefinition("{");
  ASSERT_FALSE(malformed);
  EXPECT_THAT(malformed.error().message, HasSubstr("malformed JSON at line 1, column 2"));
}

TEST(TaskDefinitionValidateTest, LongProblemListsAreCut) {
  std::string json = R"({"family": "f", "containerDefinitions": [{"name": "a", "image": "busybox",
      "memory": 64, "environment": [)";
  for (int i = 0; i < 60; ++i) json += std::string(i ? "," : "") + R"({"name": ""})";
  json += "]}]}";
  auto loaded = loadTaskDefinition(json);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("environment[49].name: required; and 10 more"));
  EXPECT_THAT(loaded.error().message, Not(HasSubstr("environment[50]")));
}

// --- hostile values ------------------------------------------------------------------------------

TEST(TaskDefinitionValidateTest, MountTargetsTheRuntimeOwnsAreRefused) {
  const std::string prefix = "containerDefinitions[0] (name \"web\").mountPoints";
  struct Case {
    std::string path;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {"/", "must not be the container's root"},
      {"//./", "must not be the container's root"},
      {"/proc", "must not be in /proc"},
      {"/proc/sys", "must not be in /proc"},
      {"//proc/./sys/kernel", "must not be in /proc"},
      {"/sys", "must not be in /sys"},
      {"/sys/fs/cgroup", "must not be in /sys"},
      {"data", "must be an absolute path"},
      {"./data", "must be an absolute path"},
      {"/data/../proc", "must not contain \"..\" components"},
      {"/..", "must not contain \"..\" components"},
  };
  for (const Case& c : cases) {
    TaskDefinition d = sample();
    web(d).mount_points.push_back({"scratch", c.path, false});
    EXPECT_PROBLEM(d, fmt::format("{}[2].containerPath: \"{}\" {}", prefix, c.path, c.problem));

    d = sample();
    web(d).linux_parameters->tmpfs[0].container_path = c.path;
    EXPECT_PROBLEM(d, fmt::format("containerDefinitions[0] (name \"web\").linuxParameters."
                                  "tmpfs[0].containerPath: \"{}\" {}",
                                  c.path, c.problem));
  }
  // Names that only look alike are fine.
  for (std::string path : {"/procfs", "/system", "/srv/proc", "/data/..x", "/a/.hidden"}) {
    TaskDefinition d = sample();
    web(d).mount_points.push_back({"scratch", path, false});
    EXPECT_NO_PROBLEMS(d) << path;
  }
  // Spellings of one path are one target.
  TaskDefinition d = sample();
  web(d).mount_points.push_back({"scratch", "//assets/.", false});
  EXPECT_PROBLEM(d, prefix + "[2].containerPath: \"//assets/.\" is mounted twice");
}

TEST(TaskDefinitionValidateTest, HostPathsWithParentComponentsAreRefused) {
  TaskDefinition d = sample();
  d.volumes[0].host->source_path = "/srv/../etc";
  web(d).linux_parameters->devices.push_back({"/dev/../etc/shadow", "/proc/x", {}});
  EXPECT_PROBLEM(d,
                 "volumes[0] (name \"static\").host.sourcePath: \"/srv/../etc\" must not contain "
                 "\"..\" components");
  const std::string device = "containerDefinitions[0] (name \"web\").linuxParameters.devices[";
  EXPECT_PROBLEM(d, device + "1].hostPath: \"/dev/../etc/shadow\" must not contain \"..\"");
  EXPECT_PROBLEM(d, device + "1].containerPath: \"/proc/x\" must not be in /proc");
}

TEST(TaskDefinitionParseTest, NulCharactersAnywhereAreRefused) {
  // JSON can only carry NUL as an escape; every string and member name is checked, whatever
  // the field (and whether the agent reads it).
  struct Case {
    std::string json;
    std::string field;
  };
  const std::string container = R"({"family": "f", "containerDefinitions": [{"name": "a",
      "image": "busybox", "memory": 64, )";
  const std::vector<Case> cases = {
      {container + R"("environment": [{"name": "A\u0000B", "value": "1"}]}]})",
       "containerDefinitions[0].environment[0].name: contains a NUL character"},
      {container + R"("environment": [{"name": "A", "value": "x\u0000y"}]}]})",
       "containerDefinitions[0].environment[0].value: contains a NUL character"},
      {container + R"("command": ["sh", "-c", "\u0000"]}]})",
       "containerDefinitions[0].command[2]: contains a NUL character"},
      {container + R"("entryPoint": ["/bin/sh\u0000x"]}]})",
       "containerDefinitions[0].entryPoint[0]: contains a NUL character"},
      {container + R"("dockerLabels": {"a\u0000b": "v"}}]})",
       "containerDefinitions[0].dockerLabels.a\\0b: the member name contains a NUL character"},
      {container + R"("futureField": "\u0000"}]})",
       "containerDefinitions[0].futureField: contains a NUL character"},
      {R"({"family": "f", "volumes": [{"name": "v", "host": {"sourcePath": "/tmp/x\u0000y"}}],
          "containerDefinitions": []})",
       "volumes[0].host.sourcePath: contains a NUL character"},
  };
  for (const Case& c : cases) EXPECT_THAT(parseError(c.json), HasSubstr(c.field)) << c.json;
}

TEST(TaskDefinitionValidateTest, HostnamesAreRfc1123Sized) {
  const std::string prefix = "containerDefinitions[0] (name \"web\")";
  const std::string label63(63, 'a');
  const std::string name253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'b');
  for (const std::string& good :
       {std::string("web-1"), std::string("db_2.example.com."), label63, name253}) {
    TaskDefinition d = sample();
    web(d).hostname = good;
    web(d).extra_hosts[0].hostname = good;
    web(d).dns_search_domains.push_back(good);
    EXPECT_NO_PROBLEMS(d) << good;
  }
  struct Case {
    std::string name;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {std::string(64, 'a'), "has a label of 64 characters (at most 63)"},
      {name253 + "b", "is 254 characters long (at most 253)"},
      {std::string(300, 'a'), "is 300 characters long (at most 253)"},
      {"web\n10.0.0.1 evil", "must not contain a line break"},
      {"web\r", "must not contain a line break"},
      {"web evil", "may only hold letters, digits, '-', '_' and '.'"},
      {"web#x", "may only hold letters, digits, '-', '_' and '.'"},
      {"a..b", "has an empty label"},
      {".a", "has an empty label"},
  };
  for (const Case& c : cases) {
    TaskDefinition d = sample();
    web(d).hostname = c.name;
    web(d).extra_hosts[0].hostname = c.name;
    web(d).dns_search_domains.push_back(c.name);
    const std::string quoted = text::clip(c.name);
    EXPECT_PROBLEM(d, fmt::format("{}.hostname: \"{}\" {}", prefix, quoted, c.problem));
    EXPECT_PROBLEM(d,
                   fmt::format("{}.extraHosts[0].hostname: \"{}\" {}", prefix, quoted, c.problem));
    EXPECT_PROBLEM(d, fmt::format("{}.dnsSearchDomains[{}]: \"{}\" {}", prefix,
                                  web(d).dns_search_domains.size() - 1, quoted, c.problem));
  }
}

TEST(TaskDefinitionValidateTest, LineBreaksInAddressesEnvironmentAndLabels) {
  const std::string prefix = "containerDefinitions[0] (name \"web\")";
  TaskDefinition d = sample();
  web(d).extra_hosts[0].ip_address = "10.0.0.10\n10.0.0.11 evil";
  web(d).dns_servers.push_back("10.0.0.2\nsearch evil");
  web(d).environment.push_back({"A\nB", "multi\nline values are fine"});
  web(d).secrets.push_back({"S\rT", "arn:aws:ssm:us-east-1:1:parameter/x"});
  web(d).docker_labels["evil\nkey"] = "v";
  web(d).docker_labels["key"] = "evil\nvalue";
  EXPECT_PROBLEM(d, prefix +
                        ".extraHosts[0].ipAddress: \"10.0.0.10\\n10.0.0.11 evil\" is not an "
                        "IP address");
  EXPECT_PROBLEM(d, prefix + ".dnsServers[2]: \"10.0.0.2\\nsearch evil\" is not an IP address");
  EXPECT_PROBLEM(d, prefix + ".environment[2].name: \"A\\nB\" must not contain control characters");
  EXPECT_PROBLEM(d, prefix + ".secrets[1].name: \"S\\rT\" must not contain '=' or control");
  EXPECT_PROBLEM(d,
                 prefix + ".dockerLabels: label name \"evil\\nkey\" must not contain a line break");
  EXPECT_PROBLEM(d, prefix + ".dockerLabels.key: the value must not contain a line break");
  EXPECT_EQ(validateTaskDefinition(d).size(), 6u) << "environment values may hold line breaks";

  // A NUL the JSON reader would refuse, in a definition built by code: not an address either.
  d = sample();
  web(d).dns_servers.push_back(std::string("10.0.0.2\0junk", 13));
  EXPECT_PROBLEM(d, prefix + ".dnsServers[2]: \"10.0.0.2\\0junk\" is not an IP address");
}

TEST(TaskDefinitionValidateTest, PortMappingCountsAndRanges) {
  const std::string prefix = "containerDefinitions[0] (name \"web\").portMappings";
  TaskDefinition d = minimal();
  for (int i = 0; i < 100; ++i) {
    d.container_definitions[0].port_mappings.push_back({1000 + i, std::nullopt, "tcp", "", "", ""});
  }
  EXPECT_NO_PROBLEMS(d) << "100 dynamic mappings";
  d.container_definitions[0].port_mappings.push_back({2000, std::nullopt, "tcp", "", "", ""});
  EXPECT_THAT(validateTaskDefinition(d),
              ElementsAre("containerDefinitions[0] (name \"app\").portMappings: 101 mappings is "
                          "more than the limit of 100 per container"));

  // 10,000 identical mappings: one problem, not 10,000.
  d = minimal();
  d.container_definitions[0].port_mappings.assign(10000, {80, 80, "tcp", "", "", ""});
  EXPECT_EQ(validateTaskDefinition(d).size(), 1u);

  // Fixed host ports: at most 100 per task, across containers (bridge) or container ports (host).
  d = minimal();
  d.container_definitions.push_back(d.container_definitions[0]);
  d.container_definitions[1].name = "app2";
  for (int i = 0; i < 51; ++i) {
    d.container_definitions[0].port_mappings.push_back({1000 + i, 1000 + i, "tcp", "", "", ""});
    d.container_definitions[1].port_mappings.push_back({1000 + i, 2000 + i, "tcp", "", "", ""});
  }
  EXPECT_PROBLEM(d,
                 "portMappings: the task reserves 102 fixed host ports, more than the 100 a "
                 "container instance can reserve");
  d.container_definitions[1].port_mappings.resize(49);
  EXPECT_NO_PROBLEMS(d);
  d = minimal();
  d.network_mode = "host";
  for (int i = 0; i < 100; ++i) {
    d.container_definitions[0].port_mappings.push_back({1000 + i, std::nullopt, "tcp", "", "", ""});
  }
  EXPECT_NO_PROBLEMS(d);
  d.container_definitions.push_back(d.container_definitions[0]);
  d.container_definitions[1].name = "app2";
  d.container_definitions[1].port_mappings = {{3000, std::nullopt, "udp", "", "", ""}};
  EXPECT_PROBLEM(d, "portMappings: the task reserves 101 fixed host ports");

  // Numbers and range forms.
  d = sample();
  web(d).port_mappings[0].container_port = 65536;
  web(d).port_mappings[0].host_port = -1;
  EXPECT_PROBLEM(d, prefix + "[0].containerPort: 65536 is outside 1..65535");
  EXPECT_PROBLEM(d, prefix + "[0].hostPort: -1 is outside 0..65535");
  for (std::string range : {"-", "8000-", "-8000", "80-80", "90-80", "0-10", "1-65536", " 80-90",
                            "+80-90", "80-90-100", "0x50-0x60", "99999999999-1", "80\n-90"}) {
    d = sample();
    web(d).port_mappings[1].container_port_range = range;
    auto problems = validateTaskDefinition(d);
    EXPECT_THAT(problems, Contains(HasSubstr(prefix + "[1].containerPortRange: \"" +
                                             text::clip(range) + "\"")))
        << range;
  }
}

// Whatever its size, a bad value is quoted in at most text::kMaxQuoted characters, escaped.
TEST(TaskDefinitionValidateTest, ProblemsQuoteAtMost200Characters) {
  const std::string huge(1 << 20, 'x');
  TaskDefinition d = sample();
  web(d).hostname = huge;
  web(d).mount_points.push_back({"scratch", huge, false});
  web(d).image = huge;
  web(d).name = huge;
  d.family = huge;
  web(d).depends_on.push_back({huge, ContainerDependency::Condition::kStart});
  auto problems = validateTaskDefinition(d);
  ASSERT_FALSE(problems.empty());
  for (const std::string& problem : problems) EXPECT_LT(problem.size(), 1000u) << problem;
  auto loaded = loadTaskDefinition(
      R"({"family": "f", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64,
          "hostname": ")" +
      huge + R"("}]})");
  ASSERT_FALSE(loaded);
  EXPECT_LT(loaded.error().message.size(), 400u) << loaded.error().message;
  EXPECT_THAT(loaded.error().message,
              HasSubstr("containerDefinitions[0] (name \"a\").hostname: \"" +
                        std::string(200, 'x') + "...\""));
}

// --- robustness ----------------------------------------------------------------------------------

// Every proper prefix of the sample is incomplete JSON: an error naming a position, never a crash.
TEST(TaskDefinitionFuzzTest, TruncationsFailCleanly) {
  for (size_t length = 0; length < kSample.size(); ++length) {
    auto loaded = loadTaskDefinition(kSample.substr(0, length));
    ASSERT_FALSE(loaded) << "prefix of " << length << " bytes parsed";
    EXPECT_THAT(loaded.error().message, HasSubstr("malformed JSON at line")) << length;
  }
  EXPECT_TRUE(loadTaskDefinition(kSample));
}

// Random byte edits: errors or (rarely) a valid definition, never a crash.
TEST(TaskDefinitionFuzzTest, ByteMutationsNeverCrash) {
  std::mt19937 random(20240501);
  const std::string bytes = "{}[]\",:0123456789-.eE \n\\tfalsnu\xff\x01";
  int accepted = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text(kSample);
    int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = random() % text.size();
      switch (random() % 3) {
        case 0:
          text[at] = bytes[random() % bytes.size()];
          break;
        case 1:
          text.erase(at, 1 + random() % 8);
          break;
        default:
          text.insert(at, 1, bytes[random() % bytes.size()]);
          break;
      }
    }
    auto loaded = loadTaskDefinition(text);
    if (loaded) {
      ++accepted;
    } else {
      EXPECT_FALSE(loaded.error().message.empty());
    }
  }
  EXPECT_LT(accepted, 3000);
}

// Structural edits: every value in the document, in turn, replaced by each other JSON kind.
// Parsing must report a path or succeed; validation of whatever parses must not crash.
TEST(TaskDefinitionFuzzTest, EveryValueReplacedByEveryKind) {
  boost::json::value document = boost::json::parse(kSample);
  const std::vector<std::string> slots = ecs::testing::jsonPointers(document);
  const std::vector<boost::json::value> replacements = {nullptr,
                                                        true,
                                                        -1,
                                                        0,
                                                        70000,
                                                        1.5,
                                                        "",
                                                        "x",
                                                        boost::json::array{},
                                                        boost::json::object{},
                                                        boost::json::array{"a", 1},
                                                        boost::json::object{{"k", 1}}};
  int errors = 0;
  for (const std::string& pointer : slots) {
    if (pointer.empty()) continue;
    boost::json::value* slot = &document.at_pointer(pointer);
    boost::json::value original = *slot;
    for (const auto& replacement : replacements) {
      *slot = replacement;
      auto parsed = parseTaskDefinition(boost::json::serialize(document));
      if (parsed) {
        (void)validateTaskDefinition(*parsed);
      } else {
        ++errors;
        EXPECT_THAT(parsed.error().message, HasSubstr(": ")) << "errors name a path";
      }
    }
    *slot = original;
  }
  EXPECT_GT(errors, 500);
  EXPECT_TRUE(loadTaskDefinition(boost::json::serialize(document)));
}

// Task definitions (the sample above and examples/) mutated for a fixed time (ECS_FUZZ_SECONDS;
// scripts/test.sh gives the sanitizer build 30 s): no crash, no hang, and every message is
// bounded and on one line.
TEST(TaskDefinitionFuzzTest, TimedMutations) {
  std::vector<std::string> seeds = {std::string(kSample),
                                    R"({"family": "f", "containerDefinitions": [{"name": "a",
                                        "image": "busybox", "memory": 64}]})"};
  for (const auto& entry : std::filesystem::directory_iterator(ECS_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    seeds.push_back(text.str());
  }
  ASSERT_GT(seeds.size(), 2u) << "no task definitions in " << ECS_EXAMPLES_DIR;
  auto options = ecs::testing::MutationFuzzer::optionsFromEnvironment(std::chrono::seconds(2));
  ecs::testing::MutationFuzzer fuzzer(seeds, options);
  auto oneBoundedLine = [](const std::string& message, size_t limit) {
    EXPECT_FALSE(message.empty());
    EXPECT_LT(message.size(), limit);
    EXPECT_EQ(message.find_first_of(std::string("\n\r\0", 3)), std::string::npos)
        << message.substr(0, 1000);
  };
  size_t runs = fuzzer.run([&](std::string_view text) {
    auto parsed = parseTaskDefinition(text);
    if (!parsed) {
      oneBoundedLine(parsed.error().message, 64u << 10);
      return !parsed.error().message.starts_with("malformed JSON");
    }
    for (const std::string& problem : validateTaskDefinition(*parsed)) {
      oneBoundedLine(problem, 4096);
    }
    return true;
  });
  EXPECT_GT(runs, 100u);
}

}  // namespace
}  // namespace ecs::engine
