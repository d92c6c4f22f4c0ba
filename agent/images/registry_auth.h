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

// Looks up the credentials to use for an image. Implementations must be thread-safe.
class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  virtual std::optional<BasicCredentials> lookup(const ImageReference& image) const = 0;
};

// Credentials from ECS_ENGINE_AUTH_TYPE (`docker` | `dockercfg`) and ECS_ENGINE_AUTH_DATA, with the
// real agent's key matching (scheme stripped, longest host[/path] prefix wins, Docker Hub under
// "https://index.docker.io/v1/"). Unparseable data or an unknown type: a warning is logged and
// the provider holds no credentials (the agent carries on).
class EngineAuthProvider : public CredentialsProvider {
 public:
  // `warnings` receives one human-readable line per skipped entry or unparseable input.
  static std::unique_ptr<EngineAuthProvider> fromConfig(const std::string& auth_type,
                                                        const std::string& auth_data,
                                                        std::vector<std::string>* warnings);
  std::optional<BasicCredentials> lookup(const ImageReference& image) const override;

 private:
  struct Entry {
    std::string host;  // host[:port]
    std::string path;  // optional repository prefix
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
  static std::optional<AuthChallenge> parse(std::string_view header);
};

}  // namespace ecs::images
