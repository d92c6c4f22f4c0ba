// ImdsClient and the credential chain against a stand-in IMDS on 127.0.0.1
// (tests/support/fake_imds.py). Nothing here ever talks to 169.254.169.254: every client is given
// the stand-in's endpoint explicitly. Uses nothing of the harness but the path of its scripts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "agent/aws/credentials.h"
#include "agent/aws/http_client.h"
#include "agent/aws/imds_client.h"
#include "tests/support/harness_env.h"

namespace ecs::aws {
namespace {

using namespace std::chrono_literals;

// Next to the harness's scripts in the source tree (__FILE__ is relative under ccache's base_dir).
std::string fakeImdsScript() {
  const std::filesystem::path tests =
      std::filesystem::path(ecs::testing::harnessEnv().faultProxyScript())
          .parent_path()
          .parent_path();
  return (tests / "support" / "fake_imds.py").string();
}

// A plain HTTP exchange for steering the stand-in (and for checking what it does without us).
std::pair<long, std::string> http(const std::string& method, const std::string& url,
                                  const std::string& body = "") {
  HttpClient client(HttpClientOptions{.use_proxy = false});
  HttpRequest request;
  request.method = method;
  request.url = url;
  request.body = body;
  request.timeout = 10s;
  auto response = client.perform(request);
  if (!response) throw std::runtime_error(response.error().asError().message);
  return {response->status, response->body};
}

// The stand-in as a child process: started on port 0, killed and reaped at the end of the test.
class FakeImds {
 public:
  FakeImds() {
    const std::string script = fakeImdsScript();  // before fork: the child only execs
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      execl("/usr/bin/python3", "python3", script.c_str(), "0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    pollfd pfd{.fd = fds[0], .events = POLLIN};
    char c = 0;
    while (poll(&pfd, 1, 10000) == 1 && read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    if (line.empty()) {
      stop();
      throw std::runtime_error("fake_imds.py did not print its port: " + script);
    }
    endpoint_ = "http://127.0.0.1:" + line;
  }
  ~FakeImds() { stop(); }
  FakeImds(const FakeImds&) = delete;
  FakeImds& operator=(const FakeImds&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  void set(const std::string& json) {
    ASSERT_EQ(http("POST", endpoint_ + "/_control/settings", json).first, 200);
  }
  void revokeTokens() { ASSERT_EQ(http("POST", endpoint_ + "/_control/revoke-tokens").first, 200); }
  std::map<std::string, int64_t> stats() {
    auto [status, body] = http("GET", endpoint_ + "/_control/stats");
    std::map<std::string, int64_t> out;
    const boost::json::value document = boost::json::parse(body);
    for (const auto& [key, value] : document.as_object()) {
      out[std::string(key)] = value.as_int64();
    }
    return out;
  }

 private:
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  std::string endpoint_;
};

class ImdsTest : public ::testing::Test {
 protected:
  ImdsOptions options() const { return ImdsOptions{.endpoint = imds_.endpoint()}; }
  FakeImds imds_;
};

TEST_F(ImdsTest, StandInRequiresTheTokenHeader) {
  // What the client is up against: no token, or a made-up one, is 401.
  EXPECT_EQ(http("GET", imds_.endpoint() + "/latest/meta-data/instance-id").first, 401);
  auto [put_status, token] = http("PUT", imds_.endpoint() + "/latest/api/token");
  EXPECT_EQ(put_status, 400) << "a token PUT without the TTL header is refused";
  EXPECT_EQ(imds_.stats()["unauthorized"], 1);
}

TEST_F(ImdsTest, ReadsPlacementInstanceAndRoleCredentials) {
  ImdsClient client(options());
  EXPECT_EQ(client.region().value_or("error"), "eu-west-3");
  EXPECT_EQ(client.availabilityZone().value_or("error"), "eu-west-3b");
  EXPECT_EQ(client.instanceId().value_or("error"), "i-0123456789abcdef0");
  auto c = client.roleCredentials();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->access_key_id, "ASIAFAKEIMDSKEY");
  EXPECT_EQ(c->secret_access_key, "fake/imds+secret");
  EXPECT_EQ(c->session_token, "fake-imds-session-token");
  ASSERT_TRUE(c->expiration);
  EXPECT_EQ(formatExpiration(*c->expiration), "2099-01-01T00:00:00Z");
  EXPECT_EQ(c->source, "imds:test-role");
}

TEST_F(ImdsTest, ReusesOneTokenAcrossRequests) {
  ImdsClient client(options());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.instanceId());
  ASSERT_TRUE(client.roleCredentials());  // two more GETs
  auto stats = imds_.stats();
  EXPECT_EQ(stats["token_puts"], 1);
  EXPECT_EQ(stats["gets"], 7);
  EXPECT_EQ(stats["unauthorized"], 0);
}

TEST_F(ImdsTest, RenewsARevokedTokenOnce) {
  ImdsClient client(options());
  ASSERT_TRUE(client.instanceId());
  imds_.revokeTokens();
  auto id = client.instanceId();
  ASSERT_TRUE(id) << id.error().message;
  auto stats = imds_.stats();
  EXPECT_EQ(stats["token_puts"], 2);
  EXPECT_EQ(stats["unauthorized"], 1);
  EXPECT_EQ(stats["gets"], 2);
}

TEST_F(ImdsTest, MissingPathIsNotFound) {
  ImdsClient client(options());
  auto value = client.get("/latest/meta-data/no-such-thing");
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().code, ErrorCode::kNotFound);
  EXPECT_NE(value.error().message.find("GET /latest/meta-data/no-such-thing: not found"),
            std::string::npos)
      << value.error().message;
}

TEST_F(ImdsTest, NoRoleAttached) {
  imds_.set(R"({"role": null})");
  ImdsClient client(options());
  auto c = client.roleCredentials();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  EXPECT_NE(c.error().message.find("no IAM role is attached"), std::string::npos)
      << c.error().message;
}

TEST_F(ImdsTest, UnsuccessfulCredentialDocument) {
  imds_.set(R"({"credentials": {"Code": "AssumeRoleUnauthorizedAccess",
                                "Message": "EC2 cannot assume the role"}})");
  ImdsClient client(options());
  auto c = client.roleCredentials();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kDataLoss);
  EXPECT_NE(
      c.error().message.find("Code AssumeRoleUnauthorizedAccess (EC2 cannot assume the role)"),
      std::string::npos)
      << c.error().message;

  imds_.set(R"({"credentials": {"Code": "Success", "AccessKeyId": "AKID"}})");
  auto partial = client.roleCredentials();
  ASSERT_FALSE(partial);
  EXPECT_NE(partial.error().message.find("missing AccessKeyId, SecretAccessKey"), std::string::npos)
      << partial.error().message;
}

TEST_F(ImdsTest, FailingImdsIsRetriedOnceThenReported) {
  imds_.set(R"({"status": 500})");
  ImdsClient client(options());
  const auto start = std::chrono::steady_clock::now();
  auto id = client.instanceId();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(id.error().message, "IMDS " + imds_.endpoint() +
                                    ": PUT /latest/api/token: HTTP 500 (2 attempts, 2000 ms "
                                    "timeout each)");
  EXPECT_LT(elapsed, 1s);
  EXPECT_EQ(imds_.stats()["requests"], 2);
}

TEST_F(ImdsTest, SlowImdsTimesOutPromptly) {
  imds_.set(R"({"delay": 10})");
  ImdsClient client(options());  // the defaults: 2 s per request, one retry
  const auto start = std::chrono::steady_clock::now();
  auto id = client.instanceId();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(id.error().message.find("PUT /latest/api/token: Operation timed out"),
            std::string::npos)
      << id.error().message;
  EXPECT_NE(id.error().message.find("(2 attempts, 2000 ms timeout each)"), std::string::npos)
      << id.error().message;
  EXPECT_GE(elapsed, 3900ms);
  EXPECT_LT(elapsed, 5s);
}

TEST_F(ImdsTest, ShortTimeoutOption) {
  imds_.set(R"({"delay": 10})");
  ImdsClient client(ImdsOptions{.endpoint = imds_.endpoint(), .timeout = 200ms});
  const auto start = std::chrono::steady_clock::now();
  ASSERT_FALSE(client.region());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

// A $HOME with no AWS files, removed at the end.
class EmptyHome {
 public:
  EmptyHome() {
    std::string pattern = (std::filesystem::temp_directory_path() / "aws-imds-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = pattern;
  }
  ~EmptyHome() { std::filesystem::remove_all(path_); }
  EmptyHome(const EmptyHome&) = delete;
  EmptyHome& operator=(const EmptyHome&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST_F(ImdsTest, ChainFallsThroughToImdsAndCaches) {
  EmptyHome home;
  std::map<std::string, std::string> env{{"AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_.endpoint()}};
  CredentialChainOptions options;
  options.getenv = [&env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    return it == env.end() ? std::nullopt : std::optional(it->second);
  };
  options.home = home.path();
  auto chain = makeDefaultCredentialChain(options);
  auto c = chain->credentials();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->source, "imds:test-role");
  EXPECT_EQ(c->access_key_id, "ASIAFAKEIMDSKEY");
  const auto before = imds_.stats();
  ASSERT_TRUE(chain->credentials());  // expires in 2099: served from the cache
  EXPECT_EQ(imds_.stats(), before);

  // Credentials expiring within five minutes are fetched again on every call; the token is not.
  imds_.set(fmt::format(R"({{"credentials": {{"Code": "Success", "AccessKeyId": "SOON",
      "SecretAccessKey": "s", "Token": "t", "Expiration": "{}"}}}})",
                        formatExpiration(std::chrono::system_clock::now() + 2min)));
  auto fresh_chain = makeDefaultCredentialChain(options);
  ASSERT_EQ(fresh_chain->credentials().value_or(Credentials{}).access_key_id, "SOON");
  ASSERT_EQ(fresh_chain->credentials().value_or(Credentials{}).access_key_id, "SOON");
  const auto after = imds_.stats();
  EXPECT_EQ(after.at("gets") - before.at("gets"), 4);
  EXPECT_EQ(after.at("token_puts") - before.at("token_puts"), 1);
}

TEST_F(ImdsTest, ChainErrorNamesASlowImds) {
  imds_.set(R"({"delay": 10})");
  EmptyHome home;
  CredentialChainOptions options;
  const std::string endpoint = imds_.endpoint();
  options.getenv = [&endpoint](const std::string& name) -> std::optional<std::string> {
    if (name == "AWS_EC2_METADATA_SERVICE_ENDPOINT") return endpoint;
    return std::nullopt;
  };
  options.home = home.path();
  const auto start = std::chrono::steady_clock::now();
  auto c = makeDefaultCredentialChain(options)->credentials();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("no AWS credentials found (tried environment: AWS_ACCESS_KEY_ID is not set; "
                   "shared files: "),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("imds: IMDS " + endpoint + ": PUT /latest/api/token: Operation timed out"),
            std::string::npos)
      << m;
}

// Runs a shell command, returning its stdout.
std::string capture(const std::string& command) {
  std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("popen " + command);
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe.get())) out.append(buffer, n);
  return out;
}

// Debian's botocore, pointed at the same stand-in with no other source available, must resolve
// the same credentials our chain does.
TEST_F(ImdsTest, BotocoreResolvesTheSameCredentials) {
  if (capture("/usr/bin/python3 -c 'import botocore' 2>/dev/null && echo yes") != "yes\n") {
    GTEST_SKIP() << "python3-botocore is not installed";
  }
  EmptyHome home;
  const std::string botocore =
      capture("env -i PATH=/usr/bin:/bin HOME=" + home.path() +
              " AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent"
              " AWS_EC2_METADATA_SERVICE_ENDPOINT=" +
              imds_.endpoint() +
              " /usr/bin/python3 -c 'import botocore.session\n"
              "c = botocore.session.get_session().get_credentials()\n"
              "f = c.get_frozen_credentials()\n"
              "print(c.method, f.access_key, f.secret_key, f.token)'");

  CredentialChainOptions options;
  const std::string endpoint = imds_.endpoint();
  options.getenv = [&endpoint](const std::string& name) -> std::optional<std::string> {
    if (name == "AWS_EC2_METADATA_SERVICE_ENDPOINT") return endpoint;
    return std::nullopt;
  };
  options.home = home.path();
  auto ours = makeDefaultCredentialChain(options)->credentials();
  ASSERT_TRUE(ours) << ours.error().message;
  EXPECT_EQ(botocore, fmt::format("iam-role {} {} {}\n", ours->access_key_id,
                                  ours->secret_access_key, ours->session_token));
}

}  // namespace
}  // namespace ecs::aws
