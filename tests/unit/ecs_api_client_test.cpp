// The ECS API client: request bodies byte for byte for given inputs (and valid input per
// botocore's ECS model), responses read with their problems named, the retry and backoff
// policies; then EcsClient against a loopback stand-in for ECS that checks every signature with
// botocore and fails the first calls with ServerException/ThrottlingException, so each call's
// retries (and which policy each call uses) show; and the DiscoverPollEndpoint cache, fresh,
// expired, and expired-but-better-than-nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/ecs/ecs_api.h"
#include "agent/ecs/ecs_client.h"
#include "tests/support/botocore_reference.h"
#include "tests/support/loopback_http_server.h"

namespace ecs::ecsapi {
namespace {

using namespace std::chrono_literals;
using ecs::testing::BotocoreReference;
using ecs::testing::httpResponse;
using ecs::testing::LoopbackConnection;
using ecs::testing::LoopbackHttpServer;
using ecs::testing::LoopbackRequest;

const std::string kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const std::string kCluster = "prod";
const std::string kInstanceArn =
    "arn:aws:ecs:us-west-2:123456789012:container-instance/prod/0123456789abcdef";
const std::string kTaskArn = "arn:aws:ecs:us-west-2:123456789012:task/prod/fedcba9876543210";

std::chrono::system_clock::time_point epoch(std::chrono::milliseconds since) {
  return std::chrono::system_clock::time_point(since);
}

std::string text(const json::Object& body) {
  return boost::json::serialize(body);
}

RegistrationRequest firstRegistration() {
  return RegistrationRequest{
      .cluster = kCluster,
      .resources = {.cpu_units = 2048,
                    .memory_mib = 24105,
                    .reserved_tcp_ports = {22, 2375, 2376, 51678, 51679},
                    .reserved_udp_ports = {}},
      .attributes = {{"ecs.capability.container-ordering", std::nullopt}, {"ecs.os-type", "linux"}},
      .tags = {{"team", "infra"}},
      .instance_identity_document = R"({"instanceId":"i-1"})",
      .instance_identity_signature = "c2ln",
      .client_token = "6f1c7a52-9b0e-4d4c-8c1e-2f7d3c9a0b11",
  };
}

TaskStateChange stoppedTask() {
  return TaskStateChange{
      .task_arn = kTaskArn,
      .status = ReportedStatus::kStopped,
      .reason = "Essential container in task exited",
      .pull_started_at = epoch(1'700'000'000'000ms),
      .pull_stopped_at = epoch(1'700'000'001'500ms),
      .execution_stopped_at = epoch(1'700'000'100'000ms),
      .containers =
          {
              {.container_name = "web",
               .status = ReportedStatus::kStopped,
               .runtime_id = "fedcba9876543210-web",
               .image_digest = "sha256:" + std::string(64, 'a'),
               .exit_code = 137,
               .reason = "OutOfMemoryError",
               .network_bindings = {{.bind_ip = "0.0.0.0",
                                     .container_ports = {80, 80},
                                     .host_ports = {32768, 32768}},
                                    {.bind_ip = "::",
                                     .container_ports = {8000, 8009},
                                     .host_ports = {9000, 9009},
                                     .protocol = TransportProtocol::kUdp}}},
              {.container_name = "sidecar", .status = ReportedStatus::kRunning},
          },
      .managed_agents = {{.container_name = "web", .status = ReportedStatus::kRunning}},
  };
}

// ---- bodies ------------------------------------------------------------------------------------

TEST(EcsApiBodyTest, FirstRegistration) {
  EXPECT_EQ(
      text(registerContainerInstanceBody(firstRegistration())),
      R"({"attributes":[{"name":"ecs.capability.container-ordering"},{"name":"ecs.os-type","value":"linux"}],)"
      R"("clientToken":"6f1c7a52-9b0e-4d4c-8c1e-2f7d3c9a0b11","cluster":"prod",)"
      R"("instanceIdentityDocument":"{\"instanceId\":\"i-1\"}","instanceIdentityDocumentSignature":"c2ln",)"
      R"("tags":[{"key":"team","value":"infra"}],)"
      R"("totalResources":[{"integerValue":2048,"name":"CPU","type":"INTEGER"},)"
      R"({"integerValue":24105,"name":"MEMORY","type":"INTEGER"},)"
      R"({"name":"PORTS","stringSetValue":["22","2375","2376","51678","51679"],"type":"STRINGSET"},)"
      R"({"name":"PORTS_UDP","stringSetValue":[],"type":"STRINGSET"}]})");
}

TEST(EcsApiBodyTest, ReRegistrationWithGpusAndNoIdentity) {
  RegistrationRequest request{
      .cluster = "default",
      .container_instance_arn = kInstanceArn,
      .resources = {.cpu_units = 1024, .memory_mib = 512, .reserved_udp_ports = {53}},
      .attributes = {{"ecs.os-type", "linux"}},
      .gpu_ids = {"GPU-0", "GPU-1"},
  };
  EXPECT_EQ(text(registerContainerInstanceBody(request)),
            R"({"attributes":[{"name":"ecs.os-type","value":"linux"}],"cluster":"default",)"
            R"("containerInstanceArn":")" +
                kInstanceArn +
                R"(","instanceIdentityDocument":"","instanceIdentityDocumentSignature":"",)"
                R"("platformDevices":[{"id":"GPU-0","type":"GPU"},{"id":"GPU-1","type":"GPU"}],)"
                R"("totalResources":[{"integerValue":1024,"name":"CPU","type":"INTEGER"},)"
                R"({"integerValue":512,"name":"MEMORY","type":"INTEGER"},)"
                R"({"name":"PORTS","stringSetValue":[],"type":"STRINGSET"},)"
                R"({"name":"PORTS_UDP","stringSetValue":["53"],"type":"STRINGSET"}]})");
}

TEST(EcsApiBodyTest, DiscoverPollEndpointAlwaysCarriesAnEmptyZoneId) {
  EXPECT_EQ(text(discoverPollEndpointBody(kCluster, kInstanceArn)),
            R"({"cluster":"prod","containerInstance":")" + kInstanceArn + R"(","zoneId":""})");
}

TEST(EcsApiBodyTest, TaskStateChangeWithContainersBindingsAndTimes) {
  EXPECT_EQ(
      text(submitTaskStateChangeBody(stoppedTask(), kCluster)),
      R"({"cluster":"prod","containers":[{"containerName":"web","exitCode":137,)"
      R"("imageDigest":"sha256:)" +
          std::string(64, 'a') +
          R"(","networkBindings":[{"bindIP":"0.0.0.0","containerPort":80,"hostPort":32768,"protocol":"tcp"},)"
          R"({"bindIP":"::","containerPortRange":"8000-8009","hostPortRange":"9000-9009","protocol":"udp"}],)"
          R"("reason":"OutOfMemoryError","runtimeId":"fedcba9876543210-web","status":"STOPPED"},)"
          R"({"containerName":"sidecar","status":"RUNNING"}],)"
          R"("executionStoppedAt":1700000100,)"
          R"("managedAgents":[{"containerName":"web","managedAgentName":"ExecuteCommandAgent","status":"RUNNING"}],)"
          R"("pullStartedAt":1700000000,"pullStoppedAt":1.7000000015E9,)"
          R"("reason":"Essential container in task exited","status":"STOPPED","task":")" +
          kTaskArn + R"("})");
}

TEST(EcsApiBodyTest, MinimalTaskStateChangeKeepsItsOwnCluster) {
  TaskStateChange change{.cluster = "arn:aws:ecs:us-west-2:1:cluster/other",
                         .task_arn = kTaskArn,
                         .status = ReportedStatus::kRunning};
  EXPECT_EQ(text(submitTaskStateChangeBody(change, kCluster)),
            R"({"cluster":"arn:aws:ecs:us-west-2:1:cluster/other","reason":"","status":"RUNNING",)"
            R"("task":")" +
                kTaskArn + R"("})");
}

TEST(EcsApiBodyTest, LongTextIsCutToTheApiLimitsAtCharacterBoundaries) {
  TaskStateChange change{.task_arn = kTaskArn, .reason = std::string(2000, 'x')};
  std::string accented;
  for (int i = 0; i < 600; ++i) accented += "é";  // 2 bytes each
  change.containers.push_back({.container_name = "c",
                               .runtime_id = std::string(300, 'r'),
                               .image_digest = std::string(300, 'd'),
                               .reason = accented});
  json::Object body = submitTaskStateChangeBody(change, kCluster);
  EXPECT_EQ(body.at("reason").as_string().size(), 1024u);
  const json::Object& container = body.at("containers").as_array()[0].as_object();
  EXPECT_EQ(container.at("runtimeId").as_string().size(), 255u);
  EXPECT_EQ(container.at("imageDigest").as_string().size(), 255u);
  EXPECT_EQ(container.at("reason").as_string().size(), 1024u);

  accented = "a" + accented;  // now the 1024th byte starts a character: cut before it
  change.containers[0].reason = accented;
  body = submitTaskStateChangeBody(change, kCluster);
  EXPECT_EQ(body.at("containers").as_array()[0].as_object().at("reason").as_string().size(), 1023u);
}

TEST(EcsApiBodyTest, AttachmentAndContainerChanges) {
  EXPECT_EQ(
      text(submitTaskStateChangeBody(
          TaskAttachmentStateChange{.task_arn = kTaskArn, .attachments = {{"arn:attachment/1"}}},
          kCluster)),
      R"({"attachments":[{"attachmentArn":"arn:attachment/1","status":"ATTACHED"}],)"
      R"("cluster":"prod","task":")" +
          kTaskArn + R"("})");

  StandaloneContainerStateChange container{
      .task_arn = kTaskArn,
      .container = {.container_name = "web",
                    .status = ReportedStatus::kRunning,
                    .runtime_id = "id",
                    .image_digest = "sha256:not-part-of-this-call",
                    .network_bindings = {{.bind_ip = "0.0.0.0",
                                          .container_ports = {53, 53},
                                          .host_ports = {5353, 5353},
                                          .protocol = TransportProtocol::kUdp}}}};
  EXPECT_EQ(text(submitContainerStateChangeBody(container, kCluster)),
            R"({"cluster":"prod","containerName":"web","networkBindings":[{"bindIP":"0.0.0.0",)"
            R"("containerPort":53,"hostPort":5353,"protocol":"udp"}],"runtimeId":"id",)"
            R"("status":"RUNNING","task":")" +
                kTaskArn + R"("})");

  EXPECT_EQ(text(submitAttachmentStateChangesBody({{"arn:eni/1", AttachmentStatus::kAttached},
                                                   {"arn:eni/2", AttachmentStatus::kDetached}},
                                                  kCluster)),
            R"({"attachments":[{"attachmentArn":"arn:eni/1","status":"ATTACHED"},)"
            R"({"attachmentArn":"arn:eni/2","status":"DETACHED"}],"cluster":"prod"})");
}

TEST(EcsApiBodyTest, BodiesAreValidInputPerBotocoresEcsModel) {
  BotocoreReference botocore;
  // clientToken and zoneId are in the agent's own SDK model, not in the public one botocore has.
  json::Object registration = registerContainerInstanceBody(firstRegistration());
  registration.erase("clientToken");
  EXPECT_EQ(botocore.validateEcsInput("RegisterContainerInstance", registration), "");
  json::Object discover = discoverPollEndpointBody(kCluster, kInstanceArn);
  discover.erase("zoneId");
  EXPECT_EQ(botocore.validateEcsInput("DiscoverPollEndpoint", discover), "");

  TaskStateChange task = stoppedTask();
  task.containers[0].network_bindings.pop_back();  // port ranges: also the agent's own model
  EXPECT_EQ(
      botocore.validateEcsInput("SubmitTaskStateChange", submitTaskStateChangeBody(task, kCluster)),
      "");
  EXPECT_EQ(botocore.validateEcsInput(
                "SubmitTaskStateChange",
                submitTaskStateChangeBody(
                    TaskAttachmentStateChange{.task_arn = kTaskArn, .attachments = {{"arn:a"}}},
                    kCluster)),
            "");
  EXPECT_EQ(botocore.validateEcsInput(
                "SubmitContainerStateChange",
                submitContainerStateChangeBody(
                    {.task_arn = kTaskArn,
                     .container = {.container_name = "web", .exit_code = 0, .reason = "done"}},
                    kCluster)),
            "");
  EXPECT_EQ(botocore.validateEcsInput("SubmitAttachmentStateChanges",
                                      submitAttachmentStateChangesBody({{"arn:eni/1"}}, kCluster)),
            "");
  // The check itself can fail: a member the model does not have.
  EXPECT_NE(botocore.validateEcsInput("DiscoverPollEndpoint", json::Object{{"nope", 1}}), "");
}

// ---- responses ---------------------------------------------------------------------------------

TEST(EcsApiResponseTest, RegistrationResponse) {
  auto parsed = parseRegisterContainerInstanceResponse(boost::json::parse(R"({
      "containerInstance": {
        "containerInstanceArn": "arn:ci",
        "status": "ACTIVE",
        "attributes": [{"name": "ecs.os-type", "value": "linux"},
                       {"name": "ecs.availability-zone", "value": "us-west-2a"},
                       {"name": "ecs.capability.container-ordering"}]}})"));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->container_instance_arn, "arn:ci");
  EXPECT_EQ(parsed->availability_zone, "us-west-2a");
  ASSERT_EQ(parsed->attributes.size(), 3u);
  EXPECT_EQ(parsed->attributes[2], (Attribute{"ecs.capability.container-ordering", std::nullopt}));

  auto no_arn = parseRegisterContainerInstanceResponse(
      boost::json::parse(R"({"containerInstance":{"attributes":[{"value":1}]}})"));
  ASSERT_FALSE(no_arn);
  EXPECT_EQ(no_arn.error().code, ErrorCode::kDataLoss);
  EXPECT_NE(no_arn.error().message.find("containerInstance.containerInstanceArn: required"),
            std::string::npos)
      << no_arn.error().message;
  EXPECT_NE(no_arn.error().message.find("containerInstance.attributes[0].name: required"),
            std::string::npos)
      << no_arn.error().message;

  auto nothing = parseRegisterContainerInstanceResponse(boost::json::parse("{}"));
  ASSERT_FALSE(nothing);
  EXPECT_NE(nothing.error().message.find("containerInstance: required"), std::string::npos);
}

TEST(EcsApiResponseTest, DiscoverPollEndpointResponse) {
  auto parsed = parseDiscoverPollEndpointResponse(boost::json::parse(
      R"({"endpoint":"https://ecs-a-1.us-west-2.amazonaws.com/",)"
      R"("telemetryEndpoint":"https://ecs-t-1.us-west-2.amazonaws.com/",)"
      R"("serviceConnectEndpoint":"https://ecs-sc-1.us-west-2.amazonaws.com/","other":1})"));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->endpoint, "https://ecs-a-1.us-west-2.amazonaws.com/");
  EXPECT_EQ(parsed->telemetry_endpoint, "https://ecs-t-1.us-west-2.amazonaws.com/");
  EXPECT_EQ(parsed->service_connect_endpoint, "https://ecs-sc-1.us-west-2.amazonaws.com/");
  EXPECT_EQ(parsed->system_logs_endpoint, "");

  for (const char* missing :
       {R"({"telemetryEndpoint":"x"})", R"({"endpoint":""})", R"({"endpoint":7})"}) {
    auto error = parseDiscoverPollEndpointResponse(boost::json::parse(missing));
    ASSERT_FALSE(error) << missing;
    EXPECT_EQ(error.error().code, ErrorCode::kDataLoss);
    EXPECT_NE(error.error().message.find("endpoint"), std::string::npos);
  }
}

TEST(EcsApiResponseTest, UnmatchedAttributesNamesMissingAndChangedOnes) {
  std::vector<Attribute> sent = {{"a", std::nullopt}, {"b", "1"}, {"c", "2"}, {"d", "4"}};
  std::vector<Attribute> registered = {
      {"d", "4"}, {"c", "3"}, {"a", std::nullopt}, {"b", "1"}, {"ecs.availability-zone", "z"}};
  EXPECT_EQ(unmatchedAttributes(sent, registered), (std::vector<std::string>{"c"}));
  registered.erase(registered.begin());
  EXPECT_EQ(unmatchedAttributes(sent, registered), (std::vector<std::string>{"c", "d"}));
}

// ---- policies ----------------------------------------------------------------------------------

TEST(EcsRetryPolicyTest, SubmitStateRetriesForAboutADay) {
  aws::RetryPolicy policy = submitStateRetryPolicy();
  EXPECT_EQ(policy.max_attempts, 298);
  EXPECT_EQ(policy.delay(0, 0.0), 30ms);
  EXPECT_EQ(policy.delay(0, 1.0), 59ms);
  EXPECT_EQ(policy.delay(12, 0.0), 30ms * 4096);
  EXPECT_EQ(policy.delay(13, 0.5), 5min);
  EXPECT_EQ(policy.delay(296, 0.5), 5min);
  std::chrono::milliseconds total{0};
  for (int retry = 0; retry < policy.max_attempts - 1; ++retry) total += policy.delay(retry, 0.5);
  EXPECT_GT(total, 23h);
  EXPECT_LT(total, 25h);
}

TEST(EcsRetryPolicyTest, RegistrationAndStateChangeLoops) {
  aws::RetryPolicy registration = registrationRetryPolicy();
  EXPECT_EQ(registration.delay(0, 0.0), 3s);
  EXPECT_EQ(registration.delay(0, 1.0), 3600ms);
  EXPECT_EQ(registration.delay(6, 0.0), 192s);
  EXPECT_EQ(registration.delay(20, 1.0), 230'400ms);
  aws::RetryPolicy state = stateChangeRetryPolicy();
  EXPECT_EQ(state.delay(0, 0.0), 1s);
  EXPECT_EQ(state.delay(1, 0.0), 1300ms);
  EXPECT_EQ(state.delay(30, 0.0), 30s);

  EXPECT_TRUE(isTransientRegistrationError({.type = "ThrottlingException"}));
  EXPECT_TRUE(isTransientRegistrationError({.type = "ServerException"}));
  EXPECT_TRUE(isTransientRegistrationError({.type = "LimitExceededException"}));
  EXPECT_FALSE(isTransientRegistrationError({.type = "ClientException"}));
  EXPECT_FALSE(isTransientRegistrationError({.type = "InvalidParameterException"}));
}

TEST(EcsEndpointTest, BackendHostOrRegionalEndpoint) {
  EXPECT_EQ(ecsEndpoint("", "us-west-2"), "https://ecs.us-west-2.amazonaws.com");
  EXPECT_EQ(ecsEndpoint("", "cn-north-1"), "https://ecs.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(ecsEndpoint("ecs.example.internal", "us-west-2"), "https://ecs.example.internal");
  EXPECT_EQ(ecsEndpoint("http://127.0.0.1:8080", "us-west-2"), "http://127.0.0.1:8080");
}

// ---- EcsClient against a stand-in ---------------------------------------------------------------

// A loopback stand-in for the ECS API: checks every signature with botocore (403
// InvalidSignatureException when it does not hold), fails the first calls of each operation with
// ServerException and ThrottlingException in turn, then gives each operation its set answer.
class FakeEcs {
 public:
  FakeEcs() : server_([this](const LoopbackRequest& r, LoopbackConnection& c) { handle(r, c); }) {}

  void failFirst(int calls) {
    std::lock_guard lock(mutex_);
    failures_ = calls;
    failed_.clear();
  }
  void answer(const std::string& operation, const std::string& body) {
    std::lock_guard lock(mutex_);
    answers_[operation] =
        httpResponse("200 OK", "Content-Type: application/x-amz-json-1.1\r\n", body);
  }
  void reject(const std::string& operation, const std::string& status, const std::string& body) {
    std::lock_guard lock(mutex_);
    answers_[operation] = httpResponse(status, "", body);
  }
  std::vector<std::string> badSignatures() {
    std::lock_guard lock(mutex_);
    return bad_signatures_;
  }
  // The requests for `operation`, in order.
  std::vector<LoopbackRequest> requests(const std::string& operation) const {
    std::vector<LoopbackRequest> out;
    for (const LoopbackRequest& request : server_.requests()) {
      if (request.header("X-Amz-Target") == std::string(kTargetPrefix) + "." + operation) {
        out.push_back(request);
      }
    }
    return out;
  }
  std::string url() const { return server_.url(""); }

 private:
  void handle(const LoopbackRequest& request, LoopbackConnection& connection) {
    const std::string target = request.header("X-Amz-Target");
    const std::string operation = target.substr(target.find('.') + 1);
    const std::string verdict =
        botocore_.verify(request.method, "http://" + request.header("Host") + request.target,
                         BotocoreReference::headerLines(request.head), request.body, kSecret);
    std::lock_guard lock(mutex_);
    if (!verdict.empty()) {
      bad_signatures_.push_back(verdict);
      connection.write(
          httpResponse("403 Forbidden", "",
                       R"({"__type":"InvalidSignatureException","message":"signature mismatch"})"));
      return;
    }
    if (int& failed = failed_[operation]; failed < failures_) {
      connection.write(
          failed++ % 2 == 0
              ? httpResponse("500 Internal Server Error", "",
                             R"({"__type":"ServerException","message":"internal"})")
              : httpResponse("400 Bad Request", "",
                             R"({"__type":"ThrottlingException","message":"Rate exceeded"})"));
      return;
    }
    auto found = answers_.find(operation);
    connection.write(found != answers_.end() ? found->second : httpResponse("200 OK", "", "{}"));
  }

  BotocoreReference botocore_;
  std::mutex mutex_;
  int failures_ = 0;
  std::map<std::string, int> failed_;
  std::map<std::string, std::string> answers_;
  std::vector<std::string> bad_signatures_;
  LoopbackHttpServer server_;  // last: its handler threads use everything above
};

aws::RetryPolicy quickRetries(int attempts) {
  return aws::RetryPolicy{.max_attempts = attempts, .base = 1ms, .cap = 4ms};
}

class EcsClientTest : public ::testing::Test {
 protected:
  EcsClientTest() {
    ecs_.answer("RegisterContainerInstance",
                R"({"containerInstance":{"containerInstanceArn":")" + kInstanceArn +
                    R"(","attributes":[{"name":"ecs.capability.container-ordering"},)"
                    R"({"name":"ecs.os-type","value":"linux"},)"
                    R"({"name":"ecs.availability-zone","value":"us-west-2b"}]}})");
    ecs_.answer("DiscoverPollEndpoint",
                R"({"endpoint":"https://ecs-a-1.us-west-2.amazonaws.com/",)"
                R"("telemetryEndpoint":"https://ecs-t-1.us-west-2.amazonaws.com/"})");
    ecs_.answer("SubmitTaskStateChange", R"({"acknowledgment":"ACK"})");
  }

  EcsClientOptions options() {
    return EcsClientOptions{
        .cluster = kCluster,
        .region = "us-west-2",
        .backend_host = ecs_.url(),
        .user_agent =
            "Amazon ECS Agent - v0.1.0 (test) (linux; LINUX) (+http://aws.amazon.com/ecs/)",
        .credentials =
            [] {
              return Result<aws::Credentials>(aws::Credentials{.access_key_id = "AKIDEXAMPLE",
                                                               .secret_access_key = kSecret,
                                                               .session_token = "token"});
            },
        .standard_retry = quickRetries(3),
        .submit_state_retry = quickRetries(5),
        .steady_now = [this] { return std::chrono::steady_clock::time_point(hours_.load() * 1h); },
    };
  }

  void TearDown() override { EXPECT_EQ(ecs_.badSignatures(), std::vector<std::string>{}); }

  FakeEcs ecs_;
  std::atomic<int> hours_{1000};
};

TEST_F(EcsClientTest, EveryCallGetsThroughTransientFailures) {
  ecs_.failFirst(2);
  EcsClient client(options());

  auto registered = client.registerContainerInstance(firstRegistration());
  ASSERT_TRUE(registered) << registered.error().asError().message;
  EXPECT_EQ(registered->container_instance_arn, kInstanceArn);
  EXPECT_EQ(registered->availability_zone, "us-west-2b");
  EXPECT_EQ(unmatchedAttributes(firstRegistration().attributes, registered->attributes),
            std::vector<std::string>{});

  auto endpoints = client.discoverPollEndpoint(kInstanceArn);
  ASSERT_TRUE(endpoints) << endpoints.error().asError().message;
  EXPECT_EQ(endpoints->endpoint, "https://ecs-a-1.us-west-2.amazonaws.com/");
  EXPECT_EQ(endpoints->telemetry_endpoint, "https://ecs-t-1.us-west-2.amazonaws.com/");

  auto task = client.submitTaskStateChange(stoppedTask());
  ASSERT_TRUE(task) << task.error().asError().message;
  StandaloneContainerStateChange container{
      .task_arn = kTaskArn,
      .container = {.container_name = "web", .status = ReportedStatus::kRunning}};
  auto submitted = client.submitContainerStateChange(container);
  ASSERT_TRUE(submitted) << submitted.error().asError().message;

  // Each call went out three times, the same signed body every time (one client token for the
  // retries of one registration).
  const std::map<std::string, std::string> bodies = {
      {"RegisterContainerInstance", text(registerContainerInstanceBody(firstRegistration()))},
      {"DiscoverPollEndpoint", text(discoverPollEndpointBody(kCluster, kInstanceArn))},
      {"SubmitTaskStateChange", text(submitTaskStateChangeBody(stoppedTask(), kCluster))},
      {"SubmitContainerStateChange", text(submitContainerStateChangeBody(container, kCluster))},
  };
  for (const auto& [operation, body] : bodies) {
    SCOPED_TRACE(operation);
    std::vector<LoopbackRequest> requests = ecs_.requests(operation);
    ASSERT_EQ(requests.size(), 3u);
    for (const LoopbackRequest& request : requests) {
      EXPECT_EQ(request.body, body);
      EXPECT_EQ(request.header("User-Agent"), options().user_agent);
      EXPECT_NE(request.header("Authorization").find("/us-west-2/ecs/aws4_request"),
                std::string::npos);
    }
  }
}

TEST_F(EcsClientTest, StateChangesOutlastFailuresThatEndARegistration) {
  ecs_.failFirst(4);
  EcsClient client(options());

  auto registered = client.registerContainerInstance(firstRegistration());
  ASSERT_FALSE(registered);
  EXPECT_EQ(registered.error().attempts, 3);
  EXPECT_EQ(registered.error().type, "ServerException");  // the third failure
  EXPECT_TRUE(isTransientRegistrationError(registered.error()));
  EXPECT_EQ(registered.error().asError().code, ErrorCode::kUnavailable);

  auto task = client.submitTaskStateChange(stoppedTask());
  ASSERT_TRUE(task) << task.error().asError().message;
  EXPECT_EQ(ecs_.requests("SubmitTaskStateChange").size(), 5u);
}

TEST_F(EcsClientTest, ClientErrorsAndUselessAnswersAreNotRetried) {
  ecs_.reject("RegisterContainerInstance", "400 Bad Request",
              R"({"__type":"com.amazonaws.ecs#ClientException","message":"Cluster not found."})");
  EcsClient client(options());
  auto rejected = client.registerContainerInstance(firstRegistration());
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().type, "ClientException");
  EXPECT_EQ(rejected.error().message, "Cluster not found.");
  EXPECT_FALSE(rejected.error().retryable);
  EXPECT_FALSE(isTransientRegistrationError(rejected.error()));
  EXPECT_EQ(rejected.error().asError().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ecs_.requests("RegisterContainerInstance").size(), 1u);

  // A success that does not say which instance was registered is no registration.
  ecs_.answer("RegisterContainerInstance", R"({"containerInstance":{}})");
  auto useless = client.registerContainerInstance(firstRegistration());
  ASSERT_FALSE(useless);
  EXPECT_FALSE(useless.error().retryable);
  EXPECT_EQ(useless.error().asError().code, ErrorCode::kDataLoss);
  EXPECT_EQ(ecs_.requests("RegisterContainerInstance").size(), 2u);

  ecs_.reject("SubmitTaskStateChange", "400 Bad Request",
              R"({"__type":"InvalidParameterException","message":"bad task"})");
  auto dropped = client.submitTaskStateChange(stoppedTask());
  ASSERT_FALSE(dropped);
  EXPECT_EQ(dropped.error().type, "InvalidParameterException");
  EXPECT_EQ(ecs_.requests("SubmitTaskStateChange").size(), 1u);
}

TEST_F(EcsClientTest, PollEndpointsAreCachedForTwelveHoursAndReusedWhenDiscoveryFails) {
  EcsClient client(options());
  auto first = client.discoverPollEndpoint(kInstanceArn);
  ASSERT_TRUE(first) << first.error().asError().message;
  EXPECT_EQ(ecs_.requests("DiscoverPollEndpoint").size(), 1u);

  hours_ += 11;  // still fresh: no call
  auto cached = client.discoverPollEndpoint(kInstanceArn);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->endpoint, first->endpoint);
  EXPECT_EQ(ecs_.requests("DiscoverPollEndpoint").size(), 1u);

  hours_ += 2;  // expired, and ECS fails every attempt: the old answer beats none
  ecs_.failFirst(100);
  auto stale = client.discoverPollEndpoint(kInstanceArn);
  ASSERT_TRUE(stale) << stale.error().asError().message;
  EXPECT_EQ(stale->endpoint, first->endpoint);
  EXPECT_EQ(ecs_.requests("DiscoverPollEndpoint").size(), 4u);

  // Another instance has nothing cached to fall back on.
  auto none = client.discoverPollEndpoint(kInstanceArn + "-other");
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().retryable);

  // ECS recovers with a new endpoint: fetched and cached afresh.
  ecs_.failFirst(0);
  ecs_.answer("DiscoverPollEndpoint", R"({"endpoint":"https://ecs-a-2.us-west-2.amazonaws.com/"})");
  auto fresh = client.discoverPollEndpoint(kInstanceArn);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->endpoint, "https://ecs-a-2.us-west-2.amazonaws.com/");
  EXPECT_EQ(fresh->telemetry_endpoint, "");
  const size_t calls = ecs_.requests("DiscoverPollEndpoint").size();
  ASSERT_TRUE(client.discoverPollEndpoint(kInstanceArn));
  EXPECT_EQ(ecs_.requests("DiscoverPollEndpoint").size(), calls);

  // An answer without an endpoint is an error, and is not cached.
  ecs_.answer("DiscoverPollEndpoint", R"({"telemetryEndpoint":"https://t/"})");
  auto empty = client.discoverPollEndpoint(kInstanceArn + "-third");
  ASSERT_FALSE(empty);
  EXPECT_FALSE(empty.error().retryable);
  EXPECT_NE(empty.error().message.find("endpoint: required"), std::string::npos)
      << empty.error().message;
}

}  // namespace
}  // namespace ecs::ecsapi
