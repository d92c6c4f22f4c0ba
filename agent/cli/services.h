// Wiring from Config to the long-lived objects the commands use.
#pragma once

#include <memory>

#include "agent/common/result.h"
#include "agent/config/config.h"
#include "agent/images/image_puller.h"
#include "agent/images/registry_client.h"
#include "agent/runtime/containerd_client.h"

namespace ecs::cli {

struct Services {
  std::unique_ptr<runtime::ContainerdClient> containerd;
  std::unique_ptr<images::RegistryClient> registry;
  std::unique_ptr<images::ImagePuller> puller;
};

Result<Services> connectServices(const config::Config& config);

}  // namespace ecs::cli
