// AwsJsonClient against a loopback server that checks every signature with botocore: the JSON
// 1.1 request it sends, how AWS errors are decoded and classified, retries of what is transient
// (5xx, throttling, a dropped connection, unavailable credentials) and of nothing else, giving up
// after the policy's attempts, and a stop token or deadline ending a backoff wait. Also the
// backoff arithmetic and the endpoint rule.
#include "agent/aws/aws_json_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/botocore_reference.h"
#include "tests/support/loopback_http_server.h"

namespace ecs::aws {
namespace {

using namespace std::chrono_literals;
using ecs::testing::BotocoreReference;
using ecs::testing::httpResponse;
using ecs::testing::LoopbackConnection;
using ecs::testing::LoopbackHttpServer;
using ecs::testing::LoopbackRequest;

const std::string kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// Fast retries, so the tests take milliseconds.
RetryPolicy quickRetries(int attempts) {
  return RetryPolicy{.max_attempts = attempts,
                     .base = 1ms,
                     .multiplier = 2.0,
                     .cap = 4ms,
                     .jitter_low = 0.0,
                     .jitter_high = 1.0};
}

AwsJsonClientOptions clientOptions(const LoopbackHttpServer& server, RetryPolicy retry) {
  return AwsJsonClientOptions{
      .endpoint = server.url(""),
      .target_prefix = "AmazonEC2ContainerServiceV20141113",
      .scope = SigV4Scope{.service = "ecs", .region = "us-west-2"},
      .credentials =
          [] {
            return Result<Credentials>(Credentials{.access_key_id = "AKIDEXAMPLE",
                                                   .secret_access_key = kSecret,
                                                   .session_token = "session-token"});
          },
      .user_agent = "ecs-node-agent/test",
      .retry = retry,
  };
}

// The verdict of botocore on a request the server received ("" when the signature holds).
std::string verify(BotocoreReference& botocore, const LoopbackRequest& request) {
  return botocore.verify(request.method, "http://" + request.header("Host") + request.target,
                         BotocoreReference::headerLines(request.head), request.body, kSecret);
}

std::string jsonError(std::string_view type, std::string_view message) {
  return boost::json::serialize(boost::json::object{{"__type", type}, {"message", message}});
}

// Answers the n-th request (0-based) with responses[n], the last one after that.
LoopbackHttpServer::Handler sequence(std::vector<std::string> responses) {
  auto next = std::make_shared<std::atomic<size_t>>(0);
  return [responses = std::move(responses), next](const LoopbackRequest&,
                                                  LoopbackConnection& connection) {
    size_t n = std::min(next->fetch_add(1), responses.size() - 1);
    if (!responses[n].empty()) connection.write(responses[n]);  // empty: hang up, say nothing
  };
}

const std::string kOk = httpResponse("200 OK", "Content-Type: application/x-amz-json-1.1\r\n",
                                     R"({"acknowledgment":"ACK"})");

TEST(RetryPolicyTest, DelaysGrowByTheMultiplierUpToTheCapWithJitter) {
  RetryPolicy policy{
      .base = 100ms, .multiplier = 2.0, .cap = 1000ms, .jitter_low = 1.0, .jitter_high = 1.0};
  EXPECT_EQ(policy.delay(0, 0.5), 100ms);
  EXPECT_EQ(policy.delay(1, 0.5), 200ms);
  EXPECT_EQ(policy.delay(3, 0.5), 800ms);
  EXPECT_EQ(policy.delay(4, 0.5), 1000ms);
  EXPECT_EQ(policy.delay(40, 0.5), 1000ms);

  policy.jitter_low = 1.0;
  policy.jitter_high = 1.2;
  EXPECT_EQ(policy.delay(1, 0.0), 200ms);
  EXPECT_EQ(policy.delay(1, 1.0), 240ms);
  EXPECT_EQ(policy.delay(1, 0.5), 220ms);

  policy.exponential_retries = 3;
  policy.flat_delay = 5000ms;
  EXPECT_EQ(policy.delay(2, 0.0), 400ms);
  EXPECT_EQ(policy.delay(3, 0.0), 5000ms);
  EXPECT_EQ(policy.delay(3, 1.0), 5000ms);  // flat: no jitter

  RetryPolicy standard = standardRetryPolicy();
  EXPECT_EQ(standard.max_attempts, 3);
  EXPECT_EQ(standard.delay(0, 0.0), 0ms);  // full jitter
  EXPECT_EQ(standard.delay(0, 0.5), 1000ms);
  EXPECT_EQ(standard.delay(10, 1.0), 20'000ms);
}

TEST(AwsErrorTest, RetryableTypesAndStatuses) {
  for (const char* type : {"ThrottlingException", "ServerException", "LimitExceededException",
                           "RequestLimitExceeded", "TooManyRequestsException"}) {
    EXPECT_TRUE(isRetryableAwsError(type, 400)) << type;
  }
  for (const char* type : {"ClientException", "InvalidParameterException", "AccessDeniedException",
                           "ClusterNotFoundException", ""}) {
    EXPECT_FALSE(isRetryableAwsError(type, 400)) << type;
  }
  EXPECT_TRUE(isRetryableAwsError("", 500));
  EXPECT_TRUE(isRetryableAwsError("", 502));
  EXPECT_TRUE(isRetryableAwsError("", 503));
  EXPECT_TRUE(isRetryableAwsError("", 429));
  EXPECT_FALSE(isRetryableAwsError("", 404));
}

TEST(AwsErrorTest, EndpointUrlAddsHttpsWhenNoSchemeIsGiven) {
  EXPECT_EQ(endpointUrl("ecs.us-west-2.amazonaws.com"), "https://ecs.us-west-2.amazonaws.com");
  EXPECT_EQ(endpointUrl("127.0.0.1:8080"), "https://127.0.0.1:8080");
  EXPECT_EQ(endpointUrl("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
}

TEST(AwsJsonClientTest, SendsASignedJson11PostAndReturnsTheResponse) {
  BotocoreReference botocore;
  LoopbackHttpServer server(sequence({httpResponse(
      "200 OK", "Content-Type: application/x-amz-json-1.1\r\n", R"({"endpoint":"wss://x"})")}));
  AwsJsonClient client(clientOptions(server, quickRetries(1)));

  auto response =
      client.call("DiscoverPollEndpoint", json::Object{{"cluster", "default"}, {"zoneId", ""}});
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(*response, (json::Value(json::Object{{"endpoint", "wss://x"}})));

  ASSERT_EQ(server.requests().size(), 1u);
  const LoopbackRequest request = server.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/");
  EXPECT_EQ(request.header("Content-Type"), "application/x-amz-json-1.1");
  EXPECT_EQ(request.header("X-Amz-Target"),
            "AmazonEC2ContainerServiceV20141113.DiscoverPollEndpoint");
  EXPECT_EQ(request.header("User-Agent"), "ecs-node-agent/test");
  EXPECT_EQ(request.header("X-Amz-Security-Token"), "session-token");
  EXPECT_EQ(request.body, R"({"cluster":"default","zoneId":""})");
  // What the real agent signs (observed against a stand-in control plane).
  EXPECT_NE(request.header("Authorization")
                .find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
                      "x-amz-target, "),
            std::string::npos)
      << request.header("Authorization");
  EXPECT_EQ(verify(botocore, request), "");
}

TEST(AwsJsonClientTest, EmptySuccessBodyIsAnEmptyObjectAndNonJsonIsDataLoss) {
  LoopbackHttpServer server(
      sequence({httpResponse("200 OK", "", ""), httpResponse("200 OK", "", "<html>")}));
  AwsJsonClient client(clientOptions(server, quickRetries(3)));
  auto empty = client.call("SubmitTaskStateChange", json::Object{});
  ASSERT_TRUE(empty) << empty.error().asError().message;
  EXPECT_EQ(*empty, json::Value(json::Object{}));

  auto garbage = client.call("SubmitTaskStateChange", json::Object{});
  ASSERT_FALSE(garbage);
  EXPECT_FALSE(garbage.error().retryable);
  EXPECT_EQ(garbage.error().asError().code, ErrorCode::kDataLoss);
  EXPECT_EQ(server.requests().size(), 2u);  // not retried
}

struct ErrorCase {
  const char* name;
  std::string response;
  std::string type;
  std::string message;
  long status;
  bool retryable;
  ErrorCode code;
};

TEST(AwsJsonClientTest, DecodesAndClassifiesAwsErrors) {
  const ErrorCase cases[] = {
      {"client exception with namespace",
       httpResponse("400 Bad Request", "",
                    jsonError("com.amazonaws.ecs#ClientException", "Cluster not found.")),
       "ClientException", "Cluster not found.", 400, false, ErrorCode::kInvalidArgument},
      {"invalid parameter",
       httpResponse("400 Bad Request", "", jsonError("InvalidParameterException", "bad task")),
       "InvalidParameterException", "bad task", 400, false, ErrorCode::kInvalidArgument},
      {"throttling",
       httpResponse("400 Bad Request", "", jsonError("ThrottlingException", "Rate exceeded")),
       "ThrottlingException", "Rate exceeded", 400, true, ErrorCode::kUnavailable},
      {"limit exceeded",
       httpResponse("400 Bad Request", "", jsonError("LimitExceededException", "")),
       "LimitExceededException", "", 400, true, ErrorCode::kUnavailable},
      {"server exception",
       httpResponse("500 Internal Server Error", "", jsonError("ServerException", "oops")),
       "ServerException", "oops", 500, true, ErrorCode::kUnavailable},
      {"html from a proxy", httpResponse("503 Service Unavailable", "", "<html>busy</html>"), "",
       "<html>busy</html>", 503, true, ErrorCode::kUnavailable},
      {"error type header wins, capitalised Message",
       httpResponse("403 Forbidden",
                    "X-Amzn-ErrorType: AccessDeniedException:http://internal.amazon.com/\r\n",
                    R"({"__type":"Other","Message":"not allowed"})"),
       "AccessDeniedException", "not allowed", 403, false, ErrorCode::kUnauthorized},
      {"not found", httpResponse("400 Bad Request", "", jsonError("ClusterNotFoundException", "")),
       "ClusterNotFoundException", "", 400, false, ErrorCode::kNotFound},
  };
  for (const ErrorCase& test : cases) {
    SCOPED_TRACE(test.name);
    LoopbackHttpServer server(sequence({test.response}));
    AwsJsonClient client(clientOptions(server, quickRetries(1)));
    auto result = client.call("RegisterContainerInstance", json::Object{});
    ASSERT_FALSE(result);
    const AwsError& error = result.error();
    EXPECT_EQ(error.operation, "RegisterContainerInstance");
    EXPECT_EQ(error.type, test.type);
    EXPECT_EQ(error.message, test.message);
    EXPECT_EQ(error.http_status, test.status);
    EXPECT_EQ(error.retryable, test.retryable);
    EXPECT_FALSE(error.cancelled);
    EXPECT_EQ(error.attempts, 1);
    EXPECT_EQ(error.asError().code, test.code);
    EXPECT_TRUE(error.asError().message.starts_with("RegisterContainerInstance: "))
        << error.asError().message;
  }
}

TEST(AwsJsonClientTest, RetriesTransientFailuresSigningEachAttemptAnew) {
  BotocoreReference botocore;
  LoopbackHttpServer server(sequence({
      httpResponse("500 Internal Server Error", "", jsonError("ServerException", "try again")),
      httpResponse("400 Bad Request", "", jsonError("ThrottlingException", "Rate exceeded")),
      "",  // the connection drops without an answer
      kOk,
  }));
  AwsJsonClientOptions options = clientOptions(server, quickRetries(4));
  std::atomic<int> fetches{0};
  options.credentials = [&] {
    int n = ++fetches;
    return Result<Credentials>(Credentials{.access_key_id = "AKIDEXAMPLE",
                                           .secret_access_key = kSecret,
                                           .session_token = "token-" + std::to_string(n)});
  };
  AwsJsonClient client(options);

  auto response = client.call("SubmitTaskStateChange", json::Object{{"task", "arn"}});
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(fetches.load(), 4);
  std::vector<LoopbackRequest> requests = server.requests();
  ASSERT_EQ(requests.size(), 4u);
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(requests[i].body, R"({"task":"arn"})");
    EXPECT_EQ(requests[i].header("X-Amz-Security-Token"), "token-" + std::to_string(i + 1));
    EXPECT_EQ(verify(botocore, requests[i]), "");
  }
}

TEST(AwsJsonClientTest, GivesUpAfterTheLastAttempt) {
  LoopbackHttpServer server(sequence({httpResponse("503 Service Unavailable", "", "")}));
  AwsJsonClient client(clientOptions(server, quickRetries(3)));
  auto result = client.call("RegisterContainerInstance", json::Object{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().attempts, 3);
  EXPECT_TRUE(result.error().retryable);
  EXPECT_EQ(server.requests().size(), 3u);
  EXPECT_NE(result.error().asError().message.find("after 3 attempts"), std::string::npos);
}

TEST(AwsJsonClientTest, DoesNotRetryClientErrors) {
  LoopbackHttpServer server(sequence(
      {httpResponse("400 Bad Request", "", jsonError("InvalidParameterException", "no")), kOk}));
  AwsJsonClient client(clientOptions(server, quickRetries(5)));
  auto result = client.call("SubmitTaskStateChange", json::Object{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().type, "InvalidParameterException");
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(AwsJsonClientTest, UnavailableCredentialsAreRetriedThenReported) {
  LoopbackHttpServer server(sequence({kOk}));
  AwsJsonClientOptions options = clientOptions(server, quickRetries(3));
  std::atomic<int> fetches{0};
  options.credentials = [&] {
    ++fetches;
    return Result<Credentials>(fail(ErrorCode::kUnavailable, "IMDS did not answer"));
  };
  AwsJsonClient client(options);
  auto result = client.call("RegisterContainerInstance", json::Object{});
  ASSERT_FALSE(result);
  EXPECT_EQ(fetches.load(), 3);
  EXPECT_EQ(result.error().http_status, 0);
  EXPECT_NE(result.error().message.find("credentials: IMDS did not answer"), std::string::npos);
  EXPECT_TRUE(server.requests().empty());
}

TEST(AwsJsonClientTest, StopTokenEndsABackoffWaitAtOnce) {
  std::promise<void> first_request;
  std::atomic<bool> signalled{false};
  LoopbackHttpServer server([&](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write(httpResponse("500 Internal Server Error", "", ""));
    if (!signalled.exchange(true)) first_request.set_value();
  });
  RetryPolicy hour{.max_attempts = 5, .base = 1h, .cap = 1h, .jitter_low = 1.0};
  AwsJsonClient client(clientOptions(server, hour));

  std::stop_source stop;
  auto call = std::async(std::launch::async, [&] {
    return client.call("SubmitTaskStateChange", json::Object{},
                       CallOptions{.stop = stop.get_token()});
  });
  first_request.get_future().wait();
  const auto stopped_at = std::chrono::steady_clock::now();
  stop.request_stop();
  AwsResult<json::Value> result = call.get();
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, 10s);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().cancelled);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(AwsJsonClientTest, NoRetryWaitRunsPastTheDeadline) {
  LoopbackHttpServer server(sequence({httpResponse("500 Internal Server Error", "", "")}));
  RetryPolicy hour{.max_attempts = 5, .base = 1h, .cap = 1h, .jitter_low = 1.0};
  AwsJsonClient client(clientOptions(server, hour));
  auto result = client.call("DiscoverPollEndpoint", json::Object{},
                            CallOptions{.deadline = std::chrono::steady_clock::now() + 60s});
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().cancelled);
  EXPECT_EQ(result.error().attempts, 1);
  EXPECT_NE(result.error().message.find("deadline"), std::string::npos);
}

}  // namespace
}  // namespace ecs::aws
