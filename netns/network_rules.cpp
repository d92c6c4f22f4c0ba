#include "netns/network_rules.h"

#include <fmt/format.h>

#include "netns/network_names.h"

namespace ecs::netns {

std::vector<IptablesRule> baseRules() {
  const std::string tag = tagMatch(kBaseTag);
  return {
      {"nat", "PREROUTING", fmt::format("{} -j ECS-PREROUTING", tag)},
      {"nat", "OUTPUT", fmt::format("{} -j ECS-OUTPUT", tag)},
      {"nat", "POSTROUTING", fmt::format("{} -j ECS-POSTROUTING", tag)},
      {"nat", "ECS-PREROUTING",
       fmt::format("{} -m addrtype --dst-type LOCAL -j ECS-HOSTPORTS", tag)},
      {"nat", "ECS-OUTPUT", fmt::format("{} -m addrtype --dst-type LOCAL -j ECS-HOSTPORTS", tag)},
      {"filter", "FORWARD", fmt::format("{} -j ECS-FORWARD", tag), true},
      {"filter", "INPUT", fmt::format("{} -j ECS-INPUT", tag), true},
  };
}

std::vector<IptablesRule> bridgeRules(const BridgeRuleOptions& o) {
  const std::string tag = tagMatch(bridgeTag(o.bridge));
  std::vector<IptablesRule> rules = {
      {"nat", "ECS-PREROUTING",
       fmt::format(
           "-i {} -d {}/32 -p tcp -m tcp --dport 80 {} -j DNAT --to-destination 127.0.0.1:{}",
           o.bridge, kEndpointAddress, tag, o.endpoint_port)},
      {"nat", "ECS-POSTROUTING",
       fmt::format("-s {} ! -o {} {} -j MASQUERADE", o.subnet, o.bridge, tag)},
      {"nat", "ECS-POSTROUTING",
       fmt::format("-s 127.0.0.0/8 -o {} {} -j MASQUERADE", o.bridge, tag)},
      {"nat", "ECS-POSTROUTING",
       fmt::format("-s {0} -d {0} -o {1} -m conntrack --ctstate DNAT {2} -j MASQUERADE", o.subnet,
                   o.bridge, tag)},
      {"filter", "ECS-FORWARD", fmt::format("-i {} {} -j ACCEPT", o.bridge, tag)},
      {"filter", "ECS-FORWARD",
       fmt::format("-o {} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT {} -j ACCEPT", o.bridge,
                   tag)},
      {"filter", "ECS-INPUT",
       fmt::format(
           "-i {} -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT {} -j DROP",
           o.bridge, tag)},
  };
  if (o.host_network_endpoint) {
    rules.push_back({"nat", "ECS-OUTPUT",
                     fmt::format("-d {}/32 -p tcp -m tcp --dport 80 {} -j REDIRECT --to-ports {}",
                                 kEndpointAddress, tag, o.endpoint_port)});
  }
  return rules;
}

std::vector<IptablesRule> portForwardRules(const std::string& task_id,
                                           const std::vector<PortForward>& forwards) {
  const std::string tag = tagMatch(taskTag(task_id));
  std::vector<IptablesRule> rules;
  for (const auto& f : forwards) {
    rules.push_back({"nat", "ECS-HOSTPORTS",
                     fmt::format("-p {0} -m {0} --dport {1} {2} -j DNAT --to-destination {3}:{4}",
                                 f.protocol, f.host_port, tag, f.container_ip, f.container_port)});
  }
  return rules;
}

}  // namespace ecs::netns
