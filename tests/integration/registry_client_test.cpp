// RegistryClient against real registries: the harness's open, Basic and Bearer-token registries,
// its fault proxy, and (for what those cannot show: cross-host redirects, stalls) a loopback HTTP
// server.
#include "agent/images/registry_client.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fault_proxy.h"
#include "tests/support/harness_env.h"
#include "tests/support/loopback_http_server.h"

namespace ecs::images {
namespace {

using ecs::testing::FaultProxy;
using ecs::testing::HarnessEnv;
using ecs::testing::harnessEnv;
using ecs::testing::httpResponse;
using ecs::testing::LoopbackConnection;
using ecs::testing::LoopbackHttpServer;
using ecs::testing::LoopbackRequest;
using ecs::testing::runCommand;

ImageReference parseRef(const std::string& text) {
  auto parsed = ImageReference::parse(text);
  EXPECT_TRUE(parsed) << parsed.error().message;
  return parsed.value_or(ImageReference{});
}

std::shared_ptr<const CredentialsProvider> credentials(const std::string& registry,
                                                       const std::string& user,
                                                       const std::string& password) {
  boost::json::object data;
  data[registry] = {{"username", user}, {"password", password}};
  std::vector<std::string> warnings;
  auto provider = EngineAuthProvider::fromConfig("docker", boost::json::serialize(data), &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  return provider;
}

RegistryOptions withCredentials(std::shared_ptr<const CredentialsProvider> provider) {
  RegistryOptions options;
  options.credentials = std::move(provider);
  return options;
}

RegistryOptions harnessCredentials(const std::string& registry) {
  return withCredentials(
      credentials(registry, harnessEnv().registryUser(), harnessEnv().registryPassword()));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Result<std::string> fetchBlobToString(RegistryClient& client, const ImageReference& image,
                                      const runtime::Descriptor& blob, int64_t offset = 0) {
  std::string data;
  auto fetched = client.fetchBlob(image, blob, offset, [&](std::string_view chunk) -> Result<void> {
    data.append(chunk);
    return {};
  });
  if (!fetched) return fail(fetched.error());
  return data;
}

runtime::Descriptor descriptorFrom(const boost::json::value& json) {
  const auto& object = json.as_object();
  return runtime::Descriptor{std::string(object.at("mediaType").as_string()),
                             std::string(object.at("digest").as_string()),
                             object.at("size").to_number<int64_t>(),
                             {}};
}

// The manifest's config and layers, as descriptors.
std::vector<runtime::Descriptor> blobsOf(const FetchedManifest& manifest) {
  boost::json::value root = boost::json::parse(manifest.body);
  std::vector<runtime::Descriptor> blobs{descriptorFrom(root.at("config"))};
  for (const auto& layer : root.at("layers").as_array()) blobs.push_back(descriptorFrom(layer));
  return blobs;
}

// What skopeo, an independent client, says the manifest's digest is.
std::string skopeoDigest(const std::string& image) {
  // A private auth file and runtime dir, so the host's registry logins play no part.
  auto r = runCommand({"sh", "-c",
                       "d=$(mktemp -d) && REGISTRY_AUTH_FILE=$d/auth.json XDG_RUNTIME_DIR=$d "
                       "skopeo inspect --raw --tls-verify=false docker://" +
                           image + " | sha256sum | cut -d' ' -f1; rm -rf \"$d\""});
  EXPECT_TRUE(r.ok()) << r.describe();
  return "sha256:" + std::string(r.out.substr(0, 64));
}

// Tokens the harness's token server has issued so far.
int64_t tokensIssued() {
  std::string stats_url = harnessEnv().tokenServer();
  stats_url = stats_url.substr(0, stats_url.rfind('/')) + "/stats";
  auto r = runCommand({"curl", "-sS", "--max-time", "10", stats_url});
  EXPECT_TRUE(r.ok()) << r.describe();
  return boost::json::parse(r.out).at("tokens_issued").to_number<int64_t>();
}

// ---- manifests ----------------------------------------------------------------------------------

TEST(RegistryClientTest, FetchesAnOciManifest) {
  const std::string registry = harnessEnv().registry();
  RegistryClient client({});
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->descriptor.media_type, kMediaTypeOciManifest);
  EXPECT_EQ(manifest->descriptor.digest, harnessEnv().busyboxOciDigest());
  EXPECT_EQ(manifest->descriptor.digest, skopeoDigest(registry + "/test/busybox:oci"));
  EXPECT_EQ(manifest->descriptor.digest, sha256Digest(manifest->body));
  EXPECT_EQ(manifest->descriptor.size, static_cast<int64_t>(manifest->body.size()));
}

TEST(RegistryClientTest, FetchesADockerSchema2ManifestUnconverted) {
  const std::string registry = harnessEnv().registry();
  RegistryClient client({});
  auto image = parseRef(registry + "/test/busybox:docker");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->descriptor.media_type, kMediaTypeDockerManifest);
  // Schema 1 conversion would change the digest.
  EXPECT_EQ(manifest->descriptor.digest, harnessEnv().busyboxDockerDigest());
  EXPECT_EQ(manifest->descriptor.digest, skopeoDigest(registry + "/test/busybox:docker"));
}

TEST(RegistryClientTest, FetchesAnIndexAndItsPlatformManifestsByDigest) {
  const HarnessEnv& env = harnessEnv();
  RegistryClient client({});
  auto image = parseRef(env.registry() + "/test/multiarch:latest");
  auto index = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(index) << index.error().message;
  EXPECT_EQ(index->descriptor.media_type, kMediaTypeOciIndex);
  EXPECT_EQ(index->descriptor.digest, env.multiarchDigest());

  for (const char* key :
       {"ECS_TEST_IMAGE_DIGEST_MULTIARCH_AMD64", "ECS_TEST_IMAGE_DIGEST_MULTIARCH_ARM64"}) {
    const std::string& digest = env.get(key);
    auto platform = client.fetchManifest(image, digest);
    ASSERT_TRUE(platform) << platform.error().message;
    EXPECT_EQ(platform->descriptor.media_type, kMediaTypeOciManifest);
    EXPECT_EQ(platform->descriptor.digest, digest);
  }

  // A pinned reference asks for the digest, and gets it verified.
  auto pinned = parseRef(env.registry() + "/test/multiarch@" + env.multiarchDigest());
  auto by_digest = client.fetchManifest(pinned, pinned.manifestReference());
  ASSERT_TRUE(by_digest) << by_digest.error().message;
  EXPECT_EQ(by_digest->body, index->body);
}

TEST(RegistryClientTest, UnknownRepositoryTagOrDigestIsNotFound) {
  const std::string registry = harnessEnv().registry();
  RegistryClient client({});

  auto nope = parseRef(registry + "/test/nope:1");
  auto missing_repo = client.fetchManifest(nope, nope.manifestReference());
  ASSERT_FALSE(missing_repo);
  EXPECT_EQ(missing_repo.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing_repo.error().message,
            "pull " + registry + "/test/nope:1: manifest unknown (404) from registry " + registry);

  auto no_tag = parseRef(registry + "/test/busybox:no-such-tag");
  auto missing_tag = client.fetchManifest(no_tag, no_tag.manifestReference());
  ASSERT_FALSE(missing_tag);
  EXPECT_EQ(missing_tag.error().code, ErrorCode::kNotFound) << missing_tag.error().message;

  const std::string zero_digest = "sha256:" + std::string(64, '0');
  auto missing_digest = client.fetchManifest(no_tag, zero_digest);
  ASSERT_FALSE(missing_digest);
  EXPECT_EQ(missing_digest.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(contains(missing_digest.error().message, "manifest " + zero_digest))
      << missing_digest.error().message;

  auto blob = fetchBlobToString(client, parseRef(registry + "/test/busybox:oci"),
                                {"application/octet-stream", zero_digest, 10, {}});
  ASSERT_FALSE(blob);
  EXPECT_EQ(blob.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(blob.error().message, "pull " + registry + "/test/busybox:oci: blob " + zero_digest +
                                      ": blob unknown to registry (404) from registry " + registry);
}

TEST(RegistryClientTest, RejectsReferencesThatAreNeitherTagNorDigest) {
  RegistryClient client({});
  auto image = parseRef(harnessEnv().registry() + "/test/busybox:oci");
  for (const char* bad : {"", "../../v2/_catalog", "sha256:abc", "a b"}) {
    auto manifest = client.fetchManifest(image, bad);
    ASSERT_FALSE(manifest) << bad;
    EXPECT_EQ(manifest.error().code, ErrorCode::kInvalidArgument) << manifest.error().message;
  }
}

// ---- blobs --------------------------------------------------------------------------------------

TEST(RegistryClientTest, FetchesBlobsThatMatchTheirDigests) {
  RegistryClient client({});
  auto image = parseRef(harnessEnv().registry() + "/test/layered:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  auto blobs = blobsOf(*manifest);
  ASSERT_EQ(blobs.size(), 4u);  // config + 3 layers
  for (const auto& blob : blobs) {
    auto data = fetchBlobToString(client, image, blob);
    ASSERT_TRUE(data) << data.error().message;
    EXPECT_EQ(static_cast<int64_t>(data->size()), blob.size);
    EXPECT_EQ(sha256Digest(*data), blob.digest);
  }
}

TEST(RegistryClientTest, ResumesABlobWithARangeRequest) {
  const HarnessEnv& env = harnessEnv();
  RegistryClient client({});
  auto image = parseRef(env.registry() + "/test/big:oci");
  const runtime::Descriptor big{"application/vnd.oci.image.layer.v1.tar+gzip",
                                env.get("ECS_TEST_BIG_LAYER_DIGEST"),
                                std::stoll(env.get("ECS_TEST_BIG_LAYER_SIZE")),
                                {}};
  ASSERT_GT(big.size, 1 << 20);

  // The first attempt stops a third of the way in: the sink's error comes back unchanged.
  std::string received;
  auto first = client.fetchBlob(image, big, 0, [&](std::string_view chunk) -> Result<void> {
    received.append(chunk);
    if (static_cast<int64_t>(received.size()) >= big.size / 3) {
      return fail(ErrorCode::kInternal, "disk full (test)");
    }
    return {};
  });
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().code, ErrorCode::kInternal);
  EXPECT_TRUE(contains(first.error().message, "disk full (test)")) << first.error().message;
  ASSERT_LT(static_cast<int64_t>(received.size()), big.size);

  auto rest = fetchBlobToString(client, image, big, static_cast<int64_t>(received.size()));
  ASSERT_TRUE(rest) << rest.error().message;
  EXPECT_EQ(static_cast<int64_t>(received.size() + rest->size()), big.size);
  EXPECT_EQ(sha256Digest(received + *rest), big.digest);

  // Resuming at the very end has nothing left to fetch; beyond it is a caller's mistake.
  EXPECT_TRUE(fetchBlobToString(client, image, big, big.size));
  auto beyond = fetchBlobToString(client, image, big, big.size + 1);
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error().code, ErrorCode::kInvalidArgument);
}

TEST(RegistryClientTest, TruncatedBlobIsUnavailable) {
  const std::string registry = harnessEnv().registry();
  FaultProxy proxy(registry, "truncate");
  RegistryClient client({});
  auto image = parseRef(proxy.address() + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  auto layer = blobsOf(*manifest).back();

  auto data = fetchBlobToString(client, image, layer);
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().code, ErrorCode::kUnavailable);
  const std::string& message = data.error().message;
  EXPECT_TRUE(contains(message, "pull " + image.str() + ": blob " + layer.digest)) << message;
  EXPECT_TRUE(contains(message, "registry " + proxy.address())) << message;
}

TEST(RegistryClientTest, CorruptedBlobIsLeftToTheDigestCheckOfTheCaller) {
  FaultProxy proxy(harnessEnv().registry(), "corrupt");
  RegistryClient client({});
  auto image = parseRef(proxy.address() + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  auto layer = blobsOf(*manifest).back();
  auto data = fetchBlobToString(client, image, layer);
  ASSERT_TRUE(data) << data.error().message;
  EXPECT_EQ(static_cast<int64_t>(data->size()), layer.size);
  EXPECT_NE(sha256Digest(*data), layer.digest);  // what the content store will catch
}

// ---- network failures ---------------------------------------------------------------------------

TEST(RegistryClientTest, StoppedRegistryIsUnavailableAndNamed) {
  auto proxy = std::make_unique<FaultProxy>(harnessEnv().registry(), "pass");
  const std::string address = proxy->address();
  RegistryClient client({});
  auto image = parseRef(address + "/test/busybox:oci");
  ASSERT_TRUE(client.fetchManifest(image, image.manifestReference()));

  proxy.reset();  // the registry goes away; the client still holds a kept-alive connection
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(contains(manifest.error().message,
                       "pull " + image.str() + ": cannot reach registry " + address + ": "))
      << manifest.error().message;
}

TEST(RegistryClientTest, SilentRegistryTimesOutAfterTheInactivityTimeout) {
  LoopbackHttpServer silent(nullptr);  // connections wait in the backlog, never answered
  RegistryOptions options;
  options.inactivity_timeout = std::chrono::seconds(1);
  RegistryClient client(options);
  auto image = parseRef(silent.address() + "/app:1");
  auto start = std::chrono::steady_clock::now();
  auto manifest = client.fetchManifest(image, image.manifestReference());
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(contains(manifest.error().message, "registry " + silent.address() + " timed out"))
      << manifest.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

// ---- Basic auth ---------------------------------------------------------------------------------

TEST(RegistryClientTest, BasicAuthWithTheRightCredentials) {
  const std::string registry = harnessEnv().basicRegistry();
  RegistryClient client(harnessCredentials(registry));
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->descriptor.digest, harnessEnv().busyboxOciDigest());
  for (const auto& blob : blobsOf(*manifest)) {
    auto data = fetchBlobToString(client, image, blob);
    ASSERT_TRUE(data) << data.error().message;
    EXPECT_EQ(sha256Digest(*data), blob.digest);
  }
}

TEST(RegistryClientTest, BasicAuthWithWrongCredentialsIsUnauthorized) {
  const std::string registry = harnessEnv().basicRegistry();
  RegistryClient client(
      withCredentials(credentials(registry, harnessEnv().registryUser(), "wrong")));
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnauthorized);
  EXPECT_EQ(manifest.error().message,
            "pull " + image.str() + ": registry " + registry +
                " refused the configured credentials (401: authentication required)");
}

TEST(RegistryClientTest, BasicAuthWithoutCredentialsSaysNoneAreConfigured) {
  const std::string registry = harnessEnv().basicRegistry();
  // Credentials for another registry do not count.
  RegistryClient client(withCredentials(credentials("elsewhere.example.com", "u", "p")));
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnauthorized);
  EXPECT_EQ(manifest.error().message,
            "pull " + image.str() + ": registry " + registry +
                " requires authentication (Basic) and no credentials are configured for it");
}

// ---- Bearer token auth --------------------------------------------------------------------------

TEST(RegistryClientTest, BearerAuthFetchesATokenOnceAndReusesIt) {
  const std::string registry = harnessEnv().tokenRegistry();
  RegistryClient client(harnessCredentials(registry));
  auto image = parseRef(registry + "/test/busybox:docker");
  const int64_t tokens_before = tokensIssued();

  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_TRUE(manifest) << manifest.error().message;
  EXPECT_EQ(manifest->descriptor.digest, harnessEnv().busyboxDockerDigest());
  for (const auto& blob : blobsOf(*manifest)) {
    auto data = fetchBlobToString(client, image, blob);
    ASSERT_TRUE(data) << data.error().message;
    EXPECT_EQ(sha256Digest(*data), blob.digest);
  }
  ASSERT_TRUE(client.fetchManifest(image, image.manifestReference()));
  EXPECT_EQ(tokensIssued() - tokens_before, 1) << "one token per (registry, scope)";

  // Another repository is another scope: a token of its own.
  auto other = parseRef(registry + "/test/layered:oci");
  ASSERT_TRUE(client.fetchManifest(other, other.manifestReference()));
  EXPECT_EQ(tokensIssued() - tokens_before, 2);
}

TEST(RegistryClientTest, BearerAuthWithoutCredentialsFailsClearly) {
  const std::string registry = harnessEnv().tokenRegistry();
  RegistryClient client({});
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnauthorized);
  const std::string& message = manifest.error().message;
  EXPECT_TRUE(contains(message, "pull " + image.str() + ": token service " +
                                    harnessEnv().tokenServer() + " of registry " + registry +
                                    " refused anonymous access (401"))
      << message;
  EXPECT_TRUE(contains(message, "no credentials are configured for " + registry)) << message;
}

TEST(RegistryClientTest, BearerAuthWithWrongCredentialsIsUnauthorized) {
  const std::string registry = harnessEnv().tokenRegistry();
  const std::string password = "not-the-password";
  RegistryClient client(
      withCredentials(credentials(registry, harnessEnv().registryUser(), password)));
  auto image = parseRef(registry + "/test/busybox:oci");
  auto manifest = client.fetchManifest(image, image.manifestReference());
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code, ErrorCode::kUnauthorized);
  EXPECT_TRUE(contains(manifest.error().message, "refused the configured credentials (401"))
      << manifest.error().message;
  EXPECT_FALSE(contains(manifest.error().message, password));
}

TEST(RegistryClientTest, ConcurrentPullsShareOneClient) {
  const std::string registry = harnessEnv().tokenRegistry();
  RegistryClient client(harnessCredentials(registry));
  const std::vector<std::string> images = {"test/busybox:oci", "test/busybox:docker",
                                           "test/layered:oci", "test/multiarch:latest"};
  std::vector<std::string> failures(16);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < failures.size(); ++i) {
    threads.emplace_back([&, i] {
      auto image = parseRef(registry + "/" + images[i % images.size()]);
      auto manifest = client.fetchManifest(image, image.manifestReference());
      if (!manifest) {
        failures[i] = manifest.error().message;
        return;
      }
      if (manifest->descriptor.media_type == kMediaTypeOciIndex) return;
      for (const auto& blob : blobsOf(*manifest)) {
        auto data = fetchBlobToString(client, image, blob);
        if (!data) failures[i] = data.error().message;
        if (data && sha256Digest(*data) != blob.digest) failures[i] = "digest mismatch";
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) EXPECT_EQ(failure, "");
}

// ---- redirects ----------------------------------------------------------------------------------

// Registries hand out blobs by redirecting to storage (S3, a CDN). The Authorization header is for
// the registry only: it must not follow a redirect to another host, and must follow one that
// stays on the registry.
TEST(RegistryClientTest, RedirectsKeepAuthorizationOnlyOnTheSameOrigin) {
  LoopbackHttpServer storage(
      [](const LoopbackRequest&, LoopbackConnection& connection) {
        connection.write(httpResponse("200 OK", "", "hello"));  // ignores Range, as some do
      },
      "127.0.0.2");
  LoopbackHttpServer registry([&](const LoopbackRequest& request, LoopbackConnection& connection) {
    if (!request.header("Authorization").starts_with("Basic ")) {
      connection.write(
          httpResponse("401 Unauthorized", "WWW-Authenticate: Basic realm=\"tiny\"\r\n", ""));
    } else if (request.target.starts_with("/v2/app/blobs/")) {
      connection.write(httpResponse(
          "307 Temporary Redirect",
          "Location: http://" + storage.address() + "/bucket/blob?Signature=x\r\n", ""));
    } else if (request.target.starts_with("/v2/same/blobs/")) {
      connection.write(httpResponse("307 Temporary Redirect", "Location: /moved\r\n", ""));
    } else {
      connection.write(httpResponse("200 OK", "", "hello"));
    }
  });
  RegistryClient client(withCredentials(credentials(registry.address(), "user", "secret")));
  const runtime::Descriptor blob{"application/octet-stream", sha256Digest("hello"), 5, {}};

  auto other_host = fetchBlobToString(client, parseRef(registry.address() + "/app:1"), blob, 1);
  ASSERT_TRUE(other_host) << other_host.error().message;
  EXPECT_EQ(*other_host, "ello");  // a 200 to a Range request: the first byte is skipped
  auto seen_by_storage = storage.requests();
  ASSERT_EQ(seen_by_storage.size(), 1u);
  EXPECT_FALSE(contains(seen_by_storage[0].head, "Authorization")) << seen_by_storage[0].head;
  EXPECT_EQ(seen_by_storage[0].header("Range"), "bytes=1-") << seen_by_storage[0].head;

  auto same_host = fetchBlobToString(client, parseRef(registry.address() + "/same:1"), blob);
  ASSERT_TRUE(same_host) << same_host.error().message;  // /moved answers 401 without credentials
  EXPECT_EQ(*same_host, "hello");
}

// ---- URLs ---------------------------------------------------------------------------------------

TEST(RegistryClientTest, PlainHttpOnlyForLoopbackAndInsecureRegistries) {
  RegistryOptions options;
  options.insecure_registries = {"insecure.example.com:5000", "bare.example.com",
                                 "http://schemed.example.com/"};
  RegistryClient client(options);
  auto url = [&](const std::string& image) { return client.baseUrl(parseRef(image)); };
  EXPECT_EQ(url("busybox"), "https://registry-1.docker.io");
  EXPECT_EQ(url("reg.example.com/app"), "https://reg.example.com");
  EXPECT_EQ(url("localhost/app"), "http://localhost");
  EXPECT_EQ(url("localhost:5000/app"), "http://localhost:5000");
  EXPECT_EQ(url("127.0.0.1:5000/app"), "http://127.0.0.1:5000");
  EXPECT_EQ(url("127.10.20.30/app"), "http://127.10.20.30");
  EXPECT_EQ(url("[::1]:5000/app"), "http://[::1]:5000");
  EXPECT_EQ(url("128.0.0.1/app"), "https://128.0.0.1");
  EXPECT_EQ(url("127.0.0.1.example.com/app"), "https://127.0.0.1.example.com");
  EXPECT_EQ(url("localhost.example.com/app"), "https://localhost.example.com");
  EXPECT_EQ(url("insecure.example.com:5000/app"), "http://insecure.example.com:5000");
  EXPECT_EQ(url("insecure.example.com/app"), "https://insecure.example.com");
  EXPECT_EQ(url("bare.example.com/app"), "http://bare.example.com");
  EXPECT_EQ(url("bare.example.com:8443/app"), "http://bare.example.com:8443");
  EXPECT_EQ(url("schemed.example.com/app"), "http://schemed.example.com");
}

TEST(RegistryClientTest, PercentEncodesQueryValues) {
  EXPECT_EQ(percentEncode("repository:team/app:pull"), "repository%3Ateam%2Fapp%3Apull");
  EXPECT_EQ(percentEncode("a b+c&d=e~f_g.h-i"), "a%20b%2Bc%26d%3De~f_g.h-i");
  EXPECT_EQ(percentEncode("\xff"), "%FF");
}

}  // namespace
}  // namespace ecs::images
