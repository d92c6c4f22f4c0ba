#include "agent/images/registry_auth.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ecs::images {
namespace {

ImageReference image(const std::string& text) {
  auto ref = ImageReference::parse(text);
  EXPECT_TRUE(ref) << text << ": " << ref.error().message;
  return ref.value_or(ImageReference{});
}

// The user name the provider picks for `image`, or "-" for none.
std::string userFor(const EngineAuthProvider& provider, const std::string& text) {
  auto credentials = provider.lookup(image(text));
  return credentials ? credentials->username : "-";
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

TEST(EngineAuthProviderTest, DockerTypeReadsUsernameAndPassword) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "docker",
      R"({"reg.example.com": {"username": "alice", "password": "s3cret:with:colons",
                              "email": "a@example.com"}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  auto credentials = provider->lookup(image("reg.example.com/team/app:1"));
  ASSERT_TRUE(credentials);
  EXPECT_EQ(credentials->username, "alice");
  EXPECT_EQ(credentials->password, "s3cret:with:colons");
  EXPECT_FALSE(provider->lookup(image("other.example.com/team/app")));
  EXPECT_FALSE(provider->lookup(image("busybox")));
}

TEST(EngineAuthProviderTest, DockercfgTypeDecodesBase64UserColonPassword) {
  std::vector<std::string> warnings;
  // "bob:pa:ss" and "carol:" (an empty password is allowed)
  auto provider = EngineAuthProvider::fromConfig(
      "dockercfg",
      R"({"reg.example.com": {"auth": "Ym9iOnBhOnNz", "email": "b@example.com"},
          "empty.example.com": {"auth": "Y2Fyb2w6"}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  auto bob = provider->lookup(image("reg.example.com/app"));
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->username, "bob");
  EXPECT_EQ(bob->password, "pa:ss");  // split at the first ':'
  auto carol = provider->lookup(image("empty.example.com/app"));
  ASSERT_TRUE(carol);
  EXPECT_EQ(carol->username, "carol");
  EXPECT_EQ(carol->password, "");
}

TEST(EngineAuthProviderTest, DockercfgSkipsMalformedEntriesWithAWarning) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig("dockercfg",
                                                 R"({"bad64.example.com": {"auth": "not*base64!"},
          "badpad.example.com": {"auth": "Ym9iOnBhc3M"},
          "nocolon.example.com": {"auth": "Ym9icGFzc3dvcmQ="},
          "noauth.example.com": {"email": "x@example.com"},
          "notobject.example.com": "Ym9iOnBhc3M=",
          "good.example.com": {"auth": "Ym9iOnBhc3M="}})",
                                                 &warnings);
  ASSERT_EQ(warnings.size(), 5u) << joined(warnings);
  const std::string all = joined(warnings);
  for (const char* key : {"bad64.example.com", "badpad.example.com", "nocolon.example.com",
                          "noauth.example.com", "notobject.example.com"}) {
    EXPECT_NE(all.find(key), std::string::npos) << key << " not named in:\n" << all;
    EXPECT_EQ(userFor(*provider, std::string(key) + "/app"), "-") << key;
  }
  EXPECT_NE(all.find("not valid base64"), std::string::npos) << all;
  EXPECT_NE(all.find("user:password"), std::string::npos) << all;
  // Warnings never quote the secret material.
  EXPECT_EQ(all.find("Ym9i"), std::string::npos) << all;
  EXPECT_EQ(all.find("bobpassword"), std::string::npos) << all;
  EXPECT_EQ(userFor(*provider, "good.example.com/app"), "bob");
}

TEST(EngineAuthProviderTest, DockerTypeSkipsEntriesWithoutAUsername) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig("docker",
                                                 R"({"a.example.com": {"password": "p"},
          "b.example.com": {"username": 7, "password": "p"},
          "c.example.com": {"username": "u", "password": 7},
          "d.example.com": ["u", "p"],
          "e.example.com": {"username": "eve"}})",
                                                 &warnings);
  EXPECT_EQ(warnings.size(), 4u) << joined(warnings);
  for (const char* host : {"a", "b", "c", "d"}) {
    EXPECT_EQ(userFor(*provider, std::string(host) + ".example.com/app"), "-") << host;
  }
  EXPECT_EQ(userFor(*provider, "e.example.com/app"), "eve");  // a missing password is empty
}

TEST(EngineAuthProviderTest, KeysLoseTheirSchemeAndMatchHostAndPort) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "docker",
      R"({"https://secure.example.com": {"username": "https-user", "password": "p"},
          "http://plain.example.com:5000/": {"username": "http-user", "password": "p"},
          "HTTPS://Upper.Example.com": {"username": "upper-user", "password": "p"},
          "ports.example.com:5000": {"username": "port-5000", "password": "p"},
          "ports.example.com": {"username": "no-port", "password": "p"},
          "127.0.0.1:5000": {"username": "loopback", "password": "p"}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  EXPECT_EQ(userFor(*provider, "secure.example.com/app"), "https-user");
  EXPECT_EQ(userFor(*provider, "plain.example.com:5000/app:1"), "http-user");
  EXPECT_EQ(userFor(*provider, "plain.example.com/app"), "-");  // a port is part of the host
  EXPECT_EQ(userFor(*provider, "upper.example.com/app"), "upper-user");
  EXPECT_EQ(userFor(*provider, "ports.example.com:5000/app"), "port-5000");
  EXPECT_EQ(userFor(*provider, "ports.example.com/app"), "no-port");
  EXPECT_EQ(userFor(*provider, "ports.example.com:5001/app"), "-");
  EXPECT_EQ(userFor(*provider, "127.0.0.1:5000/test/busybox:oci"), "loopback");
  EXPECT_EQ(userFor(*provider, "secure.example.com.evil.net/app"), "-");
}

TEST(EngineAuthProviderTest, LongestRepositoryPrefixWins) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "docker",
      R"({"reg.example.com": {"username": "registry-wide", "password": "p"},
          "https://reg.example.com/team/": {"username": "team", "password": "p"},
          "reg.example.com/team/app": {"username": "team-app", "password": "p"},
          "other.example.com/only/this": {"username": "only-this", "password": "p"}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  EXPECT_EQ(userFor(*provider, "reg.example.com/team/app:1"), "team-app");
  EXPECT_EQ(userFor(*provider, "reg.example.com/team/app/sub"), "team-app");
  EXPECT_EQ(userFor(*provider, "reg.example.com/team/other"), "team");
  EXPECT_EQ(userFor(*provider, "reg.example.com/other/app"), "registry-wide");
  EXPECT_EQ(userFor(*provider, "reg.example.com/app"), "registry-wide");
  // Prefixes match whole path components: "team" is not a prefix of "teamster".
  EXPECT_EQ(userFor(*provider, "reg.example.com/teamster/app"), "registry-wide");
  EXPECT_EQ(userFor(*provider, "reg.example.com/team/application"), "team");
  EXPECT_EQ(userFor(*provider, "other.example.com/only/this"), "only-this");
  EXPECT_EQ(userFor(*provider, "other.example.com/only/that"), "-");
}

TEST(EngineAuthProviderTest, DockerHubUsesTheIndexKeyUnderAnyOfItsNames) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "dockercfg",
      R"({"https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
          "quay.io": {"auth": "cXVheTpxdWF5cGFzcw=="}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  for (const char* hub : {"busybox", "library/busybox:1.36", "myorg/app", "docker.io/myorg/app",
                          "index.docker.io/library/busybox", "registry-1.docker.io/myorg/app"}) {
    auto credentials = provider->lookup(image(hub));
    ASSERT_TRUE(credentials) << hub;
    EXPECT_EQ(credentials->username, "hub") << hub;
    EXPECT_EQ(credentials->password, "hubpass") << hub;
  }
  EXPECT_EQ(userFor(*provider, "quay.io/org/app"), "quay");
  EXPECT_EQ(userFor(*provider, "index.docker.io.example.com/app"), "-");
}

TEST(EngineAuthProviderTest, DockerHubKeyVariantsAllMeanDockerHub) {
  for (const char* key : {"https://index.docker.io/v1/", "index.docker.io/v1", "docker.io",
                          "https://registry-1.docker.io", "index.docker.io"}) {
    std::vector<std::string> warnings;
    auto provider = EngineAuthProvider::fromConfig(
        "docker", fmt::format(R"({{"{}": {{"username": "hub", "password": "p"}}}})", key),
        &warnings);
    EXPECT_TRUE(warnings.empty()) << joined(warnings);
    EXPECT_EQ(userFor(*provider, "busybox"), "hub") << key;
    EXPECT_EQ(userFor(*provider, "reg.example.com/busybox"), "-") << key;
  }
}

TEST(EngineAuthProviderTest, DockerHubPathKeysNarrowToAnOrganisation) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "docker",
      R"({"https://index.docker.io/v1/": {"username": "hub", "password": "p"},
          "docker.io/myorg": {"username": "myorg", "password": "p"}})",
      &warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  EXPECT_EQ(userFor(*provider, "myorg/app"), "myorg");
  EXPECT_EQ(userFor(*provider, "busybox"), "hub");
}

TEST(EngineAuthProviderTest, DuplicateKeysAfterNormalisationKeepTheLaterOne) {
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig(
      "docker",
      R"({"http://reg.example.com": {"username": "first", "password": "p"},
          "https://reg.example.com/": {"username": "second", "password": "p"}})",
      &warnings);
  ASSERT_EQ(warnings.size(), 1u) << joined(warnings);
  EXPECT_EQ(userFor(*provider, "reg.example.com/app"), "second");
}

TEST(EngineAuthProviderTest, UnusableConfigurationMeansNoCredentialsAndAWarning) {
  struct Case {
    std::string type;
    std::string data;
    std::string warning;  // part of the message; empty: no warning at all
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "", ""},
           {"", R"({"reg.example.com": {"username": "u", "password": "p"}})",
            "ECS_ENGINE_AUTH_TYPE is not"},
           {"ecr", R"({"reg.example.com": {"username": "u", "password": "p"}})", "\"ecr\""},
           {"Docker", R"({"reg.example.com": {"username": "u", "password": "p"}})", "\"Docker\""},
           {"docker", R"({"reg.example.com": {"username": "u", "password": "hunter2")",
            "not a JSON object"},
           {"docker", "", "not a JSON object"},
           {"dockercfg", R"(["reg.example.com"])", "not a JSON object"},
           {"docker", "{}", ""},
       }) {
    std::vector<std::string> warnings;
    auto provider = EngineAuthProvider::fromConfig(c.type, c.data, &warnings);
    EXPECT_EQ(userFor(*provider, "reg.example.com/app"), "-") << c.type << " " << c.data;
    if (c.warning.empty()) {
      EXPECT_TRUE(warnings.empty()) << joined(warnings);
      continue;
    }
    ASSERT_EQ(warnings.size(), 1u) << c.type << " " << c.data << "\n" << joined(warnings);
    EXPECT_NE(warnings[0].find(c.warning), std::string::npos) << warnings[0];
    EXPECT_EQ(warnings[0].find("hunter2"), std::string::npos) << warnings[0];
  }
}

TEST(EngineAuthProviderTest, WarningsGoToTheLogWithoutASink) {
  auto provider = EngineAuthProvider::fromConfig("nope", "{}", nullptr);
  EXPECT_FALSE(provider->lookup(image("busybox")));
}

TEST(BasicAuthorizationTest, EncodesUserColonPassword) {
  EXPECT_EQ(basicAuthorization({"user", "pass"}), "Basic dXNlcjpwYXNz");
  EXPECT_EQ(basicAuthorization({"a", ""}), "Basic YTo=");
  EXPECT_EQ(basicAuthorization({"ab", "c"}), "Basic YWI6Yw==");
}

TEST(AuthChallengeTest, ParsesBasic) {
  auto challenge = AuthChallenge::parse(R"(Basic realm="ecs-test-registry")");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->scheme, "basic");
  EXPECT_EQ(challenge->realm, "ecs-test-registry");
  EXPECT_EQ(challenge->service, "");

  auto bare = AuthChallenge::parse("Basic");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->scheme, "basic");
  EXPECT_EQ(bare->realm, "");
}

TEST(AuthChallengeTest, ParsesBearerAsDockerHubSendsIt) {
  auto challenge = AuthChallenge::parse(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/busybox:pull")");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->scheme, "bearer");
  EXPECT_EQ(challenge->realm, "https://auth.docker.io/token");
  EXPECT_EQ(challenge->service, "registry.docker.io");
  EXPECT_EQ(challenge->scope, "repository:library/busybox:pull");
  EXPECT_EQ(challenge->error, "");
}

TEST(AuthChallengeTest, QuotedValuesKeepCommasSpacesAndEscapes) {
  auto challenge = AuthChallenge::parse(
      R"(Bearer realm="http://127.0.0.1:1/token?a=1,b=2" , service="my service",)"
      R"( scope="repository:team/app:pull,push repository:team/base:pull",)"
      R"(error="insufficient_scope", extra="say \"hi\"")");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->realm, "http://127.0.0.1:1/token?a=1,b=2");
  EXPECT_EQ(challenge->service, "my service");
  EXPECT_EQ(challenge->scope, "repository:team/app:pull,push repository:team/base:pull");
  EXPECT_EQ(challenge->error, "insufficient_scope");

  auto escaped = AuthChallenge::parse(R"(Basic realm="a \"quoted\" realm\\")");
  ASSERT_TRUE(escaped);
  EXPECT_EQ(escaped->realm, R"(a "quoted" realm\)");
}

TEST(AuthChallengeTest, SchemeAndParameterNamesAreCaseInsensitive) {
  auto challenge = AuthChallenge::parse(R"(  BEARER Realm="r", SERVICE="s", Scope="x")");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->scheme, "bearer");
  EXPECT_EQ(challenge->realm, "r");
  EXPECT_EQ(challenge->service, "s");
  EXPECT_EQ(challenge->scope, "x");
}

TEST(AuthChallengeTest, AcceptsUnquotedTokens) {
  auto challenge = AuthChallenge::parse("Bearer realm=https://auth.example.com/token,service=svc");
  ASSERT_TRUE(challenge);
  EXPECT_EQ(challenge->realm, "https://auth.example.com/token");
  EXPECT_EQ(challenge->service, "svc");
}

TEST(AuthChallengeTest, RejectsMalformedHeaders) {
  EXPECT_FALSE(AuthChallenge::parse(""));
  EXPECT_FALSE(AuthChallenge::parse("   "));
  EXPECT_FALSE(AuthChallenge::parse(R"(Bearer realm="never closed)"));
}

}  // namespace
}  // namespace ecs::images
