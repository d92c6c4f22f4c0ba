// Registering the host as a container instance: what it offers (CPU, memory, reserved ports),
// the attributes this agent really supports, and the retry loop around RegisterContainerInstance.
#pragma once

#include <chrono>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/config/config.h"
#include "agent/ecs/ecs_client.h"

namespace ecs::daemon {

// Logical CPUs this process may use × 1024; MemTotal (from `proc_root`/meminfo) in MiB less
// ECS_RESERVED_MEMORY (an error when nothing would be left); the reserved TCP and UDP ports.
Result<ecsapi::InstanceResources> hostResources(const config::Config& config,
                                                const std::string& proc_root = "/proc");

// "x86_64" → "x86_64", "aarch64" → "arm64", as ECS names architectures.
std::string cpuArchitecture();

// The capabilities this agent has (only those: a claimed capability places tasks here that would
// then fail), the OS attributes, and — with `custom`, as the real agent sends them only on the
// first registration — ECS_INSTANCE_ATTRIBUTES.
std::vector<ecsapi::Attribute> instanceAttributes(const config::Config& config, bool custom = true);

// The instance identity document and its signature, from IMDS; empty when the host is not on EC2
// as far as the configuration says (ECS_EXTERNAL, AWS_EC2_METADATA_DISABLED) or IMDS does not
// answer.
struct InstanceIdentity {
  std::string document, signature;
};

enum class RegistrationFailure {
  kFatal,      // the agent cannot work with this configuration: exit 5, do not restart
  kRetryable,  // gave up for now (time, transport): exit 1, let the service manager restart
  kCancelled,  // asked to stop
};

struct RegistrationError {
  RegistrationFailure kind = RegistrationFailure::kRetryable;
  std::string message;
};

struct RegistrationOptions {
  std::chrono::milliseconds give_up_after = ecsapi::kRegistrationRetryTime;
  aws::RetryPolicy retry = ecsapi::registrationRetryPolicy();
};

// RegisterContainerInstance with the agent's own loop: transient errors (throttling, server
// errors, limits) are retried with backoff for up to an hour; every attribute sent must come back
// as sent. A fresh clientToken per call of this function.
std::expected<ecsapi::RegisteredInstance, RegistrationError> registerInstance(
    ecsapi::EcsClient& client, ecsapi::RegistrationRequest request, std::stop_token stop,
    RegistrationOptions options = {});

}  // namespace ecs::daemon
