// CredentialsSource: where the credentials of a task's role come from when the agent makes them
// itself. On a cluster, ACS pushes them and the session fills the CredentialsStore directly; for
// `ecs-node-agent run` the host's own credential chain (environment, shared credentials file,
// IMDSv2) stands in for every role, as AWS's local container endpoints do for developers.
#pragma once

#include <memory>
#include <string_view>

#include "agent/aws/credentials.h"
#include "agent/common/result.h"

namespace ecs::credentials {

class CredentialsSource {
 public:
  virtual ~CredentialsSource() = default;
  // Credentials for `role_arn`. Thread-safe; may block (IMDS).
  virtual Result<aws::Credentials> credentialsFor(std::string_view role_arn) = 0;
};

// Serves the host's own credentials for every role ARN (no AssumeRole: the developer's
// credentials are what the containers get, which is what local development wants).
class HostCredentialsSource : public CredentialsSource {
 public:
  explicit HostCredentialsSource(std::unique_ptr<aws::CredentialsProvider> provider)
      : provider_(std::move(provider)) {}
  Result<aws::Credentials> credentialsFor(std::string_view role_arn) override;

 private:
  std::unique_ptr<aws::CredentialsProvider> provider_;
};

}  // namespace ecs::credentials
