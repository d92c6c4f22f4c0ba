#include "agent/cli/services.h"

#include <spdlog/spdlog.h>

namespace ecs::cli {

Result<Services> connectServices(const config::Config& config) {
  Services services;
  runtime::ContainerdOptions containerd_options;
  containerd_options.address = config.containerd_address;
  containerd_options.ns = config.containerd_namespace;
  auto containerd = runtime::ContainerdClient::connect(containerd_options);
  if (!containerd) {
    return fail(containerd.error().wrap(fmt::format(
        "connect to containerd at {} (ECS_CONTAINERD_ADDRESS)", config.containerd_address)));
  }
  services.containerd = std::move(*containerd);

  images::RegistryOptions registry_options;
  registry_options.insecure_registries = config.insecure_registries;
  registry_options.inactivity_timeout = config.image_pull_inactivity_timeout;
  if (!config.engine_auth_type.empty() || !config.engine_auth_data.empty()) {
    std::vector<std::string> warnings;
    registry_options.credentials = images::EngineAuthProvider::fromConfig(
        config.engine_auth_type, config.engine_auth_data, &warnings);
    for (const auto& warning : warnings) spdlog::warn("ECS_ENGINE_AUTH_DATA: {}", warning);
  }
  services.registry = std::make_unique<images::RegistryClient>(std::move(registry_options));
  services.puller = std::make_unique<images::ImagePuller>(*services.containerd, *services.registry);
  return services;
}

}  // namespace ecs::cli
