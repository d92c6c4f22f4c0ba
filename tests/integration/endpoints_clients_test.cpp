// The task endpoint server on a real socket (127.0.0.1, port 0) read by real clients: Debian's
// boto3/botocore container credential provider, `aws configure export-credentials`, and raw HTTP
// for the status-code cases (unknown and revoked credentials ids, malformed paths, oversized
// requests, keep-alive) and throttling. No containerd needed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <filesystem>

#include "agent/endpoints/agent_endpoints.h"
#include "agent/endpoints/endpoints_resource.h"
#include "tests/support/harness_env.h"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using ecs::testing::runCommand;

// Sends `request` as is and reads until the server closes the connection.
std::string rawExchange(uint16_t port, const std::string& request) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  boost::system::error_code ec;
  // The server may answer (431, 413) and stop reading before the request is all sent.
  asio::write(socket, asio::buffer(request), ec);
  std::string out;
  char buf[4096];
  for (;;) {
    size_t n = socket.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

int statusOf(const std::string& response) {
  if (response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

class EndpointsClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.task_server_port = 0;
    options_.introspection_port = 0;
    options_.metrics_port = 0;
    options_.prometheus_metrics = true;
    options_.rate_limit = std::nullopt;
    options_.context.cluster = "default";
    options_.context.region = "us-west-2";
    home_ = fs::temp_directory_path() / ("endpoints-home-" + ecs::endpoints::newUuid());
    fs::create_directories(home_);
  }
  void TearDown() override {
    if (endpoints_) endpoints_->stop();
    fs::remove_all(home_);
  }

  void start() {
    endpoints_ = std::make_unique<ecs::endpoints::AgentEndpoints>(options_, store_, nullptr);
    auto started = endpoints_->start();
    ASSERT_TRUE(started) << started.error().message;
    port_ = endpoints_->taskServerPort();
    ASSERT_NE(port_, 0);
  }

  // A running task with one container whose endpoint id is `endpoint_id_`, and task-role
  // credentials under `credentials_id_`.
  void addTask() {
    auto task = std::make_shared<ecs::engine::TaskSnapshot>();
    task->id = "5d2f2a1c9e0b4c7d8e6f1a2b3c4d5e6f";
    task->arn = "arn:aws:ecs:us-west-2:000000000000:task/default/" + task->id;
    task->cluster = "default";
    task->family = "clients";
    task->revision = 1;
    task->known = ecs::engine::ContainerStatus::kRunning;
    ecs::engine::ContainerSnapshot c;
    c.name = "app";
    c.runtime_id = task->id + "-app";
    c.image = "busybox";
    c.known = ecs::engine::ContainerStatus::kRunning;
    task->containers.push_back(c);
    task_ = task;
    endpoint_id_ = ecs::endpoints::newUuid();
    endpoints_->directory().registerEndpoint(endpoint_id_, task->arn, "app");
    endpoints_->update(task);
    endpoints_->setStateLoaded();
    ecs::aws::Credentials creds{"AKIAENDPOINTSTEST000", "endpoints/test/secret+key",
                                "session-token",
                                std::chrono::system_clock::now() + std::chrono::hours(2), "test"};
    credentials_id_ = store_.add(task->arn, "arn:aws:iam::000000000000:role/app",
                                 ecs::credentials::RoleType::kTask, creds);
  }

  // A clean environment: nothing but the endpoint, so no other credential source can answer.
  std::vector<std::string> cleanEnv(const std::string& full_uri) const {
    return {"env",
            "-i",
            "PATH=/usr/bin:/bin",
            "HOME=" + home_.string(),
            "AWS_EC2_METADATA_DISABLED=true",
            "AWS_CONFIG_FILE=" + (home_ / "config").string(),
            "AWS_SHARED_CREDENTIALS_FILE=" + (home_ / "credentials").string(),
            "AWS_DEFAULT_REGION=us-west-2",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=" + full_uri};
  }
  std::string credentialsUri() const {
    return fmt::format("http://127.0.0.1:{}/v2/credentials/{}", port_, credentials_id_);
  }

  ecs::endpoints::EndpointsOptions options_;
  ecs::credentials::CredentialsStore store_;
  std::unique_ptr<ecs::endpoints::AgentEndpoints> endpoints_;
  uint16_t port_ = 0;
  ecs::engine::TaskSnapshotPtr task_;
  std::string endpoint_id_, credentials_id_;
  fs::path home_;
};

TEST_F(EndpointsClientsTest, Boto3ContainerProviderResolvesTheTaskCredentials) {
  start();
  addTask();
  auto argv = cleanEnv(credentialsUri());
  argv.insert(argv.end(), {"/usr/bin/python3", "-c",
                           "import boto3\n"
                           "s = boto3.session.Session()\n"
                           "c = s.get_credentials()\n"
                           "f = c.get_frozen_credentials()\n"
                           "print(c.method, f.access_key, f.secret_key, f.token)\n"});
  auto r = runCommand(argv);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out, "container-role AKIAENDPOINTSTEST000 endpoints/test/secret+key session-token\n");
}

TEST_F(EndpointsClientsTest, AwsCliExportsTheTaskCredentials) {
  start();
  addTask();
  auto argv = cleanEnv(credentialsUri());
  argv.insert(argv.end(),
              {"/usr/bin/aws", "configure", "export-credentials", "--format", "process"});
  auto r = runCommand(argv);
  ASSERT_TRUE(r.ok()) << r.describe();
  auto body = json::parse(r.out).as_object();
  EXPECT_EQ(body.at("AccessKeyId").as_string(), "AKIAENDPOINTSTEST000");
  EXPECT_EQ(body.at("SecretAccessKey").as_string(), "endpoints/test/secret+key");
  EXPECT_EQ(body.at("SessionToken").as_string(), "session-token");
  EXPECT_TRUE(body.contains("Expiration"));
}

TEST_F(EndpointsClientsTest, RevokedAndUnknownIdsAreRefusedToClients) {
  start();
  addTask();
  auto uri = credentialsUri();
  store_.revokeTask(task_->arn);  // the task stopped
  auto argv = cleanEnv(uri);
  argv.insert(argv.end(), {"/usr/bin/python3", "-c",
                           "import boto3\nprint(boto3.session.Session().get_credentials())\n"});
  auto r = runCommand(argv);
  // botocore reports the endpoint's refusal (400 InvalidIdInRequest) instead of credentials.
  EXPECT_FALSE(r.ok()) << r.describe();
  EXPECT_NE(r.err.find("CredentialRetrievalError"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find("Credentials not found"), std::string::npos) << r.describe();

  auto unknown = rawExchange(
      port_, "GET /v2/credentials/unknown HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(statusOf(unknown), 400) << unknown;
  EXPECT_NE(unknown.find(R"({"code":"InvalidIdInRequest","message":"CredentialsV2Request: )"
                         R"(Credentials not found","HTTPErrorCode":400})"),
            std::string::npos)
      << unknown;
  auto revoked = rawExchange(port_, fmt::format("GET /v2/credentials/{} HTTP/1.1\r\nHost: "
                                                "x\r\nConnection: close\r\n\r\n",
                                                credentials_id_));
  EXPECT_EQ(statusOf(revoked), 400) << revoked;
}

TEST_F(EndpointsClientsTest, StatusCodesOnTheWire) {
  start();
  addTask();
  auto get = [&](const std::string& path) {
    return rawExchange(port_, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  };
  auto task = get(fmt::format("/v4/{}/task", endpoint_id_));
  ASSERT_EQ(statusOf(task), 200) << task;
  EXPECT_NE(task.find("Content-Type: application/json"), std::string::npos);
  EXPECT_NE(task.find(task_->arn), std::string::npos);
  EXPECT_EQ(statusOf(get("/v4/not-an-endpoint/task")), 404);
  EXPECT_EQ(statusOf(get("/v3/not-an-endpoint")), 500);
  auto malformed = get("/no/such/route");
  EXPECT_EQ(statusOf(malformed), 404);
  EXPECT_NE(malformed.find("404 page not found"), std::string::npos);
  auto redirect = get(fmt::format("/v4//{}/task", endpoint_id_));
  EXPECT_EQ(statusOf(redirect), 301);
  EXPECT_NE(redirect.find(fmt::format("Location: /v4/{}/task", endpoint_id_)), std::string::npos);

  // Oversized header block: 431 and the connection closes.
  auto big = rawExchange(port_, "GET /v4/x/task HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                    std::string(64 * 1024, 'a') + "\r\n\r\n");
  EXPECT_EQ(statusOf(big), 431) << big.substr(0, 200);
  // Oversized body: 413.
  auto body = rawExchange(port_, "PUT /v4/x/task HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                     std::to_string(1024 * 1024) + "\r\n\r\n" +
                                     std::string(1024 * 1024, 'b'));
  EXPECT_EQ(statusOf(body), 413) << body.substr(0, 200);
  // Not HTTP: 400.
  EXPECT_EQ(statusOf(rawExchange(port_, "HELLO\r\n\r\n")), 400);

  // Keep-alive: two requests on one connection, both answered.
  auto two = rawExchange(port_, fmt::format("GET /v4/{0}/task HTTP/1.1\r\nHost: x\r\n\r\n"
                                            "GET /v4/{0} HTTP/1.1\r\nHost: x\r\nConnection: "
                                            "close\r\n\r\n",
                                            endpoint_id_));
  size_t first = two.find("HTTP/1.1 200 OK");
  ASSERT_NE(first, std::string::npos) << two;
  EXPECT_NE(two.find("HTTP/1.1 200 OK", first + 1), std::string::npos) << two;

  // Introspection and metrics on their own ports.
  auto intro = runCommand({"curl", "-sS",
                           fmt::format("http://127.0.0.1:{}/v1/tasks?taskarn={}",
                                       endpoints_->introspectionPort(), task_->arn)});
  ASSERT_TRUE(intro.ok()) << intro.describe();
  EXPECT_EQ(json::parse(intro.out).at("Arn").as_string(), task_->arn);
  auto metrics = runCommand(
      {"curl", "-sS", fmt::format("http://127.0.0.1:{}/metrics", endpoints_->metricsPort())});
  ASSERT_TRUE(metrics.ok()) << metrics.describe();
  EXPECT_NE(metrics.out.find(R"(ecs_endpoint_requests_total{server="task",path="/v4/<id>/task",)"
                             R"(status="200"} )"),
            std::string::npos)
      << metrics.out;
  EXPECT_NE(metrics.out.find("ecs_agent_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(metrics.out.find(R"(ecs_tasks{status="RUNNING"} 1)"), std::string::npos);
}

TEST_F(EndpointsClientsTest, StartupBeforeStateLoadedIs503) {
  start();
  auto r = rawExchange(
      port_, "GET /v2/credentials/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(statusOf(r), 503) << r;
}

TEST_F(EndpointsClientsTest, ThrottlingAnswers429) {
  options_.rate_limit = ecs::endpoints::RateLimit{40, 60};
  start();
  addTask();
  std::string requests;
  for (int i = 0; i < 100; ++i) {
    requests += fmt::format("GET /v4/{}/task HTTP/1.1\r\nHost: x\r\n{}\r\n", endpoint_id_,
                            i == 99 ? "Connection: close\r\n" : "");
  }
  auto out = rawExchange(port_, requests);
  size_t ok = 0, throttled = 0;
  for (size_t pos = 0; (pos = out.find("HTTP/1.1 ", pos)) != std::string::npos; pos += 9) {
    auto status = out.substr(pos + 9, 3);
    if (status == "200") ++ok;
    if (status == "429") ++throttled;
  }
  // A burst of 60, then a few more refilled at 40/s while the requests are served.
  EXPECT_GE(ok, 60u);
  EXPECT_LT(ok, 80u);
  EXPECT_EQ(ok + throttled, 100u);
  EXPECT_NE(out.find("Retry-After: 1"), std::string::npos);
  EXPECT_NE(out.find("You have reached maximum request limit."), std::string::npos);
}

}  // namespace
