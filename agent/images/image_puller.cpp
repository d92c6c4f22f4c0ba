#include "agent/images/image_puller.h"

#include <spdlog/spdlog.h>
#include <sys/utsname.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <random>
#include <thread>

#include "agent/images/digest.h"

namespace ecs::images {
namespace json = boost::json;
using runtime::Descriptor;
using runtime::Labels;

namespace {

constexpr const char* kMediaTypeDockerSchema1 =
    "application/vnd.docker.distribution.manifest.v1+json";
constexpr const char* kMediaTypeDockerSchema1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
// Upper bound for a manifest or image config kept in memory.
constexpr size_t kMaxConfigBytes = 32 << 20;
// Bytes a download may run ahead of the content store write.
constexpr size_t kPipeBufferBytes = 4 << 20;
// Bytes per content store Write message.
constexpr size_t kWriteBatchBytes = 1 << 20;
constexpr auto kPullLeaseExpiry = std::chrono::hours(24);
// How often a pull waiting for another's download asks its own PullControl whether to give up.
constexpr std::chrono::milliseconds kJoinPoll{100};

bool isIndex(std::string_view media_type) {
  return media_type == kMediaTypeOciIndex || media_type == kMediaTypeDockerList;
}

bool isManifest(std::string_view media_type) {
  return media_type == kMediaTypeOciManifest || media_type == kMediaTypeDockerManifest;
}

std::string randomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}", rng());
}

Result<json::value> parseJson(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec) return fail(ErrorCode::kInvalidArgument, "{} is not valid JSON: {}", what, ec.message());
  if (!value.is_object()) return fail(ErrorCode::kInvalidArgument, "{} is not a JSON object", what);
  return value;
}

std::string stringField(const json::object& object, std::string_view key) {
  auto* value = object.if_contains(key);
  return value && value->is_string() ? std::string(value->as_string()) : std::string();
}

Result<Descriptor> parseDescriptor(const json::value& value, std::string_view what) {
  if (!value.is_object()) return fail(ErrorCode::kInvalidArgument, "{}: not an object", what);
  const auto& object = value.as_object();
  Descriptor descriptor;
  descriptor.media_type = stringField(object, "mediaType");
  descriptor.digest = stringField(object, "digest");
  if (auto* size = object.if_contains("size"); size && size->is_number()) {
    descriptor.size = size->to_number<int64_t>();
  }
  if (!isSha256Digest(descriptor.digest)) {
    return fail(ErrorCode::kInvalidArgument, "{}: unsupported or malformed digest \"{}\"", what,
                descriptor.digest);
  }
  if (descriptor.size < 0) return fail(ErrorCode::kInvalidArgument, "{}: negative size", what);
  return descriptor;
}

struct ParsedManifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

Result<ParsedManifest> parseManifest(std::string_view body) {
  auto value = parseJson(body, "manifest");
  if (!value) return fail(value.error());
  const auto& object = value->as_object();
  auto* config = object.if_contains("config");
  auto* layers = object.if_contains("layers");
  if (!config || !layers || !layers->is_array()) {
    return fail(ErrorCode::kInvalidArgument, "manifest has no config or layers");
  }
  ParsedManifest parsed;
  auto config_descriptor = parseDescriptor(*config, "manifest config");
  if (!config_descriptor) return fail(config_descriptor.error());
  parsed.config = std::move(*config_descriptor);
  for (const auto& layer : layers->as_array()) {
    auto descriptor = parseDescriptor(layer, "manifest layer");
    if (!descriptor) return fail(descriptor.error());
    parsed.layers.push_back(std::move(*descriptor));
  }
  return parsed;
}

struct IndexEntry {
  Descriptor descriptor;
  Platform platform;
};

Result<std::vector<IndexEntry>> parseIndex(std::string_view body) {
  auto value = parseJson(body, "image index");
  if (!value) return fail(value.error());
  auto* manifests = value->as_object().if_contains("manifests");
  if (!manifests || !manifests->is_array()) {
    return fail(ErrorCode::kInvalidArgument, "image index has no manifests");
  }
  std::vector<IndexEntry> entries;
  for (const auto& item : manifests->as_array()) {
    auto descriptor = parseDescriptor(item, "index entry");
    if (!descriptor) return fail(descriptor.error());
    IndexEntry entry{std::move(*descriptor), Platform{"", "", ""}};
    if (auto* platform = item.as_object().if_contains("platform");
        platform && platform->is_object()) {
      entry.platform.os = stringField(platform->as_object(), "os");
      entry.platform.architecture = stringField(platform->as_object(), "architecture");
      entry.platform.variant = stringField(platform->as_object(), "variant");
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

// Whether an index entry's platform can run on `host`. arm64 images often omit the variant.
bool platformMatches(const Platform& entry, const Platform& host) {
  if (entry.os != host.os || entry.architecture != host.architecture) return false;
  return entry.variant.empty() || host.variant.empty() || entry.variant == host.variant;
}

Result<const IndexEntry*> selectPlatform(const std::vector<IndexEntry>& entries,
                                         const Platform& host) {
  const IndexEntry* best = nullptr;
  for (const auto& entry : entries) {
    if (!isManifest(entry.descriptor.media_type) && !isIndex(entry.descriptor.media_type)) continue;
    if (!platformMatches(entry.platform, host)) continue;
    // An exact variant match beats an entry that left the variant out.
    if (!best ||
        (entry.platform.variant == host.variant && best->platform.variant != host.variant)) {
      best = &entry;
    }
  }
  if (best) return best;
  std::string available;
  for (const auto& entry : entries) {
    available += (available.empty() ? "" : ", ") + entry.platform.str();
  }
  return fail(ErrorCode::kNotFound, "no manifest for platform {} (the index has: {})", host.str(),
              available.empty() ? "nothing" : available);
}

struct ParsedConfig {
  std::vector<std::string> diff_ids;
  Platform platform;
};

Result<ParsedConfig> parseConfig(std::string_view body) {
  auto value = parseJson(body, "image config");
  if (!value) return fail(value.error());
  const auto& object = value->as_object();
  ParsedConfig parsed;
  parsed.platform = Platform{stringField(object, "os"), stringField(object, "architecture"),
                             stringField(object, "variant")};
  auto* rootfs = object.if_contains("rootfs");
  auto* diff_ids =
      rootfs && rootfs->is_object() ? rootfs->as_object().if_contains("diff_ids") : nullptr;
  if (!diff_ids || !diff_ids->is_array()) {
    return fail(ErrorCode::kInvalidArgument, "image config has no rootfs.diff_ids");
  }
  for (const auto& id : diff_ids->as_array()) {
    if (!id.is_string() || !isSha256Digest(id.as_string())) {
      return fail(ErrorCode::kInvalidArgument, "image config has a malformed diff ID");
    }
    parsed.diff_ids.emplace_back(id.as_string());
  }
  return parsed;
}

// Carries a download (pushed by the HTTP client on one thread) into a content store write (pulled
// by the gRPC writer on another), holding at most kPipeBufferBytes in between. The writer stops at
// the first chunk after the pull's control says stop.
class BlobPipe {
 public:
  explicit BlobPipe(const PullControl& control) : control_(control) {}

  Result<void> push(std::string_view chunk) {
    std::unique_lock lock(mutex_);
    space_.wait(lock, [&] { return buffered_ < kPipeBufferBytes || reader_gone_; });
    if (reader_gone_) return fail(ErrorCode::kUnavailable, "content store write ended");
    buffered_ += chunk.size();
    chunks_.emplace_back(chunk);
    if (buffered_ >= kWriteBatchBytes) data_.notify_one();
    return {};
  }

  void close(Result<void> outcome) {
    std::lock_guard lock(mutex_);
    closed_ = true;
    if (!outcome) writer_error_ = outcome.error();
    data_.notify_one();
  }

  // Returns the next run of bytes, coalescing small network reads into messages of up to
  // kWriteBatchBytes (one gRPC Write message per 16 KiB read would cost more than the copy).
  Result<std::string_view> pop() {
    if (auto go = control_.check(); !go) return fail(go.error());
    std::unique_lock lock(mutex_);
    data_.wait(lock, [&] { return buffered_ >= kWriteBatchBytes || closed_; });
    current_.clear();
    while (!chunks_.empty() && current_.size() + chunks_.front().size() <= kWriteBatchBytes) {
      current_ += chunks_.front();
      buffered_ -= chunks_.front().size();
      chunks_.pop_front();
    }
    if (current_.empty() && !chunks_.empty()) {  // a single read larger than a batch
      current_ = std::move(chunks_.front());
      buffered_ -= current_.size();
      chunks_.pop_front();
    }
    space_.notify_one();
    if (!current_.empty()) return std::string_view(current_);
    if (writer_error_) return fail(*writer_error_);
    return std::string_view();
  }

  void stopReading() {
    std::lock_guard lock(mutex_);
    reader_gone_ = true;
    space_.notify_all();
  }

  std::optional<Error> downloadError() {
    std::lock_guard lock(mutex_);
    return writer_error_;
  }

 private:
  const PullControl& control_;
  std::mutex mutex_;
  std::condition_variable data_, space_;
  std::deque<std::string> chunks_;
  std::string current_;
  size_t buffered_ = 0;
  bool closed_ = false;
  bool reader_gone_ = false;
  std::optional<Error> writer_error_;
};

}  // namespace

Platform Platform::host() {
  utsname name{};
  uname(&name);
  std::string_view machine = name.machine;
  if (machine == "x86_64") return {"linux", "amd64", ""};
  if (machine == "aarch64" || machine == "arm64") return {"linux", "arm64", "v8"};
  if (machine.starts_with("armv7")) return {"linux", "arm", "v7"};
  if (machine.starts_with("armv6")) return {"linux", "arm", "v6"};
  if (machine == "i386" || machine == "i686") return {"linux", "386", ""};
  return {"linux", std::string(machine), ""};
}

std::string Platform::str() const {
  std::string out = fmt::format("{}/{}", os.empty() ? "unknown" : os,
                                architecture.empty() ? "unknown" : architecture);
  if (!variant.empty()) out += "/" + variant;
  return out;
}

std::vector<std::string> chainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> chains;
  chains.reserve(diff_ids.size());
  for (const auto& diff_id : diff_ids) {
    chains.push_back(chains.empty() ? diff_id : sha256Digest(chains.back() + " " + diff_id));
  }
  return chains;
}

struct ImagePuller::PullContext {
  const ImageReference& image;
  std::string lease;
  const PullControl& control;
  std::mutex mutex;  // guards stats: layers are fetched in parallel
  PullStats stats;
};

ImagePuller::ImagePuller(runtime::ContainerdClient& containerd, RegistryClient& registry,
                         PullerOptions options)
    : containerd_(containerd), registry_(registry), options_(std::move(options)) {}

Result<PullResult> ImagePuller::pull(const ImageReference& image, const PullControl& control) {
  const std::string what = fmt::format("pull {}", image.str());
  for (;;) {
    if (auto go = control.check(); !go) return fail(go.error().wrap(what));
    auto [shared, joined] = pulls_.run(
        image.str(),
        [&]() -> Result<SharedPull> {
          auto result = pullOnce(image, control);
          const bool stopped = !result && !control.check();
          return SharedPull{std::move(result), stopped};
        },
        [&] { return control.check(); }, kJoinPoll);
    if (!shared) return fail(shared.error().wrap(what));  // stopped waiting for another's pull
    if (!joined) return std::move(shared->result);
    if (shared->stopped) continue;  // its caller gave up on it, this one has not
    if (!shared->result) return std::move(shared->result);
    return PullResult{shared->result->image, PullStats{}, true};
  }
}

Result<PullResult> ImagePuller::pullOnce(const ImageReference& image, const PullControl& control) {
  const std::string what = fmt::format("pull {}", image.str());
  auto started = std::chrono::steady_clock::now();
  Labels lease_labels{{runtime::kLabelManagedBy, runtime::kManagedByValue}};
  auto lease = containerd_.createLease(
      lease_labels, std::chrono::duration_cast<std::chrono::seconds>(kPullLeaseExpiry));
  if (!lease) return fail(lease.error().wrap(what));
  PullContext ctx{image, *lease, control, {}, {}};

  auto pulled = [&]() -> Result<ResolvedImage> {
    auto target = fetchAndStoreManifest(ctx, image.manifestReference());
    if (!target) return fail(target.error());
    auto resolved = resolveFromStore(image.str(), *target, &ctx);
    if (!resolved) return resolved;
    if (auto go = control.check(); !go) return fail(go.error());
    runtime::ImageRecord record;
    record.name = image.str();
    record.target = *target;
    record.labels = options_.image_labels;
    record.labels[runtime::kLabelManagedBy] = runtime::kManagedByValue;
    if (auto put = containerd_.putImage(record); !put) return fail(put.error());
    return resolved;
  }();

  if (!pulled) {
    // Everything fetched or unpacked under the lease goes with it, synchronously, so a failed
    // pull leaves nothing behind.
    containerd_.deleteLeaseSurely(ctx.lease, /*sync_gc=*/true, what);
    // Whatever step noticed the deadline or the cancellation, the reason is the same.
    auto error = pulled.error();
    if (auto go = control.check(); !go) error = go.error();
    if (error.message.find(image.str()) == std::string::npos) error = error.wrap(what);
    return fail(error);
  }
  // The image record now holds the content and snapshots; the lease is no longer needed.
  containerd_.deleteLeaseSurely(ctx.lease, /*sync_gc=*/false, what);
  {
    std::lock_guard lock(ctx.mutex);
    spdlog::info(
        "pulled {} ({}) in {} ms: {} blobs fetched ({} bytes), {} present, {} layers "
        "unpacked, {} already unpacked",
        image.str(), pulled->manifest.digest,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                              started)
            .count(),
        ctx.stats.blobs_fetched, ctx.stats.bytes_fetched, ctx.stats.blobs_present,
        ctx.stats.layers_unpacked, ctx.stats.layers_already_unpacked);
    return PullResult{std::move(*pulled), ctx.stats, false};
  }
}

// Fetches the manifest (and, through an index, the host platform's manifest), then everything
// the manifest names, storing each in the content store under the pull's lease with the GC
// labels that tie parent to children. Returns the descriptor of the top-level object.
Result<Descriptor> ImagePuller::fetchAndStoreManifest(PullContext& ctx,
                                                      const std::string& reference) {
  auto top = registry_.fetchManifest(ctx.image, reference, ctx.control);
  if (!top) return fail(top.error());
  {
    std::lock_guard lock(ctx.mutex);
    ++ctx.stats.manifests_fetched;
  }
  const auto& media_type = top->descriptor.media_type;
  if (media_type == kMediaTypeDockerSchema1 || media_type == kMediaTypeDockerSchema1Signed) {
    return fail(ErrorCode::kInvalidArgument,
                "Docker schema 1 manifests are not supported (push the image again with a current "
                "client)");
  }

  Labels labels{{runtime::kLabelManagedBy, runtime::kManagedByValue}};
  if (isIndex(media_type)) {
    auto entries = parseIndex(top->body);
    if (!entries) return fail(entries.error());
    auto chosen = selectPlatform(*entries, options_.platform);
    if (!chosen) return fail(chosen.error());
    auto child = fetchAndStoreManifest(ctx, (*chosen)->descriptor.digest);
    if (!child) return fail(child.error());
    for (size_t i = 0; i < entries->size(); ++i) {
      if ((*entries)[i].descriptor.digest == child->digest) {
        labels[fmt::format("containerd.io/gc.ref.content.m.{}", i)] = child->digest;
      }
    }
  } else if (isManifest(media_type)) {
    auto manifest = parseManifest(top->body);
    if (!manifest) return fail(manifest.error());
    // The config is small and names the layers' diff IDs, which label the layers and the config.
    auto config_body = fetchConfig(ctx, manifest->config);
    if (!config_body) return fail(config_body.error());
    auto config = parseConfig(*config_body);
    if (!config) return fail(config.error());
    if (config->diff_ids.size() != manifest->layers.size()) {
      return fail(ErrorCode::kInvalidArgument,
                  "manifest {} has {} layers but its config names {} diff IDs",
                  top->descriptor.digest, manifest->layers.size(), config->diff_ids.size());
    }
    auto chains = chainIds(config->diff_ids);
    Labels config_labels{{runtime::kLabelManagedBy, runtime::kManagedByValue}};
    // Containerd's GC keeps the unpacked rootfs while the config (and so the image) lives.
    if (!chains.empty()) {
      config_labels["containerd.io/gc.ref.snapshot." + options_.snapshotter] = chains.back();
    }
    auto stored = storeContent(ctx, "config-" + manifest->config.digest, manifest->config,
                               config_labels, *config_body);
    if (!stored) return fail(stored.error().wrap("store image config " + manifest->config.digest));

    std::vector<Descriptor> layers = manifest->layers;
    for (size_t i = 0; i < layers.size(); ++i) {
      layers[i].annotations["containerd.io/uncompressed"] = config->diff_ids[i];
    }
    if (auto fetched_layers = fetchLayers(ctx, layers); !fetched_layers) {
      return fail(fetched_layers.error());
    }
    labels["containerd.io/gc.ref.content.config"] = manifest->config.digest;
    for (size_t i = 0; i < layers.size(); ++i) {
      labels[fmt::format("containerd.io/gc.ref.content.l.{}", i)] = layers[i].digest;
    }
  } else {
    return fail(ErrorCode::kInvalidArgument, "unsupported manifest media type \"{}\"", media_type);
  }

  auto stored =
      storeContent(ctx, "manifest-" + top->descriptor.digest, top->descriptor, labels, top->body);
  if (!stored) return fail(stored.error().wrap("store manifest " + top->descriptor.digest));
  return top->descriptor;
}

// The image config: from the content store when present, else from the registry, verified.
Result<std::string> ImagePuller::fetchConfig(PullContext& ctx, const Descriptor& config) {
  auto existing = containerd_.contentInfo(config.digest);
  if (!existing) return fail(existing.error());
  if (*existing) {
    // storeContent, which follows, holds it under the pull's lease.
    auto body = containerd_.readContent(config.digest);
    if (body) {
      std::lock_guard lock(ctx.mutex);
      ++ctx.stats.blobs_present;
      return body;
    }
  }
  std::string body;
  auto fetched = registry_.fetchBlob(
      ctx.image, config, 0,
      [&](std::string_view chunk) -> Result<void> {
        if (body.size() + chunk.size() > kMaxConfigBytes) {
          return fail(ErrorCode::kInvalidArgument, "image config larger than {} bytes",
                      kMaxConfigBytes);
        }
        body.append(chunk);
        return {};
      },
      ctx.control);
  if (!fetched) return fail(fetched.error());
  ++total_blob_fetches_;
  if (static_cast<int64_t>(body.size()) != config.size || sha256Digest(body) != config.digest) {
    return fail(ErrorCode::kDataLoss, "image config {} from registry {}: digest or size mismatch",
                config.digest, ctx.image.registryHost());
  }
  std::lock_guard lock(ctx.mutex);
  ++ctx.stats.blobs_fetched;
  ctx.stats.bytes_fetched += static_cast<int64_t>(body.size());
  return body;
}

// Writes a small in-memory blob (manifest, index, config) to the content store under the lease,
// unless it is there already. The ingest ref is unique so that concurrent pulls of two names for
// one manifest do not lock each other out; the second commit finds the blob and succeeds.
Result<void> ImagePuller::storeContent(PullContext& ctx, const std::string& ref,
                                       const Descriptor& descriptor, const Labels& labels,
                                       std::string_view body) {
  if (auto go = ctx.control.check(); !go) return fail(go.error());
  auto existing = containerd_.contentInfo(descriptor.digest);
  if (!existing) return fail(existing.error());
  if (*existing) return containerd_.addLeaseResource(ctx.lease, descriptor.digest, "content");
  bool sent = false;
  const std::string unique_ref = ref + "-" + randomSuffix();
  auto written = containerd_.writeContent(ctx.lease, unique_ref, descriptor, labels,
                                          [&]() -> Result<std::string_view> {
                                            if (sent) return std::string_view();
                                            sent = true;
                                            return body;
                                          });
  if (!written) {
    // The pull fails with `written`'s error either way; a stuck ingest only blocks a retry of
    // the same ref, which the random suffix already avoids.
    if (auto aborted = containerd_.abortIngest(unique_ref); !aborted) {
      spdlog::warn("abort ingest {}: {}", unique_ref, aborted.error().message);
    }
  }
  return written;
}

Result<void> ImagePuller::fetchLayers(PullContext& ctx, const std::vector<Descriptor>& layers) {
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  auto worker = [&] {
    for (size_t i = next++; i < layers.size(); i = next++) {
      {
        std::lock_guard lock(error_mutex);
        if (first_error) return;
        if (auto go = ctx.control.check(); !go) {
          first_error = go.error();
          return;
        }
      }
      const auto& layer = layers[i];
      Labels labels{
          {runtime::kLabelManagedBy, runtime::kManagedByValue},
          {"containerd.io/uncompressed", layer.annotations.at("containerd.io/uncompressed")},
          {"containerd.io/distribution.source." + ctx.image.domain, ctx.image.repository}};
      if (auto fetched = fetchBlob(ctx, layer, labels); !fetched) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = fetched.error();
        return;
      }
    }
  };
  const size_t workers =
      std::min<size_t>(layers.size(), std::max(1, options_.max_concurrent_downloads));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(worker);
  worker();
  for (auto& thread : threads) thread.join();
  if (first_error) return fail(*first_error);
  return {};
}

// One download per digest at a time across all pulls: a second pull that needs a layer being
// fetched waits for it, then holds it with its own lease.
Result<void> ImagePuller::fetchBlob(PullContext& ctx, const Descriptor& blob,
                                    const Labels& labels) {
  auto [result, joined] = blobs_.run(
      blob.digest, [&] { return fetchBlobOnce(ctx, blob, labels); },
      [&] { return ctx.control.check(); }, kJoinPoll);
  if (!joined) return std::move(result);
  if (auto go = ctx.control.check(); !go) return fail(go.error());
  // Another pull fetched it: hold it with this pull's lease. If that pull failed, this one tries
  // for itself.
  if (result) {
    if (auto held = containerd_.addLeaseResource(ctx.lease, blob.digest, "content"); held) {
      std::lock_guard lock(ctx.mutex);
      ++ctx.stats.blobs_present;
      return {};
    }
  }
  return fetchBlobOnce(ctx, blob, labels);
}

Result<void> ImagePuller::fetchBlobOnce(PullContext& ctx, const Descriptor& blob,
                                        const Labels& labels) {
  auto info = containerd_.contentInfo(blob.digest);
  if (!info) return fail(info.error());
  if (*info) {
    // Already here (another image shares the layer): hold it under our lease, no download.
    if (auto held = containerd_.addLeaseResource(ctx.lease, blob.digest, "content"); !held) {
      return fail(held.error());
    }
    if (auto labelled = containerd_.updateContentLabels(blob.digest, labels); !labelled) {
      return fail(labelled.error());
    }
    std::lock_guard lock(ctx.mutex);
    ++ctx.stats.blobs_present;
    return {};
  }

  const std::string ref = "layer-" + blob.digest;
  BlobPipe pipe(ctx.control);
  int64_t received = 0;
  std::thread download([&] {
    pipe.close(registry_.fetchBlob(
        ctx.image, blob, 0,
        [&](std::string_view chunk) {
          received += static_cast<int64_t>(chunk.size());
          return pipe.push(chunk);
        },
        ctx.control));
  });
  auto written = containerd_.writeContent(ctx.lease, ref, blob, labels, [&] { return pipe.pop(); });
  pipe.stopReading();
  download.join();
  ++total_blob_fetches_;

  if (!written) {
    if (auto aborted = containerd_.abortIngest(ref);
        !aborted && aborted.error().code != ErrorCode::kNotFound) {
      spdlog::warn("abort ingest {}: {}", ref, aborted.error().message);
    }
    // A download failure explains a failed write better than the write's own error.
    if (auto download_error = pipe.downloadError()) return fail(*download_error);
    return fail(written.error().wrap(
        fmt::format("layer {} from registry {}", blob.digest, ctx.image.registryHost())));
  }
  std::lock_guard lock(ctx.mutex);
  ++ctx.stats.blobs_fetched;
  ctx.stats.bytes_fetched += received;
  return {};
}

// Applies the layers bottom-up into committed snapshots named by chain ID, skipping those that
// exist. Returns the top chain ID.
Result<std::string> ImagePuller::unpack(PullContext& ctx, const std::vector<Descriptor>& layers,
                                        const std::vector<std::string>& diff_ids) {
  auto chains = chainIds(diff_ids);
  const std::string snapshot_type = "snapshots/" + options_.snapshotter;
  Labels labels{{runtime::kLabelManagedBy, runtime::kManagedByValue}};
  // The pull fails with its own error either way; the active snapshot is also held by the pull's
  // lease, so one that cannot be removed now goes when the lease does.
  auto removeActiveSnapshot = [&](const std::string& key) {
    if (auto removed = containerd_.removeSnapshot(key, options_.snapshotter); !removed) {
      spdlog::warn("remove snapshot {}: {}", key, removed.error().message);
    }
  };
  for (size_t i = 0; i < layers.size(); ++i) {
    if (auto go = ctx.control.check(); !go) return fail(go.error());
    auto existing = containerd_.statSnapshot(chains[i], options_.snapshotter);
    if (!existing) return fail(existing.error());
    if (*existing && (*existing)->kind == runtime::SnapshotInfo::Kind::kCommitted) {
      if (auto held = containerd_.addLeaseResource(ctx.lease, chains[i], snapshot_type); !held) {
        return fail(held.error());
      }
      std::lock_guard lock(ctx.mutex);
      ++ctx.stats.layers_already_unpacked;
      continue;
    }
    const std::string key = fmt::format("extract-{}-{}", randomSuffix(), chains[i]);
    const std::string parent = i == 0 ? std::string() : chains[i - 1];
    auto mounts = containerd_.prepareSnapshot(ctx.lease, key, parent, labels, options_.snapshotter);
    if (!mounts) return fail(mounts.error().wrap("unpack layer " + layers[i].digest));
    auto applied = containerd_.applyLayer(layers[i], *mounts);
    if (!applied || applied->digest != diff_ids[i]) {
      removeActiveSnapshot(key);
      if (!applied) return fail(applied.error().wrap("unpack layer " + layers[i].digest));
      return fail(ErrorCode::kDataLoss,
                  "unpack layer {}: uncompressed digest {} does not match "
                  "the config's diff ID {}",
                  layers[i].digest, applied->digest, diff_ids[i]);
    }
    auto committed =
        containerd_.commitSnapshot(ctx.lease, chains[i], key, labels, options_.snapshotter);
    if (!committed) {
      removeActiveSnapshot(key);
      // Another pull of an image sharing this layer committed it first: use theirs.
      if (committed.error().code != ErrorCode::kAlreadyExists) {
        return fail(committed.error().wrap("unpack layer " + layers[i].digest));
      }
      if (auto held = containerd_.addLeaseResource(ctx.lease, chains[i], snapshot_type); !held) {
        return fail(held.error());
      }
    }
    std::lock_guard lock(ctx.mutex);
    ++ctx.stats.layers_unpacked;
  }
  return chains.empty() ? std::string() : chains.back();
}

Result<ResolvedImage> ImagePuller::resolveFromStore(const std::string& name,
                                                    const Descriptor& target,
                                                    PullContext* unpack_ctx) {
  ResolvedImage resolved;
  resolved.name = name;
  resolved.target = target;
  Descriptor current = target;
  for (int depth = 0; isIndex(current.media_type); ++depth) {
    if (depth > 3) return fail(ErrorCode::kInvalidArgument, "image index nested too deeply");
    auto body = containerd_.readContent(current.digest);
    if (!body) return fail(body.error().wrap("read image index " + current.digest));
    auto entries = parseIndex(*body);
    if (!entries) return fail(entries.error());
    auto chosen = selectPlatform(*entries, options_.platform);
    if (!chosen) return fail(chosen.error());
    current = (*chosen)->descriptor;
  }
  if (!isManifest(current.media_type)) {
    return fail(ErrorCode::kInvalidArgument, "unsupported manifest media type \"{}\"",
                current.media_type);
  }
  resolved.manifest = current;
  auto manifest_body = containerd_.readContent(current.digest);
  if (!manifest_body) return fail(manifest_body.error().wrap("read manifest " + current.digest));
  auto manifest = parseManifest(*manifest_body);
  if (!manifest) return fail(manifest.error());
  resolved.config = manifest->config;
  auto config_body = containerd_.readContent(manifest->config.digest);
  if (!config_body) return fail(config_body.error().wrap("read image config"));
  auto config = parseConfig(*config_body);
  if (!config) return fail(config.error());
  if (config->diff_ids.size() != manifest->layers.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "manifest {} has {} layers but its config names {} diff IDs", current.digest,
                manifest->layers.size(), config->diff_ids.size());
  }
  resolved.config_json = std::move(*config_body);
  resolved.diff_ids = config->diff_ids;
  auto chains = chainIds(resolved.diff_ids);
  resolved.chain_id = chains.empty() ? std::string() : chains.back();
  if (resolved.chain_id.empty()) return resolved;

  auto top = containerd_.statSnapshot(resolved.chain_id, options_.snapshotter);
  if (!top) return fail(top.error());
  if (*top) return resolved;
  if (!unpack_ctx) return fail(ErrorCode::kNotFound, "image {} is not unpacked", name);
  auto unpacked = unpack(*unpack_ctx, manifest->layers, resolved.diff_ids);
  if (!unpacked) return fail(unpacked.error());
  return resolved;
}

Result<ResolvedImage> ImagePuller::resolveLocal(const ImageReference& image) {
  auto record = containerd_.getImage(image.str());
  if (!record) return fail(record.error().wrap("look up image " + image.str()));
  if (!*record) {
    return fail(ErrorCode::kNotFound, "image {} is not present locally", image.str());
  }
  auto resolved = resolveFromStore(image.str(), (*record)->target, nullptr);
  if (resolved || resolved.error().code != ErrorCode::kNotFound) return resolved;

  // The record and content are here but the rootfs snapshots were removed: unpack again.
  auto lease = containerd_.createLease({{runtime::kLabelManagedBy, runtime::kManagedByValue}},
                                       std::chrono::hours(1));
  if (!lease) return fail(lease.error());
  const PullControl unbounded;
  PullContext ctx{image, *lease, unbounded, {}, {}};
  resolved = resolveFromStore(image.str(), (*record)->target, &ctx);
  containerd_.deleteLeaseSurely(*lease, !resolved, "resolve " + image.str());
  return resolved;
}

Result<void> ImagePuller::remove(const ImageReference& image) {
  auto removed = containerd_.deleteImage(image.str(), /*sync_gc=*/true);
  if (!removed) return fail(removed.error().wrap("remove image " + image.str()));
  return {};
}

Result<std::vector<runtime::ImageRecord>> ImagePuller::list() {
  return containerd_.listImages();
}

}  // namespace ecs::images
