// The stand-in control plane (tests/support/fake_control_plane) through its C++ wrapper, driven
// by real clients: the AWS CLI signs the ECS API calls, ws_client.py (botocore-signed upgrade)
// plays the agent's side of ACS and TCS. Needs nothing of the harness.
#include "tests/support/fake_control_plane.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/harness_env.h"

namespace ecs::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const std::string kAws = "/usr/bin/aws";
const std::string kCluster = "fake-cp-test";
const char* kResources = R"([{"name":"CPU","type":"INTEGER","integerValue":2048},)"
                         R"({"name":"MEMORY","type":"INTEGER","integerValue":4096},)"
                         R"({"name":"PORTS","type":"STRINGSET","stringSetValue":["22","51678"]},)"
                         R"({"name":"PORTS_UDP","type":"STRINGSET","stringSetValue":[]}])";

std::string percentEncode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string wsUrl(const std::string& endpoint, const std::string& path,
                  const std::vector<std::pair<std::string, std::string>>& sorted_query) {
  std::string url = "ws://" + endpoint.substr(std::string("http://").size()) + path + "?";
  for (std::size_t i = 0; i < sorted_query.size(); ++i) {
    if (i > 0) url += "&";
    url += percentEncode(sorted_query[i].first) + "=" + percentEncode(sorted_query[i].second);
  }
  return url;
}

bool isEvent(const json::object& line, const std::string& event) {
  const auto* value = line.if_contains("event");
  return value && value->is_string() && value->as_string() == event;
}

class FakeControlPlaneTest : public ::testing::Test {
 protected:
  RunResult aws(std::vector<std::string> args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv = {kAws, "--endpoint-url", plane_.endpointUrl(), "--output",
                                     "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> full_env = plane_.credentialsEnv();
    full_env.insert(full_env.end(), env.begin(), env.end());
    return runCommand(argv, full_env, 120s);
  }

  // Registers through the AWS CLI; the container instance ARN.
  std::string registerInstance() {
    RunResult r = aws({"ecs", "register-container-instance", "--cluster", kCluster,
                       "--total-resources", kResources, "--attributes",
                       "name=ecs.os-type,value=linux", "name=ecs.capability.efs"});
    EXPECT_TRUE(r.ok()) << r.describe();
    if (!r.ok()) return "";
    return std::string(
        json::parse(r.out).at("containerInstance").at("containerInstanceArn").as_string());
  }

  std::string acsUrl(const std::string& arn) {
    return wsUrl(plane_.acsEndpoint(), "/ws",
                 {{"agentHash", "0123abcd"},
                  {"agentVersion", "0.1.0"},
                  {"clusterArn", kCluster},
                  {"containerInstanceArn", arn},
                  {"dockerVersion", "DockerVersion: containerd"},
                  {"protocolVersion", "2"},
                  {"sendCredentials", "true"},
                  {"seqNum", "1"}});
  }

  std::string tcsUrl(const std::string& arn) {
    return wsUrl(plane_.tcsEndpoint(), "/ws",
                 {{"agentHash", "0123abcd"},
                  {"agentVersion", "0.1.0"},
                  {"cluster", kCluster},
                  {"containerInstance", arn}});
  }

  // ws_client.py connected to `url`, signing with the test's credentials (or `secret`).
  std::unique_ptr<BackgroundProcess> client(const std::string& url,
                                            const std::vector<std::string>& extra = {},
                                            const std::string& secret = "") {
    const auto& o = plane_.options();
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     "-B",
                                     FakeControlPlane::scriptDir() + "/ws_client.py",
                                     "--url",
                                     url,
                                     "--region",
                                     o.region,
                                     "--access-key",
                                     o.access_key,
                                     "--secret-key",
                                     secret.empty() ? o.secret_key : secret};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<BackgroundProcess>(argv, std::vector<std::string>{}, plane_.workdir());
  }

  std::optional<json::object> clientEvent(BackgroundProcess& process, const std::string& event) {
    return process.waitForJson([&](const json::object& line) { return isEvent(line, event); }, 20s);
  }

  FakeControlPlane plane_;
};

TEST_F(FakeControlPlaneTest, AwsCliRegistrationIsVerifiedRecordedAndEchoed) {
  RunResult r =
      aws({"ecs", "register-container-instance", "--cluster", kCluster, "--total-resources",
           kResources, "--attributes", "name=ecs.os-type,value=linux", "name=ecs.capability.efs"});
  ASSERT_TRUE(r.ok()) << r.describe();
  const json::object instance = json::parse(r.out).at("containerInstance").as_object();
  const std::string arn(instance.at("containerInstanceArn").as_string());
  EXPECT_TRUE(
      arn.starts_with("arn:aws:ecs:us-west-2:123456789012:container-instance/" + kCluster + "/"))
      << arn;
  std::map<std::string, std::string> attributes;
  for (const auto& a : instance.at("attributes").as_array()) {
    const auto* value = a.as_object().if_contains("value");
    attributes[std::string(a.at("name").as_string())] =
        value ? std::string(value->as_string()) : "";
  }
  EXPECT_EQ(attributes["ecs.os-type"], "linux");
  EXPECT_TRUE(attributes.contains("ecs.capability.efs"));
  EXPECT_EQ(attributes["ecs.availability-zone"], "us-west-2a");

  auto calls = plane_.calls("RegisterContainerInstance");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].at("status"), 200);
  EXPECT_EQ(calls[0].at("body").at("cluster"), kCluster.c_str());
  EXPECT_EQ(json::serialize(calls[0].at("signed_headers")),
            R"(["content-type","host","x-amz-date","x-amz-target"])");
  EXPECT_TRUE(plane_.signatureFailures().empty());
  EXPECT_TRUE(plane_.violations().empty());

  // Re-registration with the ARN keeps it.
  r = aws({"ecs", "register-container-instance", "--cluster", kCluster, "--total-resources",
           kResources, "--container-instance-arn", arn});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(json::parse(r.out).at("containerInstance").at("containerInstanceArn"), arn.c_str());
  EXPECT_EQ(plane_.instances().size(), 1u);
}

TEST_F(FakeControlPlaneTest, WrongSecretIsRejectedWith403AndRecorded) {
  RunResult r = aws({"ecs", "discover-poll-endpoint", "--cluster", kCluster},
                    {"AWS_SECRET_ACCESS_KEY=not-the-secret", "AWS_MAX_ATTEMPTS=1"});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.err.find("InvalidSignatureException"), std::string::npos) << r.describe();
  auto failures = plane_.signatureFailures();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].at("where"), "api");
  EXPECT_EQ(failures[0].at("error_type"), "InvalidSignatureException");
  EXPECT_NE(failures[0].at("received_authorization"), failures[0].at("expected_authorization"));
  auto calls = plane_.calls("DiscoverPollEndpoint");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].at("status"), 403);
}

TEST_F(FakeControlPlaneTest, InjectedServerErrorsAreRetriedThrough) {
  const std::string arn = registerInstance();
  ASSERT_FALSE(arn.empty());
  plane_.failNext("DiscoverPollEndpoint", 2);
  RunResult r =
      aws({"ecs", "discover-poll-endpoint", "--cluster", kCluster, "--container-instance", arn},
          {"AWS_RETRY_MODE=standard", "AWS_MAX_ATTEMPTS=3"});
  ASSERT_TRUE(r.ok()) << r.describe();
  const json::value answer = json::parse(r.out);
  EXPECT_EQ(answer.at("endpoint"), plane_.acsEndpoint().c_str());
  EXPECT_EQ(answer.at("telemetryEndpoint"), plane_.tcsEndpoint().c_str());
  std::vector<std::int64_t> statuses;
  for (const auto& call : plane_.calls("DiscoverPollEndpoint")) {
    statuses.push_back(call.at("status").as_int64());
  }
  EXPECT_EQ(statuses, (std::vector<std::int64_t>{500, 500, 200}));
}

TEST_F(FakeControlPlaneTest, AcsPushArrivesFramesAreWaitableAndDropCloses) {
  const std::string arn = registerInstance();
  ASSERT_FALSE(arn.empty());
  auto acs = client(acsUrl(arn), {"--send", R"({"type":"HeartbeatAckRequest","message":)"
                                            R"({"messageId":"hb-1"}})"});
  auto connection = plane_.waitForAcsConnection(20s);
  ASSERT_TRUE(connection) << acs->err() << plane_.log();
  EXPECT_EQ(connection->at("query").at("dockerVersion"), "DockerVersion: containerd");

  ASSERT_TRUE(plane_.waitForAcsFrame("HeartbeatAckRequest", 20s));
  auto ack = plane_.waitForAcsFrame("HeartbeatAckRequest", {{"messageId", "hb-1"}});
  ASSERT_TRUE(ack);
  EXPECT_TRUE(ack->at("problems").as_array().empty());

  const json::object sent =
      plane_.pushAcs({{"type", "PayloadMessage"}, {"message", {{"tasks", json::array()}}}});
  EXPECT_EQ(sent.at("containerInstanceArn"), arn.c_str());
  auto received = acs->waitForJson(
      [&](const json::object& line) {
        return isEvent(line, "frame") && line.at("data").at("type") == "PayloadMessage";
      },
      20s);
  ASSERT_TRUE(received) << acs->out() << acs->err();
  EXPECT_EQ(received->at("data").at("message").at("messageId"), sent.at("messageId"));

  EXPECT_EQ(plane_.dropAcs(1000, "ConnectionExpired"), 1);
  auto closed = clientEvent(*acs, "closed");
  ASSERT_TRUE(closed) << acs->out() << acs->err();
  EXPECT_EQ(closed->at("code"), 1000);
  EXPECT_EQ(acs->wait(20s), 0);
  auto gone = plane_.waitForEvent({{"kind", "disconnect"}, {"channel", "acs"}}, 10s);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->at("by"), "server");
  EXPECT_TRUE(plane_.signatureFailures().empty());
}

TEST_F(FakeControlPlaneTest, AcsRefusalAbortAndWrongSecret) {
  const std::string arn = registerInstance();
  ASSERT_FALSE(arn.empty());

  plane_.refuseAcs(1, 400, {{"InactiveInstanceException", "deregistered"}});
  auto refused = client(acsUrl(arn));
  auto failed = clientEvent(*refused, "handshake_failed");
  ASSERT_TRUE(failed) << refused->out() << refused->err();
  EXPECT_EQ(failed->at("status"), 400);
  EXPECT_EQ(refused->wait(20s), 1);

  const std::int64_t before = plane_.lastSeq();
  auto acs = client(acsUrl(arn));
  ASSERT_TRUE(plane_.waitForAcsConnection(20s, before)) << acs->err();
  EXPECT_EQ(plane_.abortAcs(), 1);
  auto closed = clientEvent(*acs, "closed");
  ASSERT_TRUE(closed) << acs->out() << acs->err();
  EXPECT_NE(closed->at("code"), 1000);  // no close frame came
  auto gone = plane_.waitForEvent({{"kind", "disconnect"}, {"channel", "acs"}}, 10s);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->at("by"), "abrupt");

  auto forged = client(acsUrl(arn), {}, "not-the-secret");
  failed = clientEvent(*forged, "handshake_failed");
  ASSERT_TRUE(failed) << forged->out() << forged->err();
  EXPECT_EQ(failed->at("status"), 403);
  auto failures = plane_.signatureFailures();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].at("where"), "acs-handshake");
}

TEST_F(FakeControlPlaneTest, TcsSignedFramesAreVerifiedAndAcked) {
  const std::string arn = registerInstance();
  ASSERT_FALSE(arn.empty());
  const json::object publish{{"type", "PublishMetricsRequest"},
                             {"message",
                              {{"metadata",
                                {{"cluster", kCluster},
                                 {"containerInstance", arn},
                                 {"messageId", "metrics-1"},
                                 {"idle", true},
                                 {"fin", true}}},
                               {"taskMetrics", json::array()},
                               {"timestamp", 1700000000.123}}}};
  auto tcs = client(tcsUrl(arn), {"--sign-frames", "--send", json::serialize(publish)});
  auto frame = plane_.waitForTcsFrame("PublishMetricsRequest", {{"metadata", {{"fin", true}}}});
  ASSERT_TRUE(frame) << tcs->err() << plane_.log();
  EXPECT_EQ(frame->at("signed"), true);
  EXPECT_EQ(frame->at("signature_ok"), true);
  EXPECT_TRUE(frame->at("problems").as_array().empty()) << json::serialize(*frame);
  auto ack = tcs->waitForJson(
      [](const json::object& line) {
        return isEvent(line, "frame") && line.at("data").at("type") == "AckPublishMetric";
      },
      20s);
  EXPECT_TRUE(ack) << tcs->out();
  EXPECT_EQ(plane_.dropTcs(), 1);
  EXPECT_EQ(tcs->wait(20s), 0);
  EXPECT_TRUE(plane_.signatureFailures().empty());
}

TEST_F(FakeControlPlaneTest, StopsCleanly) {
  EXPECT_EQ(plane_.stop(), 0) << plane_.log();
}

}  // namespace
}  // namespace ecs::testing
