// ImageReference: an image name parsed the way Docker parses it.
//   "busybox"                       -> docker.io/library/busybox:latest
//   "127.0.0.1:5000/app:1"          -> registry 127.0.0.1:5000, repository app, tag 1
//   "repo@sha256:<64 hex>"          -> by digest (a tag, if also given, is kept for display)
#pragma once

#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace ecs::images {

struct ImageReference {
  std::string domain;      // "docker.io", "127.0.0.1:5000", "123.dkr.ecr.us-east-1.amazonaws.com"
  std::string repository;  // "library/busybox", "team/app"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:..." or empty

  // Parses and normalises; kInvalidArgument naming the fault for malformed input.
  static Result<ImageReference> parse(std::string_view text);

  // Full normalised name: "docker.io/library/busybox:latest", "host/repo@sha256:…",
  // "host/repo:tag@sha256:…" when both are set. Used as the containerd image record name.
  std::string str() const;
  // "domain/repository" without tag or digest.
  std::string name() const;
  // Tag or digest to ask the registry's manifest endpoint for (digest wins).
  std::string manifestReference() const;
  // Host the registry API lives on: docker.io -> registry-1.docker.io; otherwise the domain.
  std::string registryHost() const;
  bool isDockerHub() const;
};

// Checks an OCI digest: "sha256:" + 64 lowercase hex (sha384: 96, sha512: 128); kInvalidArgument
// naming the fault otherwise. For digests read from manifests, before they become URLs or paths.
Result<void> validateDigest(std::string_view digest);

}  // namespace ecs::images
