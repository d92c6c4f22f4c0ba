// The forms the daemon keeps state changes and credentials in: what toJson writes reads back
// the same, and a damaged record is refused without quoting it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/acs/acs_task.h"
#include "agent/daemon/daemon_state.h"

namespace ecs::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DaemonStateJsonTest, AStateChangeReadsBackAsWritten) {
  ecsapi::TaskStateChange change;
  change.cluster = "c";
  change.task_arn = "arn:aws:ecs:us-west-2:1:task/c/abc";
  change.status = ecsapi::ReportedStatus::kStopped;
  change.reason = "Essential container in task exited";
  change.pull_started_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(1000));
  change.execution_stopped_at =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(2500));
  ecsapi::ContainerStateChange c;
  c.container_name = "web";
  c.status = ecsapi::ReportedStatus::kStopped;
  c.runtime_id = "abc-0-web";
  c.exit_code = 137;
  c.reason = "OutOfMemoryError";
  c.network_bindings.push_back(
      {"0.0.0.0", {80, 80}, {62001, 62001}, ecsapi::TransportProtocol::kUdp});
  change.containers.push_back(c);

  auto back = taskStateChangeFromJson(toJson(change));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(toJson(*back), toJson(change));
  EXPECT_EQ(back->execution_stopped_at, change.execution_stopped_at);
  EXPECT_FALSE(back->pull_stopped_at);
  ASSERT_EQ(back->containers.size(), 1u);
  EXPECT_EQ(back->containers[0].exit_code, 137);
  EXPECT_FALSE(back->containers[0].image_digest);
  ASSERT_EQ(back->containers[0].network_bindings.size(), 1u);
  EXPECT_EQ(back->containers[0].network_bindings[0].host_ports.first, 62001);
  EXPECT_EQ(back->containers[0].network_bindings[0].protocol, ecsapi::TransportProtocol::kUdp);
}

TEST(DaemonStateJsonTest, DamagedStateChangesAreRefused) {
  EXPECT_FALSE(taskStateChangeFromJson("{"));
  EXPECT_FALSE(taskStateChangeFromJson(R"({"task":"arn","status":"HALFWAY"})"));
  EXPECT_FALSE(taskStateChangeFromJson(R"({"status":"RUNNING"})"));
  auto bad = taskStateChangeFromJson(
      R"({"task":"arn","status":"RUNNING","containers":[{"name":"a","status":"RUNNING",)"
      R"("bindings":[{"hostPorts":[1]}]}]})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kDataLoss);
  EXPECT_THAT(bad.error().message, HasSubstr("hostPorts"));
}

TEST(DaemonStateJsonTest, CredentialsReadBackAndAreNeverQuoted) {
  acs::RoleCredentials creds{"id-1",  "arn:aws:iam::1:role/r", "ASIAKEY",        "s3cr3t",
                             "token", "2030-01-01T00:00:00Z",  "TaskApplication"};
  auto back = roleCredentialsFromJson(toJson(creds));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(toJson(*back), toJson(creds));

  auto no_id = roleCredentialsFromJson(R"({"secretAccessKey":"s3cr3t"})");
  ASSERT_FALSE(no_id);
  EXPECT_THAT(no_id.error().message, Not(HasSubstr("s3cr3t")));
  auto broken = roleCredentialsFromJson(R"({"credentialsId":"id","secretAccessKey":"s3cr3t)");
  ASSERT_FALSE(broken);
  EXPECT_THAT(broken.error().message, Not(HasSubstr("s3cr3t")));
}

}  // namespace
TEST(DaemonStateJsonTest, ATaskDocumentCarriesTheTaskButNoSecrets) {
  const std::string task_json = R"({
    "arn": "arn:aws:ecs:us-west-2:1:task/c/0f3c6d0e1a2b4c5d8e9f001122334455",
    "family": "doc", "version": "3", "desiredStatus": "RUNNING", "networkMode": "bridge",
    "roleCredentials": {"credentialsId": "cred-1", "roleArn": "arn:aws:iam::1:role/app",
      "accessKeyId": "ASIAKEY", "secretAccessKey": "do-not-keep", "sessionToken": "tok",
      "expiration": "2030-03-25T06:17:19.318+0000"},
    "containers": [{"name": "web", "image": "busybox", "essential": true, "memory": 32,
      "portMappings": [{"containerPort": 80, "hostPort": 0}]}]})";
  auto parsed = acs::parseAcsTask(std::string_view(task_json));
  ASSERT_TRUE(parsed) << parsed.error().message;
  const auto document = taskDocument(task_json, parsed->spec, "arn:aws:ecs:us-west-2:1:cluster/c",
                                     "arn:aws:ecs:us-west-2:1:container-instance/c/i-1");
  EXPECT_THAT(document, Not(HasSubstr("do-not-keep")));
  EXPECT_THAT(document, Not(HasSubstr("ASIAKEY")));

  auto back = taskFromDocument(document);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->cluster, "arn:aws:ecs:us-west-2:1:cluster/c");
  EXPECT_EQ(back->instance_arn, "arn:aws:ecs:us-west-2:1:container-instance/c/i-1");
  const auto& spec = back->adopted.spec;
  EXPECT_EQ(spec.arn, parsed->spec.arn);
  EXPECT_EQ(spec.role_credentials_id, "cred-1");
  EXPECT_EQ(spec.definition.task_role_arn, "arn:aws:iam::1:role/app");
  EXPECT_EQ(spec.definition.family, "doc");
  ASSERT_EQ(spec.definition.container_definitions.size(), 1u);
  EXPECT_EQ(spec.definition.container_definitions[0].port_mappings.size(), 1u);
  EXPECT_EQ(spec.document, document);
  EXPECT_EQ(back->adopted.known, engine::ContainerStatus::kRunning);
  EXPECT_THAT(back->task_json, Not(HasSubstr("roleCredentials")));

  EXPECT_FALSE(taskFromDocument("{\"version\": 2, \"task\": {}}"));
  EXPECT_FALSE(taskFromDocument("not json"));
  EXPECT_FALSE(taskFromDocument("{\"version\": 1, \"task\": {\"arn\": 5}}"));
}

}  // namespace ecs::daemon
