// Time to set up and tear down one bridge-mode task network (namespace, veth on the bridge,
// address, routes, one port mapping's DNAT, its host port and address leases) against the bare
// minimum done with iproute2 in the same run: `ip netns add` + a veth pair into it + an address,
// then the deletes. Prints the per-task figure of both and the ratio. Needs root; uses the
// bridge ecs-bench-br on 172.31.18.0/24 and removes it at the end.
//
//   netns_bench [rounds]   (default 30)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "netns/task_network.h"

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

bool sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ecs;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 30;
  if (::geteuid() != 0 || rounds < 1) {
    std::fprintf(stderr, "usage (as root): %s [rounds]\n", argv[0]);
    return 2;
  }
  const auto state_dir = std::filesystem::temp_directory_path() /
                         ("ecs-netns-bench-" + std::to_string(std::random_device{}()));
  netns::TaskNetworkOptions options;
  options.bridge = {
      .bridge_name = "ecs-bench-br", .subnet = "172.31.18.0/24", .state_dir = state_dir.string()};
  options.dynamic_port_range = {23000, 23999};
  auto factory = netns::TaskNetworkFactory::create(options);
  if (!factory) {
    std::fprintf(stderr, "%s\n", factory.error().message.c_str());
    return 1;
  }

  engine::TaskDefinition definition;
  definition.network_mode = "bridge";
  engine::ContainerDefinition container;
  container.name = "app";
  container.image = "busybox";
  engine::PortMapping mapping;
  mapping.container_port = 80;
  container.port_mappings.push_back(mapping);
  definition.container_definitions.push_back(container);

  int failures = 0;
  auto start = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    const std::string id = "bench" + std::to_string(i);
    auto resource = (*factory)->resourceFor({.id = id, .definition = &definition});
    if (!resource || !(*resource)->create()) ++failures;
    if (resource) (*resource)->cleanup();
  }
  const double agent_ms = msSince(start) / rounds;

  start = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    const std::string ns = "ecs-bench-ip" + std::to_string(i);
    const std::string veth = "ecsvbench" + std::to_string(i);
    bool ok = sh("ip netns add " + ns) &&
              sh("ip link add " + veth + " type veth peer name eth0 netns " + ns) &&
              sh("ip -n " + ns + " addr add 172.31.19.2/24 dev eth0");
    ok = sh("ip link del " + veth) && ok;
    ok = sh("ip netns del " + ns) && ok;
    if (!ok) ++failures;
  }
  const double ip_ms = msSince(start) / rounds;

  const bool removed = (*factory)->bridge().remove().has_value();
  std::filesystem::remove_all(state_dir);
  std::printf("netns_bench: %d rounds\n", rounds);
  std::printf("  bridge-mode task network (agent)       %8.2f ms per task (setup + teardown)\n",
              agent_ms);
  std::printf("  ip netns add + veth + address (iproute2) %6.2f ms per task (setup + teardown)\n",
              ip_ms);
  std::printf("  ratio agent / iproute2                 %8.2f\n", agent_ms / ip_ms);
  if (failures > 0 || !removed) {
    std::fprintf(stderr, "netns_bench: %d rounds failed%s\n", failures,
                 removed ? "" : "; the bench bridge was not removed");
    return 1;
  }
  return 0;
}
