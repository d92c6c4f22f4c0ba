// Registry credentials: where they come from (ECS_ENGINE_AUTH_TYPE / ECS_ENGINE_AUTH_DATA, as the
// real agent reads them) and how a registry asks for them (Basic, or the Bearer token flow).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/images/image_reference.h"

namespace ecs::images {

struct BasicCredentials {
  std::string username;
  std::string password;
};

// "Basic <base64 of user:password>", the Authorization header value for Basic auth.
std::string basicAuthorization(const BasicCredentials& credentials);

// Looks up the credentials to use for an image. Implementations must be thread-safe.
class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  virtual std::optional<BasicCredentials> lookup(const ImageReference& image) const = 0;
};

// Credentials from ECS_ENGINE_AUTH_TYPE (`docker` | `dockercfg`) and ECS_ENGINE_AUTH_DATA, with the
// real agent's key matching (scheme stripped, longest host[/path] prefix wins, Docker Hub under
// "https://index.docker.io/v1/"). Unparseable data or an unknown type: a warning is logged and
// the provider holds no credentials (the agent carries on). Entries that cannot be used (bad
// base64, no ':', no username) are skipped with a warning each.
//
// Matching: the host (with port) must be equal, case-insensitively; a key's path must be a whole
// leading part of the repository ("team" matches "team/app", not "teamster/app"). Docker Hub is
// one registry whatever it is called, in keys and in images: docker.io, index.docker.io,
// registry-1.docker.io (the "/v1/" of the legacy key names no repository).
class EngineAuthProvider : public CredentialsProvider {
 public:
  // `warnings` receives one human-readable line per skipped entry or unparseable input (never
  // a credential); when it is null the lines go to the log instead.
  static std::unique_ptr<EngineAuthProvider> fromConfig(const std::string& auth_type,
                                                        const std::string& auth_data,
                                                        std::vector<std::string>* warnings);
  std::optional<BasicCredentials> lookup(const ImageReference& image) const override;

 private:
  struct Entry {
    std::string host;  // lower-cased host[:port]; "docker.io" for Docker Hub
    std::string path;  // optional repository prefix, without slashes at either end
    BasicCredentials credentials;
  };
  std::vector<Entry> entries_;
};

// A parsed WWW-Authenticate challenge.
struct AuthChallenge {
  std::string scheme;  // "basic" or "bearer" (lower-cased)
  std::string realm;
  std::string service;
  std::string scope;
  std::string error;  // e.g. "insufficient_scope" on a Bearer challenge to a token that lacks it
  // nullopt when there is no scheme or a quoted value is not closed.
  static std::optional<AuthChallenge> parse(std::string_view header);
};

}  // namespace ecs::images
