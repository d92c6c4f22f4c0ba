#include "agent/daemon/registration.h"

#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "agent/common/stop_wait.h"
#include "agent/endpoints/endpoints_resource.h"

namespace ecs::daemon {

namespace {

int logicalCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

Result<int64_t> memTotalMib(const std::string& proc_root) {
  std::ifstream in(proc_root + "/meminfo");
  if (!in) return fail(ErrorCode::kUnavailable, "read {}/meminfo", proc_root);
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemTotal:") return kib / 1024;
  }
  return fail(ErrorCode::kDataLoss, "{}/meminfo has no MemTotal", proc_root);
}

const std::string kLegacy = "com.amazonaws.ecs.capability.";
const std::string kCapability = "ecs.capability.";

}  // namespace

Result<ecsapi::InstanceResources> hostResources(const config::Config& config,
                                                const std::string& proc_root) {
  ecsapi::InstanceResources resources;
  resources.cpu_units = int64_t{logicalCpus()} * 1024;
  auto memory = memTotalMib(proc_root);
  if (!memory) return fail(memory.error());
  resources.memory_mib = *memory - config.reserved_memory_mib;
  if (resources.memory_mib <= 0) {
    return fail(ErrorCode::kInvalidArgument,
                "ECS_RESERVED_MEMORY: {} MiB reserved leaves nothing of the host's {} MiB",
                config.reserved_memory_mib, *memory);
  }
  resources.reserved_tcp_ports = config.reserved_ports;
  resources.reserved_udp_ports = config.reserved_ports_udp;
  return resources;
}

std::string cpuArchitecture() {
  utsname name{};
  if (uname(&name) != 0) return "unknown";
  std::string machine = name.machine;
  if (machine == "aarch64") return "arm64";
  return machine;
}

std::vector<ecsapi::Attribute> instanceAttributes(const config::Config& config, bool custom) {
  std::vector<ecsapi::Attribute> out;
  auto add = [&out](std::string name, std::optional<std::string> value = std::nullopt) {
    out.push_back({std::move(name), std::move(value)});
  };
  // The Docker remote API levels task definitions are checked against: this agent implements
  // the task-definition features of each (it runs them through containerd, not Docker).
  for (int minor = 17; minor <= 32; ++minor) {
    if (minor == 26 || minor == 27 || minor == 31) continue;
    add(fmt::format("{}docker-remote-api.1.{}", kLegacy, minor));
  }
  add(kLegacy + "privileged-container");
  add(kLegacy + "logging-driver.json-file");
  if (config.task_iam_role) add(kLegacy + "task-iam-role");
  if (config.task_iam_role && config.task_iam_role_network_host) {
    add(kLegacy + "task-iam-role-network-host");
  }
  for (const char* name :
       {"container-health-check", "container-ordering", "container-restart-policy",
        "docker-plugin.local", "efs", "full-sync", "network.container-port-range",
        "task-cpu-mem-limit", "increased-task-cpu-limit"}) {
    add(kCapability + name);
  }
  add("ecs.os-type", "linux");
  add("ecs.os-family", "LINUX");
  add("ecs.cpu-architecture", cpuArchitecture());
  if (custom) {
    for (const auto& [name, value] : config.instance_attributes) add(name, value);
  }
  return out;
}

std::expected<ecsapi::RegisteredInstance, RegistrationError> registerInstance(
    ecsapi::EcsClient& client, ecsapi::RegistrationRequest request, std::stop_token stop,
    RegistrationOptions options) {
  request.client_token = endpoints::newUuid();
  auto give_up = std::chrono::steady_clock::now() + options.give_up_after;
  std::mt19937_64 random(std::random_device{}());
  for (int retry = 0;; ++retry) {
    auto result = client.registerContainerInstance(request, stop);
    if (result) {
      auto missing = ecsapi::unmatchedAttributes(request.attributes, result->attributes);
      if (!missing.empty()) {
        std::string names;
        for (const auto& name : missing) names += (names.empty() ? "" : ", ") + name;
        return std::unexpected(RegistrationError{
            RegistrationFailure::kFatal,
            fmt::format("the cluster did not record these attributes as sent: {}", names)});
      }
      return std::move(*result);
    }
    const auto& error = result.error();
    if (error.cancelled || stop.stop_requested()) {
      return std::unexpected(RegistrationError{RegistrationFailure::kCancelled, "stopped"});
    }
    auto message = error.asError().message;
    if (!ecsapi::isTransientRegistrationError(error) && !error.retryable) {
      // A refusal (bad parameter, unknown cluster, access denied): trying again cannot help.
      bool fatal = error.http_status >= 400 && error.http_status < 500;
      return std::unexpected(RegistrationError{
          fatal ? RegistrationFailure::kFatal : RegistrationFailure::kRetryable, message});
    }
    auto delay = options.retry.delay(retry, std::uniform_real_distribution<double>(0, 1)(random));
    if (std::chrono::steady_clock::now() + delay > give_up) {
      return std::unexpected(
          RegistrationError{RegistrationFailure::kRetryable,
                            fmt::format("gave up after {} attempt(s): {}", retry + 1, message)});
    }
    spdlog::warn("registration failed ({}); retrying in {} ms", message, delay.count());
    (void)sleepFor(delay, stop);  // a stop is seen at the top of the loop
  }
}

}  // namespace ecs::daemon
