// Placeholder so the library links while the implementation is written.
#include "agent/aws/imds_client.h"

namespace ecs::aws {

ImdsClient::ImdsClient(ImdsOptions options) : options_(std::move(options)) {}

ImdsOptions ImdsClient::optionsFromEnvironment(
    const std::function<std::optional<std::string>(const std::string&)>& getenv) {
  ImdsOptions options;
  auto endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  options.endpoint = endpoint ? *endpoint : "http://169.254.169.254";
  return options;
}

Result<std::string> ImdsClient::get(std::string_view path) {
  return fail(ErrorCode::kUnavailable, "IMDS {}: not implemented yet", path);
}
Result<std::string> ImdsClient::region() {
  return get("/latest/meta-data/placement/region");
}
Result<std::string> ImdsClient::availabilityZone() {
  return get("/latest/meta-data/placement/availability-zone");
}
Result<std::string> ImdsClient::instanceId() {
  return get("/latest/meta-data/instance-id");
}
Result<Credentials> ImdsClient::roleCredentials() {
  return fail(ErrorCode::kUnavailable, "IMDS role credentials: not implemented yet");
}
Result<std::string> ImdsClient::token() {
  return fail(ErrorCode::kUnavailable, "not implemented");
}
void ImdsClient::forgetToken() {}

}  // namespace ecs::aws
