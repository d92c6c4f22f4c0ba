// RegistryClient: the Docker Registry HTTP API v2 over the agent's HttpClient.
//
// Sends both OCI and Docker Accept types for manifests, follows redirects for blobs, answers
// 401 challenges (Basic, or Bearer: fetch a token from the realm for service+scope, cache it
// per registry+scope), and uses HTTPS except for loopback registries and those listed in
// ECS_INSECURE_REGISTRIES (plain HTTP, as Docker does). Every request stops at its PullControl's
// deadline or cancellation. Thread-safe: one instance serves all pulls.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/images/digest.h"
#include "agent/images/image_reference.h"
#include "agent/images/pull_control.h"
#include "agent/images/registry_auth.h"
#include "agent/runtime/types.h"

namespace ecs::images {

// Media types we accept, in the order of the Accept header.
inline constexpr const char* kMediaTypeOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kMediaTypeOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kMediaTypeDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kMediaTypeDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";

struct RegistryOptions {
  std::vector<std::string> insecure_registries;            // host[:port] served over plain HTTP
  std::shared_ptr<const CredentialsProvider> credentials;  // may be null: anonymous
  std::chrono::seconds connect_timeout{30};
  // A transfer making no progress for this long is aborted (ECS_IMAGE_PULL_INACTIVITY_TIMEOUT).
  std::chrono::seconds inactivity_timeout{60};
  std::string user_agent = "ecs-node-agent";
};

struct FetchedManifest {
  runtime::Descriptor descriptor;  // media type from Content-Type, digest verified, size
  std::string body;
};

// Receives blob bytes as they arrive; an error aborts the transfer.
using BlobSink = std::function<Result<void>(std::string_view chunk)>;

// RFC 3986 percent-encoding of everything but unreserved characters, for query parameters
// ("repository:team/app:pull" -> "repository%3Ateam%2Fapp%3Apull").
std::string percentEncode(std::string_view text);

class RegistryClient {
 public:
  explicit RegistryClient(RegistryOptions options);
  ~RegistryClient();

  // GET /v2/<repo>/manifests/<reference> where reference is a tag or digest. When the reference
  // is a digest, the body is verified against it; otherwise the digest is computed from the
  // body (and checked against Docker-Content-Digest when the registry sends one).
  // Errors: kNotFound (unknown repository/tag), kUnauthorized (401/403 after auth),
  // kUnavailable (network, 5xx, 429), kDataLoss (digest mismatch), kInvalidArgument (a reference
  // that is neither tag nor digest), kFailedPrecondition (a media type other than the four
  // above, e.g. schema 1; a body over 4 MiB); messages name the image and registry. A request
  // stopped by `control` is kUnavailable.
  Result<FetchedManifest> fetchManifest(const ImageReference& image, const std::string& reference,
                                        const PullControl& control = {});

  // GET /v2/<repo>/blobs/<digest>, streaming into `sink` starting at `offset` (Range request,
  // for resuming; if the server ignores Range the first `offset` bytes are skipped here).
  // Redirects are followed; Authorization goes only to the registry's own origin. Does not
  // verify the digest itself: the content store does. When blob.size is known, fewer bytes
  // are kUnavailable and more are kDataLoss. A sink's error comes back unchanged but for
  // context; a truncated or stalled transfer (no byte for inactivity_timeout) is kUnavailable.
  Result<void> fetchBlob(const ImageReference& image, const runtime::Descriptor& blob,
                         int64_t offset, const BlobSink& sink, const PullControl& control = {});

  // Scheme + host the client talks to for this image, e.g. "http://127.0.0.1:5000".
  std::string baseUrl(const ImageReference& image) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::images
