// Placeholder so the library links while the implementation is written.
#include "agent/aws/credentials.h"

#include <fmt/chrono.h>

#include <cstdlib>

namespace ecs::aws {

std::string formatExpiration(std::chrono::system_clock::time_point t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", std::chrono::floor<std::chrono::seconds>(t));
}

Result<std::chrono::system_clock::time_point> parseExpiration(std::string_view text) {
  return fail(ErrorCode::kInvalidArgument, "parse {}: not implemented yet", text);
}

std::optional<std::string> processGetenv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

namespace {
class Unimplemented : public CredentialsProvider {
 public:
  Result<Credentials> credentials() override {
    return fail(ErrorCode::kUnavailable, "credential chain: not implemented yet");
  }
};
}  // namespace

std::unique_ptr<CredentialsProvider> makeDefaultCredentialChain(CredentialChainOptions) {
  return std::make_unique<Unimplemented>();
}

}  // namespace ecs::aws
