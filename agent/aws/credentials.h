// AWS credentials for the agent's own use and for serving task-role credentials to containers.
//
// makeDefaultCredentialChain() resolves credentials the way the AWS SDKs do on a host: the
// environment, then the shared credentials/config files, then the EC2 instance role via IMDSv2.
// `ecs-node-agent run` uses it to hand the developer's own credentials to containers, as AWS's
// local container endpoints do; on a cluster the credentials come from ACS instead.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/common/result.h"

namespace ecs::aws {

struct Credentials {
  std::string access_key_id, secret_access_key, session_token;
  std::optional<std::chrono::system_clock::time_point> expiration;  // nullopt: does not expire
  // "environment", "shared-credentials-file:<profile>", "imds:<role>" — for logs, never the secret.
  std::string source;
};

// RFC3339 UTC "2026-11-27T10:00:00Z", the form the credentials endpoint serves.
std::string formatExpiration(std::chrono::system_clock::time_point t);

// Parses the RFC3339 forms IMDS and the credential files use ("2026-11-27T10:00:00Z", optionally
// with fractional seconds or a numeric offset).
Result<std::chrono::system_clock::time_point> parseExpiration(std::string_view text);

class CredentialsProvider {
 public:
  virtual ~CredentialsProvider() = default;
  virtual Result<Credentials> credentials() = 0;  // thread-safe
};

struct CredentialChainOptions {
  // Read from the process environment by default; tests pass their own.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::string home;  // for ~/.aws/credentials and ~/.aws/config; default $HOME
  // The clock the cache compares expirations with; default system_clock::now. Tests pass their own.
  std::function<std::chrono::system_clock::time_point()> now;
};

// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN; then AWS_SHARED_CREDENTIALS_FILE or
// ~/.aws/credentials (and aws_* keys in AWS_CONFIG_FILE / ~/.aws/config) for AWS_PROFILE or
// "default"; then IMDSv2 unless AWS_EC2_METADATA_DISABLED=true. Cached until 5 minutes before
// expiry. An error says which sources were tried and why each failed.
std::unique_ptr<CredentialsProvider> makeDefaultCredentialChain(
    CredentialChainOptions options = {});

// How long before expiry cached credentials are refreshed.
inline constexpr std::chrono::minutes kCredentialsRefreshMargin{5};

// The process environment as a getenv function (the default of every `getenv` option).
std::optional<std::string> processGetenv(const std::string& name);

}  // namespace ecs::aws
