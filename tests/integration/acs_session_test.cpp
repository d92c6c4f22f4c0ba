// AcsSession against the stand-in control plane: the signed upgrade and its query, heartbeats,
// payloads and their acks, credentials refreshes, refused updates, and the reconnect policy
// (clean close, abort, maximum age, heartbeat timeout, inactive instance, stop). The stand-in
// checks every signature with botocore and every frame against the ACS wire model.
#include "agent/acs/acs_session.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fake_control_plane.h"
#include "tests/support/wait_for.h"

namespace ecs::acs {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using ecs::testing::FakeControlPlane;
using ecs::testing::waitFor;

const std::string kCluster = "acs-session-test";
const std::string kInstance =
    "arn:aws:ecs:us-west-2:123456789012:container-instance/acs-session-test/0123456789abcdef";

json::object task(const std::string& id) {
  auto credentials = [&](const std::string& kind) {
    return json::object{
        {"credentialsId", id + "-" + kind}, {"roleArn", "arn:aws:iam::123456789012:role/" + kind},
        {"accessKeyId", "ASIAEXAMPLE"},     {"secretAccessKey", "secret"},
        {"sessionToken", "token"},          {"expiration", "2030-03-25T06:17:19.318+0000"}};
  };
  return json::object{
      {"arn", "arn:aws:ecs:us-west-2:123456789012:task/acs-session-test/" + id},
      {"taskClusterArn", "arn:aws:ecs:us-west-2:123456789012:cluster/acs-session-test"},
      {"family", "app"},
      {"version", "1"},
      {"desiredStatus", "RUNNING"},
      {"networkMode", "host"},
      {"roleCredentials", credentials("task")},
      {"executionRoleCredentials", credentials("exec")},
      {"containers", json::array{json::object{{"name", "app"},
                                              {"image", "busybox:latest"},
                                              {"essential", true},
                                              {"memory", 64},
                                              {"cpu", 0},
                                              {"command", json::array{"sleep", "60"}}}}}};
}

// Records what the session hands over; answers are the test's to give.
class RecordingHandler : public AcsHandler {
 public:
  void onPayload(AcsPayload payload, AcsReply reply) override {
    std::lock_guard lock(mutex_);
    payloads_.push_back({std::move(payload), reply});
    changed_.notify_all();
  }
  void onCredentials(AcsCredentialsMessage message, AcsReply reply) override {
    reply.ackCredentials(message);
    std::lock_guard lock(mutex_);
    credentials_.push_back(std::move(message));
    changed_.notify_all();
  }
  void onTaskManifest(AcsTaskManifest manifest, AcsReply reply) override {
    // Every local task the manifest does not list is a stop candidate; here there is one.
    reply.ackManifest(manifest, {{"arn:aws:ecs:us-west-2:123456789012:task/acs-session-test/gone",
                                  manifest.cluster_arn, "STOPPED"}});
    std::lock_guard lock(mutex_);
    manifests_.push_back(std::move(manifest));
    changed_.notify_all();
  }
  void onStopVerificationAck(AcsStopVerificationAck ack) override {
    std::lock_guard lock(mutex_);
    stop_acks_.push_back(std::move(ack));
    changed_.notify_all();
  }
  void onInactiveInstance() override {
    std::lock_guard lock(mutex_);
    ++inactive_;
    changed_.notify_all();
  }

  std::optional<std::pair<AcsPayload, AcsReply>> waitForPayload(std::size_t index) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, 10s, [&] { return payloads_.size() > index; })) {
      return std::nullopt;
    }
    return payloads_[index];
  }
  std::optional<AcsStopVerificationAck> waitForStopAck() {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, 10s, [&] { return !stop_acks_.empty(); })) return std::nullopt;
    return stop_acks_.front();
  }
  std::vector<AcsTaskManifest> manifests() {
    std::lock_guard lock(mutex_);
    return manifests_;
  }
  int inactive() {
    std::lock_guard lock(mutex_);
    return inactive_;
  }
  std::size_t credentials() {
    std::lock_guard lock(mutex_);
    return credentials_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<AcsPayload, AcsReply>> payloads_;
  std::vector<AcsCredentialsMessage> credentials_;
  std::vector<AcsTaskManifest> manifests_;
  std::vector<AcsStopVerificationAck> stop_acks_;
  int inactive_ = 0;
};

class AcsSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plane_.settings({{"require_registered_instance", false}});
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (session_) session_->stop();
    session_.reset();
    work_.reset();
    thread_.join();
    EXPECT_TRUE(plane_.signatureFailures().empty())
        << json::serialize(json::value_from(plane_.signatureFailures()));
    EXPECT_TRUE(plane_.violations().empty())
        << json::serialize(json::value_from(plane_.violations()));
  }

  AcsSessionOptions options() {
    AcsSessionOptions o;
    o.cluster = kCluster;
    o.container_instance_arn = kInstance;
    o.agent_version = "1.2.3";
    o.agent_hash = "abc1234";
    o.region = plane_.options().region;
    o.credentials = [this]() -> Result<aws::Credentials> {
      return aws::Credentials{.access_key_id = plane_.options().access_key,
                              .secret_access_key = plane_.options().secret_key,
                              .session_token = {},
                              .expiration = std::nullopt,
                              .source = "test"};
    };
    o.endpoint = [url = plane_.acsEndpoint()]() -> Result<std::string> { return url; };
    o.heartbeat_timeout = 30s;
    o.heartbeat_jitter = 0ms;
    o.backoff_initial = 20ms;
    o.backoff_jitter = 0;
    o.close_timeout = 1s;
    return o;
  }

  void start(AcsSessionOptions o) {
    session_ = std::make_unique<AcsSession>(io_, std::move(o), handler_);
    session_->start();
  }

  json::object connect(std::int64_t after = 0, std::chrono::milliseconds timeout = 10s) {
    auto connection = plane_.waitForAcsConnection(timeout, after);
    EXPECT_TRUE(connection) << plane_.log();
    return connection.value_or(json::object{});
  }

  static std::string query(const json::object& connection, const std::string& key) {
    const auto* q = connection.if_contains("query");
    if (q == nullptr || !q->is_object()) return "";
    const auto* value = q->get_object().if_contains(key);
    return value != nullptr && value->is_string() ? std::string(value->get_string()) : "";
  }

  FakeControlPlane plane_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::thread thread_;
  RecordingHandler handler_;
  std::unique_ptr<AcsSession> session_;
};

TEST(AcsQuery, HoldsTheDocumentedKeysSortedAndEncoded) {
  AcsSessionOptions o;
  o.cluster = "my cluster";
  o.container_instance_arn = "arn:ci/1";
  o.agent_version = "1.2.3";
  o.agent_hash = "abc";
  EXPECT_EQ(
      acsQuery(o, true),
      "agentHash=abc&agentVersion=1.2.3&clusterArn=my%20cluster&containerInstanceArn="
      "arn%3Aci%2F1&dockerVersion=containerd&protocolVersion=2&sendCredentials=true&seqNum=1");
  o.docker_version.clear();
  EXPECT_EQ(acsQuery(o, false).find("dockerVersion"), std::string::npos);
  EXPECT_NE(acsQuery(o, false).find("sendCredentials=false"), std::string::npos);
}

TEST_F(AcsSessionTest, ConnectsWithASignedUpgradeAndTheDocumentedQuery) {
  start(options());
  auto connection = connect();
  EXPECT_TRUE(connection.at("accepted").as_bool());
  EXPECT_TRUE(std::string(connection.at("path").as_string()).starts_with("/ws?"));
  const auto& q = connection.at("query").as_object();
  EXPECT_EQ(q.size(), 8u) << json::serialize(q);
  EXPECT_EQ(query(connection, "agentHash"), "abc1234");
  EXPECT_EQ(query(connection, "agentVersion"), "1.2.3");
  EXPECT_EQ(query(connection, "clusterArn"), kCluster);
  EXPECT_EQ(query(connection, "containerInstanceArn"), kInstance);
  EXPECT_EQ(query(connection, "dockerVersion"), "containerd");
  EXPECT_EQ(query(connection, "protocolVersion"), "2");
  EXPECT_EQ(query(connection, "sendCredentials"), "true");
  EXPECT_EQ(query(connection, "seqNum"), "1");
  // The stand-in sees the upgrade before the session has read the answer and counted it.
  EXPECT_TRUE(waitFor([&] { return session_->connections() == 1; }, 5s, "the connection counted"));
}

TEST_F(AcsSessionTest, AnswersHeartbeatsAndSurvivesMalformedFrames) {
  start(options());
  connect();
  plane_.control("POST", "/acs/send", json::object{{"text", "{not json"}});
  plane_.control("POST", "/acs/send", json::object{{"text", "[1,2]"}});
  plane_.pushAcs({{"type", "SomethingNew"}, {"message", json::object{}}}, false);
  auto heartbeat =
      plane_.pushAcs({{"type", "HeartbeatMessage"}, {"message", json::object{{"healthy", true}}}});
  auto ack = plane_.waitForAcsFrame("HeartbeatAckRequest",
                                    {{"messageId", heartbeat.at("messageId")}}, 10s);
  ASSERT_TRUE(ack) << plane_.log();
  EXPECT_EQ(session_->connections(), 1);
}

TEST_F(AcsSessionTest, HandsPayloadToTheHandlerAndAcksWhenTheHandlerSaysSo) {
  start(options());
  connect();
  auto sent = plane_.pushAcs(
      {{"type", "PayloadMessage"}, {"message", json::object{{"tasks", json::array{task("one")}}}}});
  auto got = handler_.waitForPayload(0);
  ASSERT_TRUE(got);
  auto& [payload, reply] = *got;
  EXPECT_EQ(payload.message_id, sent.at("messageId").as_string());
  ASSERT_EQ(payload.tasks.size(), 1u);
  ASSERT_TRUE(payload.tasks[0].task) << payload.tasks[0].task.error().message;
  EXPECT_EQ(payload.tasks[0].arn, std::string(task("one").at("arn").as_string()));
  EXPECT_TRUE(payload.allTasksParsed());
  // Nothing is acknowledged before the handler says so.
  EXPECT_TRUE(plane_.acsFrames("AckRequest").empty());

  EXPECT_TRUE(reply.ackPayload(payload));
  auto ack = plane_.waitForAcsFrame("AckRequest", {{"messageId", sent.at("messageId")}}, 10s);
  ASSERT_TRUE(ack) << plane_.log();
  const auto& message = ack->at("message").as_object();
  EXPECT_EQ(message.at("cluster"), sent.at("clusterArn"));
  EXPECT_EQ(message.at("containerInstance"), sent.at("containerInstanceArn"));
  for (const std::string id : {"one-task", "one-exec"}) {
    auto credentials_ack =
        plane_.waitForAcsFrame("IAMRoleCredentialsAckRequest",
                               {{"messageId", sent.at("messageId")}, {"credentialsId", id}}, 10s);
    ASSERT_TRUE(credentials_ack) << id;
    EXPECT_EQ(credentials_ack->at("message").at("expiration"), "2030-03-25T06:17:19.318+0000");
  }
}

TEST_F(AcsSessionTest, PayloadWithAnUnreadableTaskIsNotAcked) {
  start(options());
  connect();
  json::object bad{{"arn", "arn:aws:ecs:us-west-2:123456789012:task/acs-session-test/bad"},
                   {"desiredStatus", "RUNNING"},
                   {"containers", "not a list"}};
  plane_.pushAcs({{"type", "PayloadMessage"},
                  {"message", json::object{{"tasks", json::array{task("good"), bad}}}}});
  auto got = handler_.waitForPayload(0);
  ASSERT_TRUE(got);
  auto& [payload, reply] = *got;
  ASSERT_EQ(payload.tasks.size(), 2u);
  EXPECT_TRUE(payload.tasks[0].task);
  ASSERT_FALSE(payload.tasks[1].task);
  EXPECT_EQ(payload.tasks[1].arn, std::string(bad.at("arn").as_string()));
  EXPECT_FALSE(payload.tasks[1].task.error().message.empty());
  EXPECT_FALSE(payload.allTasksParsed());
  EXPECT_FALSE(reply.ackPayload(payload));

  // A heartbeat's ack comes after anything the session had queued before it.
  auto heartbeat =
      plane_.pushAcs({{"type", "HeartbeatMessage"}, {"message", json::object{{"healthy", true}}}});
  ASSERT_TRUE(plane_.waitForAcsFrame("HeartbeatAckRequest",
                                     {{"messageId", heartbeat.at("messageId")}}, 10s));
  EXPECT_TRUE(plane_.acsFrames("AckRequest").empty());
  EXPECT_TRUE(plane_.acsFrames("IAMRoleCredentialsAckRequest").empty());
}

TEST_F(AcsSessionTest, AcksCredentialsRefreshAndRefusesUpdates) {
  start(options());
  connect();
  auto refresh = plane_.pushAcs(
      {{"type", "IAMRoleCredentialsMessage"},
       {"message",
        json::object{{"taskArn", "arn:aws:ecs:us-west-2:123456789012:task/acs-session-test/one"},
                     {"roleType", "TaskApplication"},
                     {"roleCredentials", task("one").at("roleCredentials")}}}});
  auto ack = plane_.waitForAcsFrame(
      "IAMRoleCredentialsAckRequest",
      {{"messageId", refresh.at("messageId")}, {"credentialsId", "one-task"}}, 10s);
  ASSERT_TRUE(ack) << plane_.log();
  EXPECT_EQ(handler_.credentials(), 1u);

  auto update = plane_.pushAcs(
      {{"type", "PerformUpdateMessage"},
       {"message", json::object{{"updateInfo", json::object{{"location", "s3://bucket/agent.tar"},
                                                            {"signature", "00"}}}}}});
  auto nack = plane_.waitForAcsFrame("NackRequest", {{"messageId", update.at("messageId")}}, 10s);
  ASSERT_TRUE(nack) << plane_.log();
}

TEST_F(AcsSessionTest, ManifestIsAckedWithStopCandidatesAndTheVerificationReachesTheHandler) {
  plane_.settings({{"acs_auto_stop_verification_ack", true}});
  start(options());
  connect();
  auto manifest = plane_.pushAcs(
      {{"type", "TaskManifestMessage"},
       {"message", json::object{{"tasks", json::array{json::object{
                                              {"taskArn", task("one").at("arn")},
                                              {"taskClusterArn", task("one").at("taskClusterArn")},
                                              {"desiredStatus", "RUNNING"}}}}}}});
  ASSERT_TRUE(plane_.waitForAcsFrame("AckRequest", {{"messageId", manifest.at("messageId")}}, 10s))
      << plane_.log();
  auto verification = plane_.waitForAcsFrame("TaskStopVerificationMessage",
                                             {{"messageId", manifest.at("messageId")}}, 10s);
  ASSERT_TRUE(verification) << plane_.log();
  auto ack = handler_.waitForStopAck();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->message_id, manifest.at("messageId").as_string());
  ASSERT_EQ(ack->stop_tasks.size(), 1u);
  EXPECT_EQ(ack->stop_tasks[0].task_arn,
            "arn:aws:ecs:us-west-2:123456789012:task/acs-session-test/gone");
  auto manifests = handler_.manifests();
  ASSERT_EQ(manifests.size(), 1u);
  ASSERT_EQ(manifests[0].tasks.size(), 1u);
  EXPECT_EQ(manifests[0].tasks[0].desired_status, "RUNNING");
}

TEST_F(AcsSessionTest, CleanCloseReconnectsAtOnceWithoutAskingForCredentials) {
  auto o = options();
  o.backoff_initial = 60s;  // a reconnect within the wait below cannot be a backoff
  start(o);
  connect();
  auto seq = plane_.lastSeq();
  ASSERT_EQ(plane_.dropAcs(1000, "bye"), 1);
  auto again = connect(seq, 5s);
  EXPECT_EQ(query(again, "sendCredentials"), "false");
  seq = plane_.lastSeq();
  ASSERT_EQ(plane_.dropAcs(1001, "going away"), 1);
  again = connect(seq, 5s);
  EXPECT_EQ(query(again, "sendCredentials"), "false");
}

TEST_F(AcsSessionTest, AbortReconnectsAfterABackoff) {
  auto o = options();
  o.backoff_initial = 400ms;
  start(o);
  connect();
  auto seq = plane_.lastSeq();
  auto aborted = std::chrono::steady_clock::now();
  ASSERT_EQ(plane_.abortAcs(), 1);
  auto again = connect(seq, 10s);
  EXPECT_GE(std::chrono::steady_clock::now() - aborted, 400ms);
  EXPECT_EQ(query(again, "sendCredentials"), "false");
}

TEST_F(AcsSessionTest, ClosesAtMaximumAgeAndReconnectsAtOnce) {
  auto o = options();
  o.max_connection_age = 300ms;
  o.connection_age_jitter = 0ms;
  o.backoff_initial = 60s;  // an expired connection is a clean close: no backoff
  start(o);
  connect();
  auto seq = plane_.lastSeq();
  auto closed = plane_.waitForEvent({{"kind", "disconnect"}, {"after", seq}}, 10s);
  ASSERT_TRUE(closed) << plane_.log();
  EXPECT_EQ(closed->at("code"), 1000) << json::serialize(*closed);
  EXPECT_EQ(closed->at("by"), "agent") << json::serialize(*closed);
  connect(seq, 5s);
}

TEST_F(AcsSessionTest, HeartbeatTimeoutDropsTheConnection) {
  auto o = options();
  o.heartbeat_timeout = 300ms;
  o.heartbeat_jitter = 0ms;
  o.backoff_initial = 10ms;
  start(o);
  connect();
  auto seq = plane_.lastSeq();
  connect(seq, 10s);
  EXPECT_TRUE(waitFor([&] { return session_->connections() >= 2; }, 5s, "a second connection"));
}

TEST_F(AcsSessionTest, InactiveInstanceWaitsBeforeTryingAgain) {
  plane_.refuseAcs(1);
  auto o = options();
  o.inactive_instance_wait = 1500ms;
  auto started = std::chrono::steady_clock::now();
  start(o);
  auto connection = connect(0, 15s);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1500ms);
  EXPECT_EQ(handler_.inactive(), 1);
  // The refused attempt was no connection: credentials are still asked for.
  EXPECT_EQ(query(connection, "sendCredentials"), "true");
}

TEST_F(AcsSessionTest, StopClosesCleanlyAndPromptly) {
  start(options());
  connect();
  auto seq = plane_.lastSeq();
  auto asked = std::chrono::steady_clock::now();
  session_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1500ms);
  EXPECT_FALSE(session_->connected());
  auto closed = plane_.waitForEvent({{"kind", "disconnect"}, {"after", seq}}, 10s);
  ASSERT_TRUE(closed) << plane_.log();
  EXPECT_EQ(closed->at("code"), 1000) << json::serialize(*closed);
  EXPECT_EQ(closed->at("by"), "agent") << json::serialize(*closed);
  // No reconnect follows.
  session_.reset();
  EXPECT_FALSE(plane_.waitForAcsConnection(300ms, seq));
}

TEST_F(AcsSessionTest, StopIsPromptWhileWaitingToReconnect) {
  plane_.refuseAcs(-1, 503, {{"ServerException", "unavailable"}});
  auto o = options();
  o.backoff_initial = 60s;
  start(o);
  ASSERT_TRUE(plane_.waitForEvent({{"kind", "connect"}, {"accepted", false}}, 10s));
  auto asked = std::chrono::steady_clock::now();
  session_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  EXPECT_EQ(session_->connections(), 0);
}

}  // namespace
}  // namespace ecs::acs
