#include "agent/credentials/credentials_source.h"

namespace ecs::credentials {

Result<aws::Credentials> HostCredentialsSource::credentialsFor(std::string_view role_arn) {
  auto creds = provider_->credentials();
  if (!creds) {
    return fail(creds.error().wrap(fmt::format("credentials for role {} from the host", role_arn)));
  }
  return creds;
}

}  // namespace ecs::credentials
