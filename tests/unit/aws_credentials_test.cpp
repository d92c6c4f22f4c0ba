#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "agent/aws/credentials.h"
#include "agent/aws/imds_client.h"

namespace ecs::aws {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

// A private directory standing in for $HOME, removed at the end of the test.
class TempHome {
 public:
  TempHome() {
    std::string pattern = (std::filesystem::temp_directory_path() / "aws-creds-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    std::filesystem::create_directory(path_ / ".aws");
  }
  ~TempHome() { std::filesystem::remove_all(path_); }
  TempHome(const TempHome&) = delete;
  TempHome& operator=(const TempHome&) = delete;

  std::string path() const { return path_.string(); }
  std::string write(const std::string& relative, const std::string& text) const {
    const auto file = path_ / relative;
    std::ofstream(file) << text;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

// The environment a chain sees. IMDS is disabled unless a test points it at loopback, so no unit
// test can ever send a request to 169.254.169.254.
struct FakeEnv {
  std::map<std::string, std::string> values{{"AWS_EC2_METADATA_DISABLED", "true"}};

  CredentialChainOptions options(const TempHome& home) {
    CredentialChainOptions options;
    options.getenv = [this](const std::string& name) -> std::optional<std::string> {
      auto it = values.find(name);
      if (it == values.end()) return std::nullopt;
      return it->second;
    };
    options.home = home.path();
    return options;
  }
};

Result<Credentials> resolve(FakeEnv& env, const TempHome& home) {
  return makeDefaultCredentialChain(env.options(home))->credentials();
}

TEST(AwsExpirationTest, FormatsRfc3339Utc) {
  const auto t = std::chrono::sys_days(2026y / 11 / 27) + 10h + 0min + 5s + 700ms;
  EXPECT_EQ(formatExpiration(t), "2026-11-27T10:00:05Z");
  EXPECT_EQ(formatExpiration(Clock::time_point{}), "1970-01-01T00:00:00Z");
}

TEST(AwsExpirationTest, ParsesTheFormsImdsAndFilesUse) {
  const auto want = std::chrono::sys_days(2026y / 11 / 27) + 10h;
  EXPECT_EQ(parseExpiration("2026-11-27T10:00:00Z"), want);
  EXPECT_EQ(parseExpiration("2026-11-27T10:00:00.123Z"), want);
  EXPECT_EQ(parseExpiration("2026-11-27T12:30:00+02:30"), want);
  EXPECT_EQ(parseExpiration("2026-11-27T05:00:00-05:00"), want);
  // ACS writes the offset without a colon.
  EXPECT_EQ(parseExpiration("2026-11-27T10:00:00.318+0000"), want);
  EXPECT_EQ(parseExpiration("2026-11-27T12:30:00+0230"), want);
  EXPECT_EQ(formatExpiration(*parseExpiration(formatExpiration(want))), "2026-11-27T10:00:00Z");
  for (const char* bad : {"", "2026-11-27", "2026-11-27T10:00:00", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-11-27T10:00:00Zjunk", "tomorrow"}) {
    auto parsed = parseExpiration(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(AwsCredentialChainTest, EnvironmentComesFirst) {
  TempHome home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id = FILEKEY\n"
             "aws_secret_access_key = FILESECRET\n");
  FakeEnv env;
  env.values["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env.values["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  env.values["AWS_SESSION_TOKEN"] = "envtoken";
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->access_key_id, "AKIDENV");
  EXPECT_EQ(c->secret_access_key, "envsecret");
  EXPECT_EQ(c->session_token, "envtoken");
  EXPECT_EQ(c->source, "environment");
  EXPECT_FALSE(c->expiration);
}

TEST(AwsCredentialChainTest, EnvironmentAcceptsLegacyTokenNameAndExpiration) {
  TempHome home;
  FakeEnv env;
  env.values["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  env.values["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  env.values["AWS_SECURITY_TOKEN"] = "legacy";
  env.values["AWS_CREDENTIAL_EXPIRATION"] = "2030-01-02T03:04:05Z";
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->session_token, "legacy");
  ASSERT_TRUE(c->expiration);
  EXPECT_EQ(formatExpiration(*c->expiration), "2030-01-02T03:04:05Z");
}

TEST(AwsCredentialChainTest, PartialEnvironmentStopsTheChain) {
  TempHome home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id = FILEKEY\n"
             "aws_secret_access_key = FILESECRET\n");
  FakeEnv env;
  env.values["AWS_ACCESS_KEY_ID"] = "AKIDENV";
  auto c = resolve(env, home);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
            std::string::npos)
      << c.error().message;
  EXPECT_EQ(c.error().message.find("AKIDENV"), std::string::npos) << "no key material in errors";
}

TEST(AwsCredentialChainTest, EmptyEnvironmentValuesCountAsUnset) {
  TempHome home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id = FILEKEY\n"
             "aws_secret_access_key = FILESECRET\n");
  FakeEnv env;
  env.values["AWS_ACCESS_KEY_ID"] = "";
  env.values["AWS_SECRET_ACCESS_KEY"] = "";
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->source, "shared-credentials-file:default");
}

TEST(AwsCredentialChainTest, SharedFileParsing) {
  TempHome home;
  home.write(".aws/credentials",
             "# a comment\n"
             "; another comment\n"
             "\n"
             "[default]\n"
             "aws_access_key_id=DEFAULTKEY\n"
             "aws_secret_access_key=defaultsecret\n"
             "\n"
             "[work]  \n"
             "   AWS_Access_Key_ID   =   WORKKEY   \r\n"
             "\taws_secret_access_key\t=\tsecret=with=equals \r\n"
             "aws_session_token = worktoken\n"
             "region = eu-west-1\n"
             "s3 =\n"
             "    max_concurrent_requests = 10\n"
             "[other]\n"
             "aws_access_key_id = OTHERKEY\n"
             "aws_secret_access_key = othersecret\n");
  FakeEnv env;
  auto def = resolve(env, home);
  ASSERT_TRUE(def) << def.error().message;
  EXPECT_EQ(def->access_key_id, "DEFAULTKEY");
  EXPECT_EQ(def->secret_access_key, "defaultsecret");
  EXPECT_EQ(def->session_token, "");
  EXPECT_EQ(def->source, "shared-credentials-file:default");

  env.values["AWS_PROFILE"] = "work";
  auto work = resolve(env, home);
  ASSERT_TRUE(work) << work.error().message;
  EXPECT_EQ(work->access_key_id, "WORKKEY");
  EXPECT_EQ(work->secret_access_key, "secret=with=equals");
  EXPECT_EQ(work->session_token, "worktoken");
  EXPECT_EQ(work->source, "shared-credentials-file:work");
  EXPECT_FALSE(work->expiration);
}

TEST(AwsCredentialChainTest, SharedCredentialsFileFromEnvironment) {
  TempHome home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id = HOMEKEY\n"
             "aws_secret_access_key = homesecret\n");
  const auto elsewhere = home.write("elsewhere",
                                    "[default]\naws_access_key_id = ELSEKEY\n"
                                    "aws_secret_access_key = elsesecret\n");
  FakeEnv env;
  env.values["AWS_SHARED_CREDENTIALS_FILE"] = elsewhere;
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->access_key_id, "ELSEKEY");
}

TEST(AwsCredentialChainTest, ConfigFileProfileForm) {
  TempHome home;
  home.write(".aws/config",
             "[default]\nregion = us-east-1\naws_access_key_id = CFGDEFAULT\n"
             "aws_secret_access_key = cfgdefaultsecret\n"
             "[work]\naws_access_key_id = NOTTHIS\naws_secret_access_key = wrongsection\n"
             "[profile work]\naws_access_key_id = CFGWORK\naws_secret_access_key = cfgworksecret\n"
             "aws_session_token = cfgworktoken\n");
  FakeEnv env;
  auto def = resolve(env, home);
  ASSERT_TRUE(def) << def.error().message;
  EXPECT_EQ(def->access_key_id, "CFGDEFAULT");
  EXPECT_EQ(def->source, "shared-config-file:default");

  env.values["AWS_PROFILE"] = "work";
  auto work = resolve(env, home);
  ASSERT_TRUE(work) << work.error().message;
  EXPECT_EQ(work->access_key_id, "CFGWORK");
  EXPECT_EQ(work->session_token, "cfgworktoken");
  EXPECT_EQ(work->source, "shared-config-file:work");

  // AWS_CONFIG_FILE moves it.
  const auto moved = home.write("moved-config",
                                "[profile work]\naws_access_key_id = MOVED\n"
                                "aws_secret_access_key = movedsecret\n");
  env.values["AWS_CONFIG_FILE"] = moved;
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->access_key_id, "MOVED");
}

TEST(AwsCredentialChainTest, CredentialsFileWinsOverConfigFile) {
  TempHome home;
  home.write(".aws/config",
             "[profile work]\naws_access_key_id = CFGWORK\n"
             "aws_secret_access_key = cfgworksecret\n");
  home.write(".aws/credentials",
             "[work]\naws_access_key_id = CREDWORK\n"
             "aws_secret_access_key = credworksecret\n");
  FakeEnv env;
  env.values["AWS_PROFILE"] = "work";
  auto c = resolve(env, home);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->access_key_id, "CREDWORK");
  EXPECT_EQ(c->source, "shared-credentials-file:work");

  // A credentials-file profile without keys (e.g. only a region) falls through to the config file.
  home.write(".aws/credentials", "[work]\nregion = eu-west-1\n");
  auto fallback = resolve(env, home);
  ASSERT_TRUE(fallback) << fallback.error().message;
  EXPECT_EQ(fallback->access_key_id, "CFGWORK");
}

TEST(AwsCredentialChainTest, MissingSecretInProfileIsAnError) {
  TempHome home;
  home.write(".aws/credentials", "[default]\naws_access_key_id = ONLYKEY\n");
  FakeEnv env;
  auto c = resolve(env, home);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(c.error().message.find("has aws_access_key_id but no aws_secret_access_key"),
            std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find(home.path() + "/.aws/credentials"), std::string::npos)
      << c.error().message;
}

TEST(AwsCredentialChainTest, NamedProfileThatDoesNotExistIsAnError) {
  TempHome home;
  home.write(".aws/credentials",
             "[default]\naws_access_key_id = DEFAULTKEY\n"
             "aws_secret_access_key = defaultsecret\n");
  FakeEnv env;
  env.values["AWS_PROFILE"] = "typo";
  auto c = resolve(env, home);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  EXPECT_NE(c.error().message.find("profile \"typo\" (AWS_PROFILE) is in neither"),
            std::string::npos)
      << c.error().message;
}

TEST(AwsCredentialChainTest, UnreadableFileIsAnError) {
  TempHome home;
  // A directory where the file should be: exists, cannot be read as a file.
  std::filesystem::create_directory(home.path() + "/.aws/credentials");
  FakeEnv env;
  home.write(".aws/config",
             "[default]\naws_access_key_id = CFGKEY\n"
             "aws_secret_access_key = cfgsecret\n");
  auto c = resolve(env, home);
  ASSERT_FALSE(c) << "a broken credentials file must not fall through to " << c->source;
  EXPECT_EQ(c.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(c.error().message.find("read " + home.path() + "/.aws/credentials: not a regular file"),
            std::string::npos)
      << c.error().message;
}

TEST(AwsCredentialChainTest, ErrorNamesEverySourceTried) {
  TempHome home;
  FakeEnv env;
  auto c = resolve(env, home);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("no AWS credentials found"), std::string::npos) << m;
  EXPECT_NE(m.find("environment: AWS_ACCESS_KEY_ID is not set"), std::string::npos) << m;
  EXPECT_NE(m.find(home.path() + "/.aws/credentials does not exist"), std::string::npos) << m;
  EXPECT_NE(m.find(home.path() + "/.aws/config does not exist"), std::string::npos) << m;
  EXPECT_NE(m.find("imds: disabled by AWS_EC2_METADATA_DISABLED"), std::string::npos) << m;
}

TEST(AwsCredentialChainTest, MetadataDisabledIsCaseInsensitive) {
  TempHome home;
  FakeEnv env;
  env.values["AWS_EC2_METADATA_DISABLED"] = "TRUE";
  auto c = resolve(env, home);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("imds: disabled"), std::string::npos) << c.error().message;
}

// A loopback port that refuses connections: bound, never listening, held for the test.
class RefusingPort {
 public:
  RefusingPort() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("bind 127.0.0.1:0 failed");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

TEST(AwsCredentialChainTest, ErrorNamesImdsWhenItIsUnreachable) {
  TempHome home;
  RefusingPort port;
  FakeEnv env;
  env.values.erase("AWS_EC2_METADATA_DISABLED");
  const std::string endpoint = fmt::format("http://127.0.0.1:{}", port.port());
  env.values["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint;
  const auto start = std::chrono::steady_clock::now();
  auto c = resolve(env, home);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "a refused connection fails fast";
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("environment: AWS_ACCESS_KEY_ID is not set"), std::string::npos) << m;
  EXPECT_NE(m.find("imds: IMDS " + endpoint + ": PUT /latest/api/token"), std::string::npos) << m;
}

TEST(AwsCredentialChainTest, CachedUntilFiveMinutesBeforeExpiry) {
  TempHome home;
  FakeEnv env;
  const Clock::time_point expiry = std::chrono::sys_days(2030y / 1 / 1) + 12h;
  env.values["AWS_ACCESS_KEY_ID"] = "FIRST";
  env.values["AWS_SECRET_ACCESS_KEY"] = "firstsecret";
  env.values["AWS_CREDENTIAL_EXPIRATION"] = formatExpiration(expiry);
  Clock::time_point now = expiry - 1h;
  auto options = env.options(home);
  options.now = [&now] { return now; };
  auto chain = makeDefaultCredentialChain(options);

  auto first = chain->credentials();
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->access_key_id, "FIRST");

  // The source changes; the cache answers until five minutes before expiry.
  env.values["AWS_ACCESS_KEY_ID"] = "SECOND";
  env.values["AWS_CREDENTIAL_EXPIRATION"] = formatExpiration(expiry + 1h);
  now = expiry - 5min - 1s;
  EXPECT_EQ(chain->credentials()->access_key_id, "FIRST");
  now = expiry - 5min;
  auto second = chain->credentials();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->access_key_id, "SECOND");
  EXPECT_EQ(formatExpiration(*second->expiration), formatExpiration(expiry + 1h));
}

TEST(AwsCredentialChainTest, KeepsUnexpiredCredentialsWhenRefreshFails) {
  TempHome home;
  FakeEnv env;
  const Clock::time_point expiry = std::chrono::sys_days(2030y / 1 / 1) + 12h;
  env.values["AWS_ACCESS_KEY_ID"] = "FIRST";
  env.values["AWS_SECRET_ACCESS_KEY"] = "firstsecret";
  env.values["AWS_CREDENTIAL_EXPIRATION"] = formatExpiration(expiry);
  Clock::time_point now = expiry - 1h;
  auto options = env.options(home);
  options.now = [&now] { return now; };
  auto chain = makeDefaultCredentialChain(options);
  ASSERT_TRUE(chain->credentials());

  env.values.erase("AWS_ACCESS_KEY_ID");
  env.values.erase("AWS_SECRET_ACCESS_KEY");
  now = expiry - 1min;  // due for refresh, refresh fails, still valid: served
  auto kept = chain->credentials();
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(kept->access_key_id, "FIRST");
  now = expiry;  // expired: the failure shows
  auto expired = chain->credentials();
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("no AWS credentials found"), std::string::npos);
}

TEST(AwsCredentialChainTest, CredentialsWithoutExpiryAreResolvedOnce) {
  TempHome home;
  FakeEnv env;
  env.values["AWS_ACCESS_KEY_ID"] = "FIRST";
  env.values["AWS_SECRET_ACCESS_KEY"] = "firstsecret";
  auto chain = makeDefaultCredentialChain(env.options(home));
  ASSERT_TRUE(chain->credentials());
  env.values["AWS_ACCESS_KEY_ID"] = "SECOND";
  EXPECT_EQ(chain->credentials()->access_key_id, "FIRST");
}

TEST(ImdsOptionsTest, EndpointFromEnvironment) {
  std::map<std::string, std::string> values;
  auto getenv = [&values](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
  EXPECT_EQ(ImdsClient::optionsFromEnvironment(getenv).endpoint, "http://169.254.169.254");
  EXPECT_EQ(ImdsClient::optionsFromEnvironment(getenv).timeout, 2000ms);
  values["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6";
  EXPECT_EQ(ImdsClient::optionsFromEnvironment(getenv).endpoint, "http://[fd00:ec2::254]");
  values["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:8080/";
  EXPECT_EQ(ImdsClient::optionsFromEnvironment(getenv).endpoint, "http://127.0.0.1:8080/");
}

TEST(ImdsClientTest, RejectsRelativePaths) {
  // Fails before any request: the endpoint is never contacted.
  ImdsClient client(ImdsOptions{.endpoint = "http://127.0.0.1:9"});
  auto value = client.get("latest/meta-data");
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ecs::aws
