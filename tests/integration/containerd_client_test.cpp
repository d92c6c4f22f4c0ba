// ContainerdClient against the harness's real containerd: leases, content (resume, digest
// checks), snapshots and Diff.Apply with a busybox layer built here, images, containers, tasks,
// exec, and the event monitor (exits before waiting, resubscription). Every test works in its own
// namespace, removes what it made, checks that the namespace is empty and deletes it.
#include "agent/runtime/containerd_client.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <thread>

#include "agent/runtime/oci_spec.h"
#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

namespace ecs::runtime {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ecs::testing::waitFor;

constexpr const char* kLayerMediaType = "application/vnd.oci.image.layer.v1.tar";

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string sha256Of(const fs::path& path) {
  auto r = ecs::testing::runCommand({"sha256sum", path.string()});
  if (!r.ok()) throw std::runtime_error("sha256sum: " + r.describe());
  return "sha256:" + r.out.substr(0, 64);
}

// An uncompressed layer holding a static busybox and the applets the tests use.
struct BusyboxLayer {
  std::string data;
  Descriptor descriptor;
};

const BusyboxLayer& busyboxLayer() {
  static const BusyboxLayer layer = [] {
    char tmpl[] = "/tmp/rt-layer-XXXXXX";
    const fs::path dir = mkdtemp(tmpl);
    const fs::path root = dir / "rootfs";
    fs::create_directories(root / "bin");
    for (const char* d : {"proc", "dev", "sys", "tmp", "etc"}) fs::create_directories(root / d);
    fs::copy_file("/bin/busybox", root / "bin/busybox");
    for (const char* applet :
         {"sh", "sleep", "echo", "cat", "true", "grep", "hostname", "id", "yes", "head"}) {
      fs::create_symlink("busybox", root / "bin" / applet);
    }
    const fs::path tar = dir / "layer.tar";
    auto r = ecs::testing::runCommand({"tar", "--numeric-owner", "--owner=0", "--group=0", "-C",
                                       root.string(), "-cf", tar.string(), "."});
    if (!r.ok()) throw std::runtime_error("tar: " + r.describe());
    BusyboxLayer out;
    out.data = readFile(tar);
    out.descriptor =
        Descriptor{kLayerMediaType, sha256Of(tar), static_cast<int64_t>(out.data.size()), {}};
    fs::remove_all(dir);
    return out;
  }();
  return layer;
}

// Serves `data` in chunks of `chunk` bytes.
ChunkSource chunksOf(std::string_view data, size_t chunk) {
  return [data, chunk, pos = size_t{0}]() mutable -> Result<std::string_view> {
    auto piece = data.substr(pos, chunk);
    pos += piece.size();
    return piece;
  };
}

std::string randomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string digestOf(const std::string& data) {
  char tmpl[] = "/tmp/rt-blob-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) throw std::runtime_error("mkstemp");
  ::close(fd);
  std::ofstream(tmpl, std::ios::binary) << data;
  auto d = sha256Of(tmpl);
  fs::remove(tmpl);
  return d;
}

class ContainerdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ContainerdOptions options;
    options.address = ecs::testing::harnessEnv().containerdAddress();
    options.ns = ns_;
    options.call_timeout = 30s;
    options.default_labels = {{kLabelManagedBy, kManagedByValue}};
    auto client = ContainerdClient::connect(options);
    ASSERT_TRUE(client) << client.error().message;
    client_ = std::move(*client);
    char tmpl[] = "/tmp/rt-test-XXXXXX";
    tmp_ = mkdtemp(tmpl);
  }

  void TearDown() override {
    if (client_) {
      expectNamespaceEmpty();
      ecs::testing::expectNoLeaks(ns_);
      forceClean();
      // A test that made nothing never made the namespace either.
      auto deleted = client_->deleteNamespace(ns_);
      EXPECT_TRUE(deleted || deleted.error().code == ErrorCode::kNotFound)
          << deleted.error().message;
      client_.reset();
    }
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }

  // What every test must leave behind: nothing.
  void expectNamespaceEmpty() {
    auto containers = client_->listContainers();
    ASSERT_TRUE(containers);
    EXPECT_TRUE(containers->empty()) << containers->size() << " containers left";
    auto tasks = client_->listTasks();
    ASSERT_TRUE(tasks);
    EXPECT_TRUE(tasks->empty()) << tasks->size() << " tasks left";
    auto images = client_->listImages();
    ASSERT_TRUE(images);
    EXPECT_TRUE(images->empty()) << images->size() << " images left";
    auto leases = client_->listLeases();
    ASSERT_TRUE(leases);
    EXPECT_TRUE(leases->empty()) << leases->size() << " leases left";
    auto snapshots = client_->listSnapshots();
    ASSERT_TRUE(snapshots);
    EXPECT_TRUE(snapshots->empty()) << snapshots->size() << " snapshots left";
    auto content = client_->listContent();
    ASSERT_TRUE(content);
    EXPECT_TRUE(content->empty()) << content->size() << " blobs left";
    auto ingests = client_->listIngests();
    ASSERT_TRUE(ingests);
    EXPECT_TRUE(ingests->empty()) << ingests->size() << " ingests left";
  }

  // After a failed test: remove whatever is left so the namespace can go.
  void forceClean() {
    if (auto tasks = client_->listTasks(); tasks) {
      for (const auto& t : *tasks) {
        (void)client_->killTask(t.container_id, SIGKILL, true);
        (void)client_->events().waitExit(t.container_id, 5s);
        (void)client_->deleteTask(t.container_id);
      }
    }
    if (auto containers = client_->listContainers(); containers) {
      for (const auto& c : *containers) (void)client_->deleteContainer(c.id);
    }
    if (auto images = client_->listImages(); images) {
      for (const auto& i : *images) (void)client_->deleteImage(i.name, false);
    }
    if (auto ingests = client_->listIngests(); ingests) {
      for (const auto& i : *ingests) (void)client_->abortIngest(i.ref);
    }
    if (auto leases = client_->listLeases(); leases) {
      for (const auto& l : *leases) (void)client_->deleteLease(l, true);
    }
    for (int round = 0; round < 10; ++round) {  // children before parents
      auto snapshots = client_->listSnapshots();
      if (!snapshots || snapshots->empty()) break;
      for (const auto& s : *snapshots) (void)client_->removeSnapshot(s.name);
    }
    if (auto content = client_->listContent(); content) {
      for (const auto& c : *content) (void)client_->deleteContent(c.digest);
    }
  }

  // Writes the busybox layer under `lease` and unpacks it into a committed snapshot named by its
  // chain ID (for one layer: its diff ID). Returns the chain ID.
  std::string importBusybox(const std::string& lease) {
    const auto& layer = busyboxLayer();
    auto written = client_->writeContent(lease, "layer-" + layer.descriptor.digest,
                                         layer.descriptor, {}, chunksOf(layer.data, 256 << 10));
    EXPECT_TRUE(written) << written.error().message;
    const std::string key = "extract-" + layer.descriptor.digest;
    auto mounts = client_->prepareSnapshot(lease, key, "", {});
    EXPECT_TRUE(mounts) << mounts.error().message;
    if (!mounts) return {};
    auto applied = client_->applyLayer(layer.descriptor, *mounts);
    EXPECT_TRUE(applied) << applied.error().message;
    if (!applied) return {};
    // Uncompressed: the diff ID is the layer's own digest.
    EXPECT_EQ(applied->digest, layer.descriptor.digest);
    EXPECT_EQ(applied->media_type, kLayerMediaType);
    auto committed = client_->commitSnapshot(lease, applied->digest, key, {});
    EXPECT_TRUE(committed) << committed.error().message;
    return applied->digest;
  }

  std::string specFor(const std::string& id, std::vector<std::string> args) {
    SpecInputs in;
    in.entrypoint = std::move(args);
    in.hostname = id;
    in.cgroups_path = "/" + ns_ + "/" + id;
    auto spec = buildOciSpec(in);
    EXPECT_TRUE(spec) << spec.error().message;
    return spec ? *spec : std::string();
  }

  ContainerRecord create(const std::string& id, const std::string& parent,
                         std::vector<std::string> args, Labels labels = {}) {
    ContainerSpec spec;
    spec.id = id;
    spec.image = "test/busybox:latest";
    spec.snapshot_parent = parent;
    spec.oci_spec_json = specFor(id, std::move(args));
    spec.labels = std::move(labels);
    auto created = client_->createContainer(spec);
    EXPECT_TRUE(created) << created.error().message;
    return created ? *created : ContainerRecord{};
  }

  // Deletes the task (which must have exited) and the container.
  void removeContainer(const std::string& id) {
    auto deleted = client_->deleteTask(id);
    EXPECT_TRUE(deleted || deleted.error().code == ErrorCode::kNotFound) << deleted.error().message;
    auto removed = client_->deleteContainer(id);
    EXPECT_TRUE(removed) << removed.error().message;
  }

  std::string newLease() {
    auto lease = client_->createLease({{"purpose", "test"}}, 1h);
    EXPECT_TRUE(lease) << lease.error().message;
    return lease ? *lease : std::string();
  }

  void dropLease(const std::string& lease) {
    auto deleted = client_->deleteLease(lease, true);
    EXPECT_TRUE(deleted) << deleted.error().message;
  }

  std::string fileText(const std::string& name) { return readFile(tmp_ / name); }

  std::string ns_;
  std::unique_ptr<ContainerdClient> client_;
  fs::path tmp_;
};

TEST_F(ContainerdClientTest, Version) {
  auto version = client_->version();
  ASSERT_TRUE(version) << version.error().message;
  EXPECT_TRUE(version->starts_with("1.")) << *version;
}

TEST_F(ContainerdClientTest, ConnectToMissingSocketFailsClearly) {
  ContainerdOptions options;
  options.address = (tmp_ / "no.sock").string();
  options.ns = ns_;
  options.call_timeout = 1s;
  auto client = ContainerdClient::connect(options);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(client.error().message.find("connect to containerd at"), std::string::npos)
      << client.error().message;
}

TEST_F(ContainerdClientTest, LeasesCreateListDelete) {
  auto lease = client_->createLease({{"owner", "test"}}, 10min);
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_FALSE(lease->empty());
  auto listed = client_->listLeases();
  ASSERT_TRUE(listed);
  EXPECT_EQ(*listed, std::vector<std::string>{*lease});
  ASSERT_TRUE(client_->deleteLease(*lease, true));
  listed = client_->listLeases();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  auto again = client_->deleteLease(*lease, false);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound) << again.error().message;
}

TEST_F(ContainerdClientTest, WriteContentInChunksReadBackAndCollectWithLease) {
  const std::string lease = newLease();
  const std::string blob = randomBytes(3 * (1 << 20) + 12345, 1);  // > 1 MiB: several messages
  const Descriptor desc{
      "application/octet-stream", digestOf(blob), static_cast<int64_t>(blob.size()), {}};
  auto written =
      client_->writeContent(lease, "blob-1", desc, {{"origin", "test"}}, chunksOf(blob, 3 << 20));
  ASSERT_TRUE(written) << written.error().message;

  auto info = client_->contentInfo(desc.digest);
  ASSERT_TRUE(info) << info.error().message;
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->size, desc.size);
  EXPECT_EQ((*info)->labels.at("origin"), "test");
  EXPECT_EQ((*info)->labels.at(kLabelManagedBy), kManagedByValue);
  auto read = client_->readContent(desc.digest);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_TRUE(*read == blob);

  // Writing it again is a no-op success (containerd answers ALREADY_EXISTS), labels merged.
  written = client_->writeContent(lease, "blob-1-again", desc, {{"second", "yes"}},
                                  chunksOf(blob, 1 << 20));
  ASSERT_TRUE(written) << written.error().message;
  info = client_->contentInfo(desc.digest);
  ASSERT_TRUE(info && info->has_value());
  EXPECT_EQ((*info)->labels.at("origin"), "test");
  EXPECT_EQ((*info)->labels.at("second"), "yes");

  ASSERT_TRUE(client_->updateContentLabels(desc.digest, {{"origin", ""}, {"third", "3"}}));
  info = client_->contentInfo(desc.digest);
  ASSERT_TRUE(info && info->has_value());
  EXPECT_FALSE((*info)->labels.contains("origin"));
  EXPECT_EQ((*info)->labels.at("third"), "3");

  // Deleting the lease with a synchronous GC takes the unreferenced blob with it.
  dropLease(lease);
  info = client_->contentInfo(desc.digest);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->has_value());
}

TEST_F(ContainerdClientTest, WriteContentResumesAnInterruptedIngest) {
  const std::string lease = newLease();
  const std::string blob = randomBytes(2 * (1 << 20) + 777, 2);
  const Descriptor desc{
      "application/octet-stream", digestOf(blob), static_cast<int64_t>(blob.size()), {}};
  const size_t cut = 3 * (256 << 10);  // the source fails after 768 KiB

  // First attempt: the source fails part-way; the ingest stays for a retry.
  ChunkSource failing = [&, pos = size_t{0}]() mutable -> Result<std::string_view> {
    if (pos >= cut) return fail(ErrorCode::kUnavailable, "registry connection reset");
    auto piece = std::string_view(blob).substr(pos, 256 << 10);
    pos += piece.size();
    return piece;
  };
  auto written = client_->writeContent(lease, "resumable", desc, {}, failing);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(written.error().message.find("registry connection reset"), std::string::npos)
      << written.error().message;
  EXPECT_NE(written.error().message.find("write content resumable"), std::string::npos)
      << written.error().message;
  auto ingests = client_->listIngests();
  ASSERT_TRUE(ingests);
  ASSERT_EQ(ingests->size(), 1u);
  EXPECT_EQ(ingests->front().ref, "resumable");
  EXPECT_EQ(ingests->front().offset, static_cast<int64_t>(cut));

  // Second attempt: the bytes already written are garbage in this source. A client that resumes
  // skips them and commits the right digest; one that started over would fail the digest check.
  std::string resumed_source = blob;
  std::fill(resumed_source.begin(), resumed_source.begin() + cut, 'x');
  written =
      client_->writeContent(lease, "resumable", desc, {}, chunksOf(resumed_source, 300 << 10));
  ASSERT_TRUE(written) << written.error().message;
  auto read = client_->readContent(desc.digest);
  ASSERT_TRUE(read);
  EXPECT_TRUE(*read == blob);
  ingests = client_->listIngests();
  ASSERT_TRUE(ingests);
  EXPECT_TRUE(ingests->empty());

  // A source shorter than what an old ingest of the ref holds cannot be that blob: the ingest
  // is dropped so that the next attempt starts afresh.
  const std::string other = randomBytes(2 * (1 << 20), 5);
  const Descriptor other_desc{
      "application/octet-stream", digestOf(other), static_cast<int64_t>(other.size()), {}};
  ChunkSource cut_short = [&, pos = size_t{0}]() mutable -> Result<std::string_view> {
    if (pos >= cut) return fail(ErrorCode::kUnavailable, "reset again");
    auto piece = std::string_view(other).substr(pos, 256 << 10);
    pos += piece.size();
    return piece;
  };
  ASSERT_FALSE(client_->writeContent(lease, "short", other_desc, {}, cut_short));
  written =
      client_->writeContent(lease, "short", other_desc, {}, chunksOf(other.substr(0, 1000), 512));
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kDataLoss) << written.error().message;
  ingests = client_->listIngests();
  ASSERT_TRUE(ingests);
  EXPECT_TRUE(ingests->empty());
  dropLease(lease);
}

TEST_F(ContainerdClientTest, WriteContentWithWrongDigestIsDataLossAndLeavesNothing) {
  const std::string lease = newLease();
  const std::string blob = randomBytes(100000, 3);
  const std::string other = randomBytes(100000, 4);
  const Descriptor desc{
      "application/octet-stream", digestOf(other), static_cast<int64_t>(blob.size()), {}};
  auto written = client_->writeContent(lease, "bad-digest", desc, {}, chunksOf(blob, 65536));
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kDataLoss) << written.error().message;
  EXPECT_NE(written.error().message.find("unexpected commit digest"), std::string::npos)
      << written.error().message;

  // Wrong size too.
  const Descriptor short_desc{"application/octet-stream", digestOf(blob), 99999, {}};
  written = client_->writeContent(lease, "bad-size", short_desc, {}, chunksOf(blob, 65536));
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kDataLoss) << written.error().message;

  // A source that goes on past the expected size is stopped there.
  const std::string longer = blob + blob;
  written = client_->writeContent(lease, "too-long", Descriptor{"", digestOf(blob), 100000, {}}, {},
                                  chunksOf(longer, 4096));
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kDataLoss) << written.error().message;

  auto ingests = client_->listIngests();
  ASSERT_TRUE(ingests);
  EXPECT_TRUE(ingests->empty());
  auto content = client_->listContent();
  ASSERT_TRUE(content);
  EXPECT_TRUE(content->empty());
  dropLease(lease);
}

TEST_F(ContainerdClientTest, ApplyLayerOntoPreparedSnapshotAndCommit) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  auto info = client_->statSnapshot(chain_id);
  ASSERT_TRUE(info) << info.error().message;
  ASSERT_TRUE(info->has_value());
  EXPECT_EQ((*info)->kind, SnapshotInfo::Kind::kCommitted);
  EXPECT_EQ((*info)->labels.at(kLabelManagedBy), kManagedByValue);

  // A view on it shows the files; its mounts are what a task would get.
  auto mounts = client_->prepareSnapshot(lease, "probe", chain_id, {});
  ASSERT_TRUE(mounts) << mounts.error().message;
  ASSERT_FALSE(mounts->empty());
  auto again = client_->snapshotMounts("probe");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->size(), mounts->size());
  auto listed = client_->listSnapshots();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 2u);

  ASSERT_TRUE(client_->removeSnapshot("probe"));
  auto missing = client_->statSnapshot("probe");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  // The lease held the layer blob and the committed snapshot; a sync GC takes both.
  dropLease(lease);
}

TEST_F(ContainerdClientTest, ImagesCreateUpdateListDelete) {
  const std::string lease = newLease();
  const std::string manifest = R"({"schemaVersion":2})";
  const Descriptor desc{"application/vnd.oci.image.manifest.v1+json",
                        digestOf(manifest),
                        static_cast<int64_t>(manifest.size()),
                        {}};
  ASSERT_TRUE(client_->writeContent(lease, "manifest", desc, {}, chunksOf(manifest, 1024)));

  auto missing = client_->getImage("test/app:1");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());

  ImageRecord image{"test/app:1", desc, {{"v", "1"}}};
  auto created = client_->putImage(image);
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->target.digest, desc.digest);
  image.labels = {{"v", "2"}};
  auto updated = client_->putImage(image);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated->labels.at("v"), "2");
  auto got = client_->getImage("test/app:1");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->labels.at("v"), "2");
  EXPECT_EQ((*got)->target.media_type, desc.media_type);
  auto listed = client_->listImages();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);

  ASSERT_TRUE(client_->deleteImage("test/app:1", true));
  auto deleted_again = client_->deleteImage("test/app:1", true);
  ASSERT_FALSE(deleted_again);
  EXPECT_EQ(deleted_again.error().code, ErrorCode::kNotFound);
  dropLease(lease);
}

TEST_F(ContainerdClientTest, RunsAContainerAndReportsItsExitAndOutput) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());

  std::vector<TaskExit> seen;
  std::mutex seen_mutex;
  client_->events().onExit([&](const TaskExit& e) {
    std::lock_guard lock(seen_mutex);
    seen.push_back(e);
  });

  auto record =
      create("web-1", chain_id, {"sh", "-c", "echo hello; echo err >&2; exit 3"}, {{"task", "t1"}});
  EXPECT_EQ(record.snapshot_key, "web-1");
  EXPECT_EQ(record.snapshotter, "overlayfs");
  EXPECT_EQ(record.labels.at("task"), "t1");
  EXPECT_EQ(record.labels.at(kLabelManagedBy), kManagedByValue);
  auto snapshot = client_->statSnapshot("web-1");
  ASSERT_TRUE(snapshot && snapshot->has_value());
  EXPECT_EQ((*snapshot)->parent, chain_id);
  auto filtered = client_->listContainers({{"task", "t1"}});
  ASSERT_TRUE(filtered) << filtered.error().message;
  ASSERT_EQ(filtered->size(), 1u);
  filtered = client_->listContainers({{"task", "other"}});
  ASSERT_TRUE(filtered);
  EXPECT_TRUE(filtered->empty());

  const auto out = (tmp_ / "logs/out.log").string();
  const auto err = (tmp_ / "logs/err.log").string();
  auto pid = client_->startTask("web-1", out, err);
  ASSERT_TRUE(pid) << pid.error().message;
  EXPECT_GT(*pid, 0u);
  auto exit = client_->events().waitExit("web-1", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 3u);
  EXPECT_EQ(exit->container_id, "web-1");
  EXPECT_TRUE(exit->exec_id.empty());
  EXPECT_EQ(exit->pid, *pid);
  EXPECT_GT(exit->exited_at.time_since_epoch().count(), 0);

  EXPECT_TRUE(waitFor([&] { return fileText("logs/out.log") == "hello\n"; }, 5s,
                      "the shim to write out.log"))
      << fileText("logs/out.log");
  EXPECT_TRUE(
      waitFor([&] { return fileText("logs/err.log") == "err\n"; }, 5s, "the shim to write err.log"))
      << fileText("logs/err.log");
  EXPECT_TRUE(waitFor(
      [&] {
        std::lock_guard lock(seen_mutex);
        return seen.size() == 1 && seen[0].exit_status == 3;
      },
      5s, "the exit callback"))
      << [&] {
           std::lock_guard lock(seen_mutex);
           std::string s;
           for (const auto& e : seen)
             s += fmt::format("{} pid {} status {}; ", e.container_id, e.pid, e.exit_status);
           return s;
         }();

  auto task = client_->getTask("web-1");
  ASSERT_TRUE(task && task->has_value());
  EXPECT_EQ((*task)->status, TaskStatus::kStopped);
  EXPECT_EQ((*task)->exit_status, 3u);
  auto running = client_->deleteContainer("web-1");
  ASSERT_FALSE(running);  // it still has a task
  EXPECT_EQ(running.error().code, ErrorCode::kFailedPrecondition) << running.error().message;

  auto deleted = client_->deleteTask("web-1");
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(deleted->exit_status, 3u);
  ASSERT_TRUE(client_->deleteContainer("web-1"));
  auto gone = client_->statSnapshot("web-1");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
  ASSERT_TRUE(client_->deleteContainer("web-1"));  // again: nothing left, still fine
  dropLease(lease);
}

TEST_F(ContainerdClientTest, StdoutAndStderrToOneFileOrNowhere) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  create("both", chain_id, {"sh", "-c", "echo one; echo two >&2"});
  const auto log = (tmp_ / "both.log").string();
  ASSERT_TRUE(client_->startTask("both", log, log));
  auto exit = client_->events().waitExit("both", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 0u);
  // The shim copies the two pipes on their own; under load the second can lag the exit event.
  EXPECT_TRUE(waitFor(
      [&] {
        auto text = fileText("both.log");
        return text.find("one\n") != std::string::npos && text.find("two\n") != std::string::npos;
      },
      20s, "both lines in the log"))
      << fileText("both.log");
  removeContainer("both");

  create("quiet", chain_id, {"sh", "-c", "echo dropped; echo kept >&2"});
  const auto err = (tmp_ / "quiet.err").string();
  ASSERT_TRUE(client_->startTask("quiet", "", err));
  exit = client_->events().waitExit("quiet", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(
      waitFor([&] { return fileText("quiet.err") == "kept\n"; }, 5s, "the shim to write stderr"))
      << fileText("quiet.err");
  removeContainer("quiet");

  create("silent", chain_id, {"sh", "-c", "echo nowhere"});
  ASSERT_TRUE(client_->startTask("silent", "", ""));
  exit = client_->events().waitExit("silent", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 0u);
  removeContainer("silent");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, RuncRunsTheSpecAsBuilt) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());

  SpecInputs in;
  in.image.cmd = {"sh", "-c",
                  "grep CapEff /proc/self/status; hostname; id -u; id -g; pwd; echo $GREETING; "
                  "(echo x >/proc/sys/kernel/hostname) 2>/dev/null || echo proc-sys-read-only"};
  in.image.env = {"GREETING=image"};
  in.env = {"GREETING=definition"};
  in.working_dir = "/tmp";
  in.hostname = "spec-host";
  in.cgroups_path = "/" + ns_ + "/spec";
  auto spec = buildOciSpec(in);
  ASSERT_TRUE(spec) << spec.error().message;
  ContainerSpec container{"spec", "test/busybox", chain_id};
  container.oci_spec_json = *spec;
  ASSERT_TRUE(client_->createContainer(container));
  const auto out = (tmp_ / "spec.out").string();
  ASSERT_TRUE(client_->startTask("spec", out, out));
  auto exit = client_->events().waitExit("spec", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 0u) << fileText("spec.out");
  const std::string expected =
      "CapEff:\t00000000a80425fb\nspec-host\n0\n0\n/tmp\ndefinition\nproc-sys-read-only\n";
  EXPECT_TRUE(waitFor(
      [&] {
        auto text = fileText("spec.out");
        return text.find(expected) != std::string::npos;
      },
      5s, "the container's output"))
      << fileText("spec.out");
  removeContainer("spec");

  // A numeric user from the image config.
  in.image.user = "1000:1001";
  in.image.cmd = {"sh", "-c", "id -u; id -g"};
  spec = buildOciSpec(in);
  ASSERT_TRUE(spec);
  container.id = "user";
  container.oci_spec_json = *spec;
  ASSERT_TRUE(client_->createContainer(container));
  ASSERT_TRUE(client_->startTask("user", (tmp_ / "user.out").string(), ""));
  exit = client_->events().waitExit("user", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_TRUE(
      waitFor([&] { return fileText("user.out") == "1000\n1001\n"; }, 5s, "the container's output"))
      << fileText("user.out");
  removeContainer("user");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, KillDeliversSignals) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());

  // A process that handles SIGTERM exits 128+15. It says when its trap is set: a signal sent
  // before would find sh without a handler.
  create("trapper", chain_id, {"sh", "-c", "trap 'exit 143' TERM; echo trapped; sleep 100 & wait"});
  ASSERT_TRUE(client_->startTask("trapper", (tmp_ / "trapper.out").string(), ""));
  ASSERT_TRUE(
      waitFor([&] { return fileText("trapper.out") == "trapped\n"; }, 20s, "the trap to be set"))
      << fileText("trapper.out");
  ASSERT_TRUE(client_->killTask("trapper", SIGTERM));
  auto exit = client_->events().waitExit("trapper", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 143u);
  removeContainer("trapper");

  // A bare `sleep 100` is PID 1 of its namespace: with no handler, the kernel drops SIGTERM
  // (as `docker stop` shows by waiting out its timeout); SIGKILL ends it with 128+9.
  create("sleeper", chain_id, {"sleep", "100"});
  ASSERT_TRUE(client_->startTask("sleeper", "", ""));
  ASSERT_TRUE(client_->killTask("sleeper", SIGTERM));
  auto still = client_->events().waitExit("sleeper", 500ms);
  ASSERT_FALSE(still);
  EXPECT_EQ(still.error().code, ErrorCode::kUnavailable) << still.error().message;
  ASSERT_TRUE(client_->killTask("sleeper", SIGKILL, true));
  exit = client_->events().waitExit("sleeper", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);
  auto again = client_->killTask("sleeper", SIGKILL);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound) << again.error().message;
  removeContainer("sleeper");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, ExecRunsAProcessInARunningTask) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  create("app", chain_id, {"sleep", "100"});
  ASSERT_TRUE(client_->startTask("app", "", ""));

  SpecInputs inputs;
  inputs.entrypoint = {"sleep", "100"};
  inputs.env = {"GREETING=from-exec"};
  auto process = buildExecProcessSpec(inputs, {"sh", "-c", "echo $GREETING; exit 5"});
  ASSERT_TRUE(process) << process.error().message;
  const auto out = (tmp_ / "exec.out").string();
  auto pid = client_->execProcess("app", "check-1", *process, out, out);
  ASSERT_TRUE(pid) << pid.error().message;
  auto exit = client_->events().waitExecExit("app", "check-1", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 5u);
  EXPECT_EQ(exit->exec_id, "check-1");
  EXPECT_TRUE(
      waitFor([&] { return fileText("exec.out") == "from-exec\n"; }, 5s, "the exec's output"))
      << fileText("exec.out");

  // The exec's exit is not the task's.
  auto init = client_->events().waitExit("app", 300ms);
  ASSERT_FALSE(init);
  EXPECT_EQ(init.error().code, ErrorCode::kUnavailable);

  auto deleted = client_->deleteProcess("app", "check-1");
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(deleted->exit_status, 5u);

  // A hung check is killed on its own; the task lives on.
  auto hung = buildExecProcessSpec(inputs, {"sleep", "100"});
  ASSERT_TRUE(hung);
  ASSERT_TRUE(client_->execProcess("app", "check-2", *hung, "", ""));
  auto pending = client_->events().waitExecExit("app", "check-2", 200ms);
  ASSERT_FALSE(pending);
  EXPECT_EQ(pending.error().code, ErrorCode::kUnavailable);
  ASSERT_TRUE(client_->killProcess("app", "check-2", SIGKILL));
  exit = client_->events().waitExecExit("app", "check-2", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);
  ASSERT_TRUE(client_->deleteProcess("app", "check-2"));
  auto task = client_->getTask("app");
  ASSERT_TRUE(task && task->has_value());
  EXPECT_EQ((*task)->status, TaskStatus::kRunning);
  auto duplicate = client_->execProcess("app", "", *process, "", "");
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, ErrorCode::kInvalidArgument);

  ASSERT_TRUE(client_->killTask("app", SIGKILL));
  exit = client_->events().waitExit("app", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);
  removeContainer("app");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, OomEventsReachTheCallbacks) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  std::vector<std::string> ooms;
  std::mutex ooms_mutex;
  client_->events().onOom([&](const std::string& id) {
    std::lock_guard lock(ooms_mutex);
    ooms.push_back(id);
  });

  // The spec builder has no memory limits yet: add one by hand. The shell keeps the whole
  // output of the substitution in memory, far beyond the limit.
  auto spec = boost::json::parse(specFor("hog", {"sh", "-c", "x=$(yes | head -c 200000000)"}));
  spec.at("linux").at("resources").as_object()["memory"] =
      boost::json::object{{"limit", 16 << 20}, {"swap", 16 << 20}};
  ContainerSpec container{"hog", "test/busybox", chain_id};
  container.oci_spec_json = boost::json::serialize(spec);
  ASSERT_TRUE(client_->createContainer(container));
  ASSERT_TRUE(client_->startTask("hog", "", ""));
  auto exit = client_->events().waitExit("hog", 30s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);  // the OOM killer's SIGKILL
  EXPECT_TRUE(waitFor(
      [&] {
        std::lock_guard lock(ooms_mutex);
        return !ooms.empty() && ooms.front() == "hog";
      },
      5s, "the OOM event"));
  EXPECT_GE(client_->events().stats().ooms_received, 1u);
  removeContainer("hog");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, ExitBeforeWaitIsStillReported) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  create("quick", chain_id, {"sh", "-c", "exit 7"});
  ASSERT_TRUE(client_->startTask("quick", "", ""));
  ASSERT_TRUE(waitFor(
      [&] {
        auto task = client_->getTask("quick");
        return task && task->has_value() && (*task)->status == TaskStatus::kStopped;
      },
      5s, "the task to stop"));
  ASSERT_TRUE(waitFor([&] { return client_->events().stats().buffered_exits == 1; }, 5s,
                      "one buffered exit"));
  auto exit = client_->events().waitExit("quick", 1s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 7u);
  // Every waiter gets it until the task is deleted.
  exit = client_->events().waitExit("quick", 1s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 7u);
  removeContainer("quick");
  EXPECT_EQ(client_->events().stats().buffered_exits, 0u);
  auto none = client_->events().waitExit("quick", 1s);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound) << none.error().message;
  dropLease(lease);
}

TEST_F(ContainerdClientTest, WaitersSurviveABrokenEventStream) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  create("victim", chain_id, {"sleep", "100"});
  ASSERT_TRUE(client_->startTask("victim", "", ""));
  std::vector<TaskExit> seen;
  std::mutex seen_mutex;
  client_->events().onExit([&](const TaskExit& e) {
    std::lock_guard lock(seen_mutex);
    seen.push_back(e);
  });

  // The waiter must be waiting when the stream breaks. A short wait that times out shows the
  // monitor sees the task running; the long wait registers right after. The monitor does not
  // count its waiters, so that it registered before the kill below is near-certain rather than
  // observed; if it did not, it is answered from the stopped task and the checks still hold.
  std::promise<void> waiting;
  auto waiter = std::async(std::launch::async, [&] {
    auto early = client_->events().waitExit("victim", 1ms);
    EXPECT_FALSE(early);
    waiting.set_value();
    return client_->events().waitExit("victim", 30s);
  });
  ASSERT_EQ(waiting.get_future().wait_for(10s), std::future_status::ready);
  const auto before = client_->events().stats();
  client_->events().dropStreamForTesting(1500ms);
  ASSERT_TRUE(
      waitFor([&] { return client_->events().stats().stream_failures > before.stream_failures; },
              5s, "the event stream to break"));
  // The exit happens while no stream is live: no event will ever tell us.
  ASSERT_TRUE(client_->killTask("victim", SIGKILL));
  ASSERT_TRUE(waitFor(
      [&] {
        auto task = client_->getTask("victim");
        return task && task->has_value() && (*task)->status == TaskStatus::kStopped;
      },
      5s, "the task to stop"));
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  auto exit = waiter.get();
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 137u);
  const auto after = client_->events().stats();
  EXPECT_GT(after.subscriptions, before.subscriptions);
  EXPECT_GE(after.exits_synthesized, 1u);
  EXPECT_TRUE(waitFor(
      [&] {
        std::lock_guard lock(seen_mutex);
        return seen.size() == 1 && seen[0].exit_status == 137;
      },
      5s, "the exit callback"));
  removeContainer("victim");

  // And the new stream works.
  create("after", chain_id, {"sh", "-c", "exit 4"});
  ASSERT_TRUE(client_->startTask("after", "", ""));
  exit = client_->events().waitExit("after", 20s);
  ASSERT_TRUE(exit) << exit.error().message;
  EXPECT_EQ(exit->exit_status, 4u);
  removeContainer("after");
  dropLease(lease);
}

TEST_F(ContainerdClientTest, MissingParentSnapshotFailsClearlyAndLeavesNothing) {
  ContainerSpec spec;
  spec.id = "orphan";
  spec.image = "test/missing:1";
  spec.snapshot_parent = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  spec.oci_spec_json = specFor("orphan", {"true"});
  auto created = client_->createContainer(spec);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kNotFound) << created.error().message;
  EXPECT_TRUE(created.error().message.starts_with(
      "create container orphan: snapshot prepare on sha256:0000"))
      << created.error().message;
  auto record = client_->getContainer("orphan");
  ASSERT_TRUE(record);
  EXPECT_FALSE(record->has_value());

  auto no_container = client_->startTask("orphan", "", "");
  ASSERT_FALSE(no_container);
  EXPECT_EQ(no_container.error().code, ErrorCode::kNotFound) << no_container.error().message;
  auto no_image = client_->getImage("test/missing:1");
  ASSERT_TRUE(no_image);
  EXPECT_FALSE(no_image->has_value());
  auto no_task = client_->deleteTask("orphan");
  ASSERT_FALSE(no_task);
  EXPECT_EQ(no_task.error().code, ErrorCode::kNotFound) << no_task.error().message;
}

TEST_F(ContainerdClientTest, CreatingAnExistingContainerKeepsTheExistingOne) {
  const std::string lease = newLease();
  const std::string chain_id = importBusybox(lease);
  ASSERT_FALSE(chain_id.empty());
  create("dup", chain_id, {"true"});
  ContainerSpec spec;
  spec.id = "dup";
  spec.snapshot_parent = chain_id;
  spec.oci_spec_json = specFor("dup", {"true"});
  auto again = client_->createContainer(spec);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists) << again.error().message;
  auto snapshot = client_->statSnapshot("dup");
  ASSERT_TRUE(snapshot && snapshot->has_value());  // not removed by the failed create
  // Bad input is refused before containerd is asked.
  spec.id = "";
  auto invalid = client_->createContainer(spec);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, ErrorCode::kInvalidArgument);
  removeContainer("dup");
  dropLease(lease);
}

}  // namespace
}  // namespace ecs::runtime
