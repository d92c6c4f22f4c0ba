// The harness itself: its containerd answers, each registry speaks the auth it should, the
// images are where harness.env says, the fault proxy faults, and the leak check sees leaks.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/fault_proxy.h"
#include "tests/support/harness_env.h"

namespace ecs::testing {
namespace {

constexpr char kManifestAccept[] =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// curl printing the response headers (body discarded); `extra` goes before the URL.
RunResult curlHeaders(const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  return runCommand(argv);
}

RunResult ctr(const std::string& ns, std::vector<std::string> args) {
  std::vector<std::string> argv = {"ctr", "-a", harnessEnv().containerdAddress(), "-n", ns};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, {}, std::chrono::seconds(120));
}

TEST(HarnessSmoke, ContainerdAnswers) {
  RunResult r = runCommand({"ctr", "-a", harnessEnv().containerdAddress(), "version"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_NE(r.out.find("Server:"), std::string::npos) << r.out;
}

TEST(HarnessSmoke, OpenRegistryAnswersAnonymously) {
  RunResult r = curlHeaders("http://" + harnessEnv().registry() + "/v2/");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 200", 0), 0u) << r.out;
}

TEST(HarnessSmoke, BasicRegistryChallengesWithBasic) {
  const HarnessEnv& env = harnessEnv();
  RunResult r = curlHeaders("http://" + env.basicRegistry() + "/v2/");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 401", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("Www-Authenticate: Basic realm="), std::string::npos) << r.out;

  r = curlHeaders("http://" + env.basicRegistry() + "/v2/",
                  {"-u", env.registryUser() + ":" + env.registryPassword()});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 200", 0), 0u) << r.out;
}

TEST(HarnessSmoke, TokenRegistryChallengesWithBearerAndTokenServerIssues) {
  const HarnessEnv& env = harnessEnv();
  RunResult r = curlHeaders("http://" + env.tokenRegistry() + "/v2/");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 401", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("Www-Authenticate: Bearer realm=\"" + env.tokenServer() + "\""),
            std::string::npos)
      << r.out;

  const std::string scope =
      "?service=" + env.get("ECS_TEST_TOKEN_SERVICE") + "&scope=repository:test/busybox:pull";
  r = runCommand(
      {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", env.tokenServer() + scope});
  EXPECT_EQ(r.out, "401") << "anonymous token requests must be refused";

  r = runCommand({"curl", "-fsS", "-u", env.registryUser() + ":" + env.registryPassword(),
                  env.tokenServer() + scope});
  ASSERT_TRUE(r.ok()) << r.describe();
  // Extract the token without a JSON library: {"token": "…", …}.
  const std::string key = "\"token\": \"";
  auto at = r.out.find(key);
  ASSERT_NE(at, std::string::npos) << r.out;
  auto end = r.out.find('"', at + key.size());
  const std::string jwt = r.out.substr(at + key.size(), end - at - key.size());
  EXPECT_NE(r.out.find("\"access_token\""), std::string::npos) << r.out;

  r = curlHeaders("http://" + env.tokenRegistry() + "/v2/test/busybox/manifests/oci",
                  {"-H", kManifestAccept, "-H", "Authorization: Bearer " + jwt});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 200", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("Docker-Content-Digest: " + env.busyboxOciDigest()), std::string::npos)
      << r.out;
}

TEST(HarnessSmoke, ImagesAreServedWithTheRecordedDigests) {
  const HarnessEnv& env = harnessEnv();
  struct Case {
    std::string ref;
    std::string digest;
    std::string media_type;
  };
  const Case cases[] = {
      {"test/busybox/manifests/oci", env.busyboxOciDigest(),
       "application/vnd.oci.image.manifest.v1+json"},
      {"test/busybox/manifests/docker", env.busyboxDockerDigest(),
       "application/vnd.docker.distribution.manifest.v2+json"},
      {"test/multiarch/manifests/latest", env.multiarchDigest(),
       "application/vnd.oci.image.index.v1+json"},
      {"test/layered/manifests/oci", env.get("ECS_TEST_IMAGE_DIGEST_LAYERED_OCI"),
       "application/vnd.oci.image.manifest.v1+json"},
      {"test/big/manifests/oci", env.get("ECS_TEST_IMAGE_DIGEST_BIG_OCI"),
       "application/vnd.oci.image.manifest.v1+json"},
  };
  for (const auto& c : cases) {
    RunResult r = curlHeaders("http://" + env.registry() + "/v2/" + c.ref, {"-H", kManifestAccept});
    ASSERT_TRUE(r.ok()) << c.ref << ": " << r.describe();
    EXPECT_NE(r.out.find("Docker-Content-Digest: " + c.digest), std::string::npos)
        << c.ref << ": " << r.out;
    EXPECT_NE(r.out.find("Content-Type: " + c.media_type), std::string::npos)
        << c.ref << ": " << r.out;
  }
}

TEST(HarnessSmoke, FaultProxyTruncatesBlobsButNotManifests) {
  const HarnessEnv& env = harnessEnv();
  FaultProxy proxy(env.registry(), "truncate");
  const std::string base = "http://" + proxy.address() + "/v2/test/big/";

  RunResult r = curlHeaders(base + "manifests/oci", {"-H", kManifestAccept});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out.rfind("HTTP/1.1 200", 0), 0u) << r.out;

  r = runCommand({"curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                  base + "blobs/" + env.get("ECS_TEST_BIG_LAYER_DIGEST")});
  EXPECT_FALSE(r.ok()) << "a truncated download must fail: " << r.describe();
  const long full = std::stol(env.get("ECS_TEST_BIG_LAYER_SIZE"));
  const long got = r.out.empty() ? 0 : std::stol(r.out);
  EXPECT_GT(got, 0);
  EXPECT_LT(got, full);
  EXPECT_NE(proxy.statsJson().find("\"truncated\": 1"), std::string::npos) << proxy.statsJson();
}

TEST(HarnessSmoke, LeakCheckPassesOnFreshNamespaceAndCatchesAnImage) {
  const HarnessEnv& env = harnessEnv();
  const std::string ns =
      uniqueNamespace(::testing::UnitTest::GetInstance()->current_test_info()->name());
  expectNoLeaks(ns);

  const std::string image = env.registry() + "/test/busybox:oci";
  RunResult r = ctr(ns, {"images", "pull", "--plain-http", image});
  ASSERT_TRUE(r.ok()) << r.describe();
  r = ctr(ns, {"run", "--rm", image, ns + "-c", "sh", "-c", "cat /etc/ecs-test-image"});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.out, "busybox\n");

  RunResult leak = runCommand({"bash", env.harnessScript(), "check-leaks", env.workdir(), ns});
  EXPECT_FALSE(leak.ok()) << "the leak check must report the pulled image";
  EXPECT_NE(leak.out.find(image), std::string::npos) << leak.describe();

  r = ctr(ns, {"images", "rm", "--sync", image});
  ASSERT_TRUE(r.ok()) << r.describe();
  expectNoLeaks(ns);
}

TEST(HarnessSmoke, UniqueNamespacesAreValidAndDistinct) {
  const std::string a = uniqueNamespace("Some Test/With_odd:chars");
  const std::string b = uniqueNamespace("Some Test/With_odd:chars");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("t-some-test-with-odd-chars-", 0), 0u) << a;
  EXPECT_LE(uniqueNamespace(std::string(200, 'x')).size(), 76u);
}

TEST(HarnessSmoke, RunCommandReportsExitCodesAndTimeouts) {
  RunResult r = runCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");

  r = runCommand({"sh", "-c", "echo $ECS_X"}, {"ECS_X=added"});
  EXPECT_EQ(r.out, "added\n");

  r = runCommand({"sleep", "10"}, {}, std::chrono::milliseconds(200));
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.ok());

  r = runCommand({"/nonexistent/binary"});
  EXPECT_EQ(r.exit_code, 127);
}

}  // namespace
}  // namespace ecs::testing
