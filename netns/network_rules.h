// The iptables rules of the agent's task networking, as text: pure functions, so what a bridge or
// a port mapping installs can be read and unit-tested without a kernel.
//
//   nat     PREROUTING/OUTPUT/POSTROUTING jump to ECS-PREROUTING/ECS-OUTPUT/ECS-POSTROUTING
//           ECS-PREROUTING, ECS-OUTPUT: local destinations -> ECS-HOSTPORTS (port mappings, from
//             other hosts, from containers, and from the host itself incl. 127.0.0.1)
//           ECS-PREROUTING: 169.254.170.2:80 from the bridge -> 127.0.0.1:<endpoint port>
//           ECS-OUTPUT (host-mode tasks may use the endpoint): 169.254.170.2:80 -> REDIRECT
//           ECS-POSTROUTING: masquerade the subnet leaving by another interface; 127.0.0.0/8
//             leaving by the bridge (the 127.0.0.1 mapping); DNATed subnet-to-subnet (hairpin)
//           ECS-HOSTPORTS: one DNAT per host port (a range gets one per port, keeping offsets)
//   filter  FORWARD, INPUT: jumps inserted first (a Docker host's FORWARD policy is DROP)
//           ECS-FORWARD: from the bridge, and to it when conntrack knows the flow or DNATed it
//           ECS-INPUT: nothing from the bridge to 127.0.0.0/8 unless DNATed by us — without it
//             route_localnet would expose the host's loopback services to every container
#pragma once

#include <string>
#include <vector>

#include "netns/iptables.h"

namespace ecs::netns {

inline constexpr const char* kEndpointAddress = "169.254.170.2";

struct BridgeRuleOptions {
  std::string bridge;  // "ecs-br0"
  std::string subnet;  // "172.31.224.0/20"
  int endpoint_port = 51679;
  bool host_network_endpoint = false;  // ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST
};

// One host port forwarded to a container port.
struct PortForward {
  std::string protocol;  // "tcp" | "udp"
  int host_port = 0;
  std::string container_ip;
  int container_port = 0;
};

// Shared by every bridge: the jumps from the built-in chains and into ECS-HOSTPORTS. Tag kBaseTag.
// Those in our own chains are inserted first too, so that replacing them (every ensure) leaves
// each chain in the same order and iptables-save unchanged.
std::vector<IptablesRule> baseRules();
// One bridge's rules. Tag bridgeTag(bridge).
std::vector<IptablesRule> bridgeRules(const BridgeRuleOptions& options);
// One task's DNATs. Tag taskTag(task_id).
std::vector<IptablesRule> portForwardRules(const std::string& task_id,
                                           const std::vector<PortForward>& forwards);

}  // namespace ecs::netns
