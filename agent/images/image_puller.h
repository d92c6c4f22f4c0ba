// ImagePuller: pulls an image from a registry into containerd the way containerd's own client
// does — registry → content store (digest-verified, under a lease, with GC labels) → unpack
// through the Diff and Snapshots services → image record — and resolves pulled images for the
// engine (config, chain ID of the rootfs).
//
// Concurrent pulls of one image share one download; a layer being fetched for one image is not
// fetched again for another; layers already in the content store are not fetched at all. A pull
// that fails leaves no partial content, ingests or snapshots behind (its lease is deleted with a
// synchronous GC and its ingests aborted). That includes a pull stopped by its PullControl: every
// registry request gives up at the deadline or on cancellation, and content writes and unpacking
// check between chunks and layers.
#pragma once

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/common/single_flight.h"
#include "agent/images/image_reference.h"
#include "agent/images/pull_control.h"
#include "agent/images/registry_client.h"
#include "agent/runtime/containerd_client.h"
#include "agent/runtime/types.h"

namespace ecs::images {

struct Platform {
  std::string os = "linux";
  std::string architecture;  // GOARCH names: amd64, arm64, ...
  std::string variant;       // arm: v6/v7/v8; usually empty
  static Platform host();
  std::string str() const;  // "linux/amd64", "linux/arm64/v8"
};

// A pulled (or already present) image, resolved for the host platform.
struct ResolvedImage {
  std::string name;              // containerd image record name (normalised reference)
  runtime::Descriptor target;    // what the record points at: index or manifest
  runtime::Descriptor manifest;  // the host platform's manifest
  runtime::Descriptor config;
  std::string config_json;  // the OCI/Docker image config, verbatim
  std::vector<std::string> diff_ids;
  std::string chain_id;  // snapshot name of the unpacked rootfs (parent for containers)
};

struct PullStats {
  int manifests_fetched = 0;
  int blobs_fetched = 0;  // config + layers downloaded in this pull
  int blobs_present = 0;  // found in the content store, not downloaded
  int64_t bytes_fetched = 0;
  int layers_unpacked = 0;
  int layers_already_unpacked = 0;
};

struct PullResult {
  ResolvedImage image;
  PullStats stats;
  bool shared = false;  // joined a pull of the same image already in flight
};

struct PullerOptions {
  Platform platform = Platform::host();
  std::string snapshotter = "overlayfs";
  int max_concurrent_downloads = 3;  // per image, as containerd's client
  runtime::Labels image_labels;      // added to every image record we create
};

class ImagePuller {
 public:
  ImagePuller(runtime::ContainerdClient& containerd, RegistryClient& registry,
              PullerOptions options = {});

  // Pulls `image` and records it under image.str(). Errors name the image, the registry and the
  // cause ("pull 127.0.0.1:5000/app:1 from registry 127.0.0.1:5000: …"). Past `control`'s deadline
  // the pull fails with kUnavailable "pull <image>: pull deadline passed", once cancelled with
  // "pull <image>: pull cancelled", and leaves nothing behind. A pull that joins one of the same
  // image already in flight waits under its own control; if that one was stopped by its caller,
  // this one pulls for itself.
  Result<PullResult> pull(const ImageReference& image, const PullControl& control = {});

  // Resolves an image already in containerd (no registry access); kNotFound if absent. Unpacks
  // again if its content is present but the snapshots were removed.
  Result<ResolvedImage> resolveLocal(const ImageReference& image);

  // Removes the image record; content and snapshots are collected when nothing else uses them.
  Result<void> remove(const ImageReference& image);

  Result<std::vector<runtime::ImageRecord>> list();

  // Totals over the puller's life (for metrics and tests).
  int64_t totalBlobFetches() const { return total_blob_fetches_.load(); }

 private:
  struct PullContext;
  // A pull's outcome as the pulls that joined it see it.
  struct SharedPull {
    Result<PullResult> result;
    bool stopped = false;  // by its own caller's PullControl: the others should not give up
  };

  Result<PullResult> pullOnce(const ImageReference& image, const PullControl& control);
  Result<runtime::Descriptor> fetchAndStoreManifest(PullContext& ctx, const std::string& reference);
  Result<void> fetchBlob(PullContext& ctx, const runtime::Descriptor& blob,
                         const runtime::Labels& labels);
  Result<void> fetchBlobOnce(PullContext& ctx, const runtime::Descriptor& blob,
                             const runtime::Labels& labels);
  Result<std::string> fetchConfig(PullContext& ctx, const runtime::Descriptor& config);
  Result<void> storeContent(PullContext& ctx, const std::string& ref,
                            const runtime::Descriptor& descriptor, const runtime::Labels& labels,
                            std::string_view body);
  Result<void> fetchLayers(PullContext& ctx, const std::vector<runtime::Descriptor>& layers);
  Result<std::string> unpack(PullContext& ctx, const std::vector<runtime::Descriptor>& layers,
                             const std::vector<std::string>& diff_ids);
  // Reads the image's manifest and config from the content store. A missing rootfs snapshot is
  // unpacked under `unpack_ctx`'s lease, or kNotFound when there is none.
  Result<ResolvedImage> resolveFromStore(const std::string& name, const runtime::Descriptor& target,
                                         PullContext* unpack_ctx);

  runtime::ContainerdClient& containerd_;
  RegistryClient& registry_;
  PullerOptions options_;

  SingleFlight<SharedPull> pulls_;  // keyed by image name
  SingleFlight<void> blobs_;        // keyed by digest, across all pulls
  std::atomic<int64_t> total_blob_fetches_{0};
};

// Chain IDs as the OCI image spec defines them: chain(0) = diff(0),
// chain(n) = sha256(chain(n-1) + " " + diff(n)).
std::vector<std::string> chainIds(const std::vector<std::string>& diff_ids);

}  // namespace ecs::images
