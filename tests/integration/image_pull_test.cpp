// Image pulls end to end: real registries (open, Basic, Bearer token), a real containerd, and a
// fault proxy for the failure paths. Every test runs in its own containerd namespace and must
// leave it empty.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <set>
#include <thread>

#include "agent/images/image_puller.h"
#include "agent/images/registry_auth.h"
#include "agent/images/registry_client.h"
#include "agent/runtime/containerd_client.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/harness_env.h"

namespace ecs::images {
namespace {

using ecs::testing::harnessEnv;

std::string base64(std::string_view in) {
  static constexpr char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], kTable[(n >> 6) & 63], kTable[n & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t n = uint8_t(in[i]) << 16;
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {kTable[n >> 18], kTable[(n >> 12) & 63], kTable[(n >> 6) & 63], '='};
  }
  return out;
}

ImageReference ref(const std::string& registry, const std::string& image) {
  auto parsed = ImageReference::parse(registry + "/" + image);
  EXPECT_TRUE(parsed) << parsed.error().message;
  return *parsed;
}

class ImagePullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    runtime::ContainerdOptions options;
    options.address = harnessEnv().containerdAddress();
    options.ns = ns_;
    auto client = runtime::ContainerdClient::connect(options);
    ASSERT_TRUE(client) << client.error().message;
    containerd_ = std::move(*client);
  }

  void TearDown() override {
    if (!containerd_) return;
    ecs::testing::expectNoLeaks(ns_);
    // Whatever a failed test left is removed so the run's final leak check stays meaningful.
    if (auto images = containerd_->listImages()) {
      for (const auto& image : *images) {
        EXPECT_TRUE(containerd_->deleteImage(image.name, true)) << image.name;
      }
    }
  }

  std::unique_ptr<RegistryClient> registry(std::shared_ptr<const CredentialsProvider> creds = {}) {
    RegistryOptions options;
    options.credentials = std::move(creds);
    return std::make_unique<RegistryClient>(options);
  }

  std::shared_ptr<const CredentialsProvider> engineAuth(const std::string& type,
                                                        const std::string& data) {
    std::vector<std::string> warnings;
    std::shared_ptr<const CredentialsProvider> provider =
        EngineAuthProvider::fromConfig(type, data, &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    return provider;
  }

  std::shared_ptr<const CredentialsProvider> dockerAuth(const std::string& registry,
                                                        const std::string& password) {
    return engineAuth("docker", fmt::format(R"({{"{}":{{"username":"{}","password":"{}"}}}})",
                                            registry, harnessEnv().registryUser(), password));
  }

  // Checks what a successful pull must leave: a record, the manifest and config in the content
  // store, and a committed rootfs snapshot. Then removes the image.
  void expectPulledAndRemove(ImagePuller& puller, const ImageReference& image,
                             const PullResult& result) {
    auto record = containerd_->getImage(image.str());
    ASSERT_TRUE(record && *record) << "no image record " << image.str();
    EXPECT_EQ((*record)->target.digest, result.image.target.digest);
    EXPECT_TRUE(containerd_->contentInfo(result.image.manifest.digest).value().has_value());
    EXPECT_TRUE(containerd_->contentInfo(result.image.config.digest).value().has_value());
    auto snapshot = containerd_->statSnapshot(result.image.chain_id);
    ASSERT_TRUE(snapshot && *snapshot) << "no rootfs snapshot " << result.image.chain_id;
    EXPECT_EQ((*snapshot)->kind, runtime::SnapshotInfo::Kind::kCommitted);
    EXPECT_TRUE(containerd_->listLeases().value().empty()) << "the pull's lease outlived it";

    auto local = puller.resolveLocal(image);
    ASSERT_TRUE(local) << local.error().message;
    EXPECT_EQ(local->chain_id, result.image.chain_id);
    EXPECT_EQ(local->manifest.digest, result.image.manifest.digest);

    ASSERT_TRUE(puller.remove(image));
    EXPECT_FALSE(containerd_->getImage(image.str()).value().has_value());
  }

  std::string ns_;
  std::unique_ptr<runtime::ContainerdClient> containerd_;
};

TEST_F(ImagePullTest, PullsAnOciImageAndUnpacksIt) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(harnessEnv().registry(), "test/busybox:oci");
  auto result = puller.pull(image);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->image.target.media_type, kMediaTypeOciManifest);
  EXPECT_EQ(result->image.target.digest, harnessEnv().busyboxOciDigest());
  EXPECT_EQ(result->image.manifest.digest, result->image.target.digest);
  EXPECT_EQ(result->image.diff_ids.size(), 1u);
  EXPECT_EQ(result->image.chain_id, result->image.diff_ids[0]);
  EXPECT_EQ(result->stats.layers_unpacked, 1);
  EXPECT_FALSE(result->shared);
  expectPulledAndRemove(puller, image, *result);
}

TEST_F(ImagePullTest, PullsADockerSchema2Image) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(harnessEnv().registry(), "test/busybox:docker");
  auto result = puller.pull(image);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->image.target.media_type, kMediaTypeDockerManifest);
  EXPECT_EQ(result->image.target.digest, harnessEnv().busyboxDockerDigest());
  expectPulledAndRemove(puller, image, *result);
}

TEST_F(ImagePullTest, PicksTheHostPlatformFromAnIndex) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(harnessEnv().registry(), "test/multiarch:latest");
  auto result = puller.pull(image);
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->image.target.media_type, kMediaTypeOciIndex);
  EXPECT_EQ(result->image.target.digest, harnessEnv().multiarchDigest());
  EXPECT_NE(result->image.manifest.digest, result->image.target.digest);

  // The chosen manifest is the index entry for the host platform, and its config says so.
  auto index = boost::json::parse(containerd_->readContent(result->image.target.digest).value());
  std::string chosen_arch;
  for (const auto& entry : index.at("manifests").as_array()) {
    if (entry.at("digest").as_string() == result->image.manifest.digest) {
      chosen_arch = entry.at("platform").at("architecture").as_string();
    }
  }
  EXPECT_EQ(chosen_arch, Platform::host().architecture);
  auto config = boost::json::parse(result->image.config_json);
  EXPECT_EQ(config.at("architecture").as_string(), Platform::host().architecture);
  // Only the chosen platform's blobs are fetched: its config and its layers.
  EXPECT_EQ(result->stats.blobs_fetched, 1 + static_cast<int>(result->image.diff_ids.size()));
  expectPulledAndRemove(puller, image, *result);
}

TEST_F(ImagePullTest, PullsAnotherPlatformOnRequestAndRefusesAMissingOne) {
  auto client = registry();
  PullerOptions arm;
  arm.platform = Platform{"linux", "arm64", "v8"};
  ImagePuller arm_puller(*containerd_, *client, arm);
  auto image = ref(harnessEnv().registry(), "test/multiarch:latest");
  auto result = arm_puller.pull(image);
  ASSERT_TRUE(result) << result.error().message;
  auto config = boost::json::parse(result->image.config_json);
  EXPECT_EQ(config.at("architecture").as_string(), "arm64");
  ASSERT_TRUE(arm_puller.remove(image));

  PullerOptions s390x;
  s390x.platform = Platform{"linux", "s390x", ""};
  ImagePuller s390x_puller(*containerd_, *client, s390x);
  auto missing = s390x_puller.pull(image);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("linux/s390x"), std::string::npos)
      << missing.error().message;
  EXPECT_NE(missing.error().message.find("linux/arm64"), std::string::npos)
      << missing.error().message;
}

TEST_F(ImagePullTest, LayersAlreadyPresentAreNotFetchedAgain) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto busybox = ref(harnessEnv().registry(), "test/busybox:oci");
  auto layered = ref(harnessEnv().registry(), "test/layered:oci");
  auto first = puller.pull(busybox);
  ASSERT_TRUE(first) << first.error().message;

  auto second = puller.pull(layered);
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_GE(second->image.diff_ids.size(), 3u);
  EXPECT_EQ(second->image.diff_ids[0], first->image.diff_ids[0]);
  EXPECT_EQ(second->stats.blobs_present, 1) << "the shared busybox layer was downloaded again";
  EXPECT_EQ(second->stats.layers_already_unpacked, 1);
  EXPECT_EQ(second->stats.blobs_fetched, static_cast<int>(second->image.diff_ids.size()));

  // Pulling an image that is fully present fetches no layer and unpacks nothing.
  auto again = puller.pull(layered);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->stats.blobs_present, 1 + static_cast<int>(again->image.diff_ids.size()));
  EXPECT_EQ(again->stats.blobs_fetched, 0);
  EXPECT_EQ(again->stats.layers_unpacked, 0);

  // Removing one image keeps what the other still uses.
  ASSERT_TRUE(puller.remove(busybox));
  auto still = puller.resolveLocal(layered);
  ASSERT_TRUE(still) << still.error().message;
  EXPECT_TRUE(containerd_->statSnapshot(still->chain_id).value().has_value());
  expectPulledAndRemove(puller, layered, *again);
}

TEST_F(ImagePullTest, ConcurrentPullsOfOneImageShareOneDownload) {
  ecs::testing::FaultProxy counter(harnessEnv().registry(), "pass");
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(counter.address(), "test/big:oci");
  std::vector<Result<PullResult>> results(4, fail(ErrorCode::kUnknown, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = puller.pull(image); });
  }
  for (auto& thread : threads) thread.join();
  int leaders = 0;
  for (const auto& result : results) {
    ASSERT_TRUE(result) << result.error().message;
    leaders += result->shared ? 0 : 1;
    EXPECT_EQ(result->image.chain_id, results[0]->image.chain_id);
  }
  EXPECT_EQ(leaders, 1);
  // The config and each layer, downloaded once for all four pulls.
  const int blobs = 1 + static_cast<int>(results[0]->image.diff_ids.size());
  EXPECT_EQ(puller.totalBlobFetches(), blobs);
  auto stats = boost::json::parse(counter.statsJson());
  EXPECT_EQ(stats.at("blob_gets").to_number<int>(), blobs) << counter.statsJson();
  expectPulledAndRemove(puller, image, *results[0]);
}

TEST_F(ImagePullTest, ConcurrentPullsOfImagesSharingALayerFetchItOnce) {
  ecs::testing::FaultProxy counter(harnessEnv().registry(), "pass");
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto busybox = ref(counter.address(), "test/busybox:oci");
  auto layered = ref(counter.address(), "test/layered:oci");
  Result<PullResult> a = fail(ErrorCode::kUnknown, "not run"), b = a;
  std::thread t1([&] { a = puller.pull(busybox); });
  std::thread t2([&] { b = puller.pull(layered); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  std::set<std::string> distinct_layers;
  for (const auto* result : {&*a, &*b}) {
    auto manifest =
        boost::json::parse(containerd_->readContent(result->image.manifest.digest).value());
    for (const auto& layer : manifest.at("layers").as_array()) {
      distinct_layers.insert(std::string(layer.at("digest").as_string()));
    }
  }
  auto stats = boost::json::parse(counter.statsJson());
  EXPECT_EQ(stats.at("blob_gets").to_number<size_t>(), 2 + distinct_layers.size())
      << counter.statsJson();
  ASSERT_TRUE(puller.remove(busybox));
  ASSERT_TRUE(puller.remove(layered));
}

TEST_F(ImagePullTest, BasicAuthWithEngineAuthDockerAndDockercfg) {
  const auto& env = harnessEnv();
  auto image = ref(env.basicRegistry(), "test/busybox:oci");

  auto docker = registry(dockerAuth(env.basicRegistry(), env.registryPassword()));
  ImagePuller puller(*containerd_, *docker);
  auto pulled = puller.pull(image);
  ASSERT_TRUE(pulled) << pulled.error().message;
  ASSERT_TRUE(puller.remove(image));

  auto dockercfg = registry(engineAuth(
      "dockercfg",
      fmt::format(R"({{"http://{}":{{"auth":"{}","email":"ops@example.com"}}}})",
                  env.basicRegistry(), base64(env.registryUser() + ":" + env.registryPassword()))));
  ImagePuller cfg_puller(*containerd_, *dockercfg);
  pulled = cfg_puller.pull(image);
  ASSERT_TRUE(pulled) << pulled.error().message;
  expectPulledAndRemove(cfg_puller, image, *pulled);
}

TEST_F(ImagePullTest, BasicAuthRefusedFailsClearly) {
  const auto& env = harnessEnv();
  auto image = ref(env.basicRegistry(), "test/busybox:oci");
  for (auto creds : {std::shared_ptr<const CredentialsProvider>(),
                     dockerAuth(env.basicRegistry(), "wrong-password")}) {
    auto client = registry(creds);
    ImagePuller puller(*containerd_, *client);
    auto pulled = puller.pull(image);
    ASSERT_FALSE(pulled);
    EXPECT_EQ(pulled.error().code, ErrorCode::kUnauthorized) << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(image.str()), std::string::npos)
        << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(env.basicRegistry()), std::string::npos)
        << pulled.error().message;
    EXPECT_EQ(pulled.error().message.find("wrong-password"), std::string::npos)
        << "an error message leaks the password";
  }
}

TEST_F(ImagePullTest, BearerTokenFlow) {
  const auto& env = harnessEnv();
  auto image = ref(env.tokenRegistry(), "test/multiarch:latest");

  auto client = registry(dockerAuth(env.tokenRegistry(), env.registryPassword()));
  ImagePuller puller(*containerd_, *client);
  auto pulled = puller.pull(image);
  ASSERT_TRUE(pulled) << pulled.error().message;
  expectPulledAndRemove(puller, image, *pulled);

  auto anonymous = registry();
  ImagePuller anonymous_puller(*containerd_, *anonymous);
  auto refused = anonymous_puller.pull(image);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthorized) << refused.error().message;
  EXPECT_NE(refused.error().message.find(env.tokenRegistry()), std::string::npos)
      << refused.error().message;
}

TEST_F(ImagePullTest, UnknownImageNamesImageAndRegistry) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  for (const auto* name : {"test/busybox:no-such-tag", "test/no-such-repo:oci"}) {
    auto image = ref(harnessEnv().registry(), name);
    auto pulled = puller.pull(image);
    ASSERT_FALSE(pulled);
    EXPECT_EQ(pulled.error().code, ErrorCode::kNotFound) << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(image.str()), std::string::npos)
        << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(harnessEnv().registry()), std::string::npos)
        << pulled.error().message;
  }
  auto missing = puller.resolveLocal(ref(harnessEnv().registry(), "test/busybox:oci"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(ImagePullTest, DigestMismatchFailsAndLeavesNothing) {
  ecs::testing::FaultProxy corrupt(harnessEnv().registry(), "corrupt");
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(corrupt.address(), "test/layered:oci");
  auto pulled = puller.pull(image);
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code, ErrorCode::kDataLoss) << pulled.error().message;
  EXPECT_NE(pulled.error().message.find(image.str()), std::string::npos) << pulled.error().message;
  EXPECT_NE(pulled.error().message.find(corrupt.address()), std::string::npos)
      << pulled.error().message;
  EXPECT_FALSE(containerd_->getImage(image.str()).value().has_value());
  // TearDown's leak check proves no content, ingest, snapshot or lease was left.
}

TEST_F(ImagePullTest, RegistryDyingMidPullFailsAndLeavesNothing) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  {
    ecs::testing::FaultProxy dying(harnessEnv().registry(), "truncate");
    auto image = ref(dying.address(), "test/big:oci");
    auto pulled = puller.pull(image);
    ASSERT_FALSE(pulled);
    EXPECT_EQ(pulled.error().code, ErrorCode::kUnavailable) << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(image.str()), std::string::npos)
        << pulled.error().message;
    EXPECT_NE(pulled.error().message.find(dying.address()), std::string::npos)
        << pulled.error().message;
    ecs::testing::expectNoLeaks(ns_);
  }
  // Once the registry is gone altogether: connection refused, named as such.
  std::string gone_address;
  {
    ecs::testing::FaultProxy soon_gone(harnessEnv().registry(), "pass");
    gone_address = soon_gone.address();
  }
  auto gone = ref(gone_address, "test/busybox:oci");
  auto refused = puller.pull(gone);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable) << refused.error().message;
  EXPECT_NE(refused.error().message.find(gone_address), std::string::npos)
      << refused.error().message;

  // Nothing from the failed pulls gets in the way of a good one.
  auto good = ref(harnessEnv().registry(), "test/big:oci");
  auto pulled = puller.pull(good);
  ASSERT_TRUE(pulled) << pulled.error().message;
  expectPulledAndRemove(puller, good, *pulled);
}

// The proxy's "stalled" counter: how many blob downloads it has left hanging halfway.
int stalledDownloads(const ecs::testing::FaultProxy& proxy) {
  return boost::json::parse(proxy.statsJson()).at("stalled").to_number<int>();
}

TEST_F(ImagePullTest, DeadlinePassingMidTransferFailsPromptlyAndLeavesNothing) {
  ecs::testing::FaultProxy stall(harnessEnv().registry(), "stall");
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(stall.address(), "test/big:oci");
  PullControl control;
  control.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  auto pulled = puller.pull(image, control);
  const auto overrun = std::chrono::steady_clock::now() - control.deadline;
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code, ErrorCode::kUnavailable) << pulled.error().message;
  EXPECT_EQ(pulled.error().message, "pull " + image.str() + ": pull deadline passed");
  EXPECT_LT(overrun, std::chrono::seconds(2)) << "the pull went on past its deadline";
  EXPECT_GE(stalledDownloads(stall), 1) << "the deadline passed before a layer was in transfer";
  EXPECT_FALSE(containerd_->getImage(image.str()).value().has_value());
  // TearDown's leak check proves the half-written ingest and the lease went with the pull.
}

TEST_F(ImagePullTest, CancelledPullFailsPromptlyAndLeavesNothing) {
  ecs::testing::FaultProxy stall(harnessEnv().registry(), "stall");
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto image = ref(stall.address(), "test/big:oci");
  std::atomic<bool> cancel{false};
  std::atomic<bool> done{false};
  std::chrono::steady_clock::time_point cancelled_at;
  // Cancels once a layer hangs halfway through its download (polling the proxy's counters).
  std::thread canceller([&] {
    while (!done && stalledDownloads(stall) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    cancelled_at = std::chrono::steady_clock::now();
    cancel = true;
  });
  PullControl control;
  control.cancelled = [&] { return cancel.load(); };
  auto pulled = puller.pull(image, control);
  done = true;
  canceller.join();
  const auto delay = std::chrono::steady_clock::now() - cancelled_at;
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code, ErrorCode::kUnavailable) << pulled.error().message;
  EXPECT_EQ(pulled.error().message, "pull " + image.str() + ": pull cancelled");
  EXPECT_LT(delay, std::chrono::seconds(3)) << "the pull went on after it was cancelled";
  EXPECT_FALSE(containerd_->getImage(image.str()).value().has_value());

  // A cancelled pull is no obstacle to the next one.
  auto good = ref(harnessEnv().registry(), "test/big:oci");
  auto again = puller.pull(good);
  ASSERT_TRUE(again) << again.error().message;
  expectPulledAndRemove(puller, good, *again);
}

TEST_F(ImagePullTest, RemovingAnUnknownImageIsNotFound) {
  auto client = registry();
  ImagePuller puller(*containerd_, *client);
  auto removed = puller.remove(ref(harnessEnv().registry(), "test/busybox:never-pulled"));
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, ErrorCode::kNotFound) << removed.error().message;
}

}  // namespace
}  // namespace ecs::images
