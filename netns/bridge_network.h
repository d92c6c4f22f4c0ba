// BridgeNetwork: the agent's bridge (default `ecs-br0` on 172.31.224.0/20) and what hangs off it —
// a veth per task namespace with an address from the persisted IPAM pool, a default route through
// the bridge, outbound NAT, port-mapping DNATs, and the 169.254.170.2 route to the agent's
// credentials and metadata endpoint. Bridge and awsvpc tasks both attach here; the attach step
// sits behind TaskInterfaceAttacher so an ENI attacher can take awsvpc tasks instead.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "netns/ipam.h"
#include "netns/network_rules.h"

namespace ecs::netns {

struct BridgeNetworkOptions {
  std::string bridge_name = "ecs-br0";
  std::string subnet = "172.31.224.0/20";  // the first host address is the bridge's (gateway)
  int mtu = 1500;
  int endpoint_port = 51679;           // where 169.254.170.2:80 lands on 127.0.0.1
  bool block_imds = false;             // ECS_AWSVPC_BLOCK_IMDS: no 169.254.169.254 from tasks
  bool host_network_endpoint = false;  // ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST
  std::string state_dir;               // holds ipam.json (and host_ports.json, see TaskNetwork)
};

// What a task namespace got from the network it was attached to.
struct TaskInterface {
  std::string ip_address;  // "172.31.224.2"
  std::string subnet;      // "172.31.224.0/20"
  std::string gateway;     // "172.31.224.1"
  int prefix_length = 0;
  std::string host_link;  // the host-side veth; empty for an ENI
};

// Gives a task namespace its interface (eth0), address and routes. Bridge mode uses a bridge
// attacher per container; awsvpc one per task (on EC2, an ENI attacher moving the task's ENI in).
class TaskInterfaceAttacher {
 public:
  virtual ~TaskInterfaceAttacher() = default;
  // `slot` tells apart the task's namespaces (0 for awsvpc); `key` names the address within the
  // task (the container name; "task" for awsvpc). On failure nothing of the attachment is left
  // but its address, which release() frees.
  virtual Result<TaskInterface> attach(const std::string& task_id, int slot, const std::string& key,
                                       const std::string& netns_path) = 0;
  // Removes the slot's interface. Idempotent.
  virtual Result<void> detach(const std::string& task_id, int slot) = 0;
  // Frees the task's addresses. Idempotent.
  virtual void release(const std::string& task_id) = 0;

  // After an agent restart: the interface attach() gave the slot in an earlier agent process,
  // read back from the records and checked against the kernel, making and changing nothing.
  // kNotFound naming what is gone (the address record, the namespace, the link). The default
  // knows no way back.
  virtual Result<TaskInterface> reattach(const std::string& task_id, int slot,
                                         const std::string& key, const std::string& netns_path) {
    (void)slot;
    (void)key;
    (void)netns_path;
    return fail(ErrorCode::kFailedPrecondition,
                "task {}: this network attachment cannot be recovered after an agent restart",
                task_id);
  }
  // Makes this agent process answer for the task's address records (release() frees them).
  virtual Result<void> adopt(const std::string& task_id) {
    return fail(ErrorCode::kFailedPrecondition,
                "task {}: this network attachment cannot be adopted after an agent restart",
                task_id);
  }
};

class BridgeNetwork : public TaskInterfaceAttacher {
 public:
  // Opens the IPAM store and ensure()s the bridge.
  static Result<std::unique_ptr<BridgeNetwork>> create(BridgeNetworkOptions options);

  // The bridge (fixed MAC, the gateway address, up), ip_forward, route_localnet on the bridge
  // only, the ECS- chains and this bridge's rules. Idempotent: again changes nothing.
  Result<void> ensure();

  Result<TaskInterface> attach(const std::string& task_id, int slot, const std::string& key,
                               const std::string& netns_path) override;
  Result<void> detach(const std::string& task_id, int slot) override;
  void release(const std::string& task_id) override;
  // Checks the address record, the namespace, the host veth (a port of this bridge) and the
  // eth0 inside the namespace.
  Result<TaskInterface> reattach(const std::string& task_id, int slot, const std::string& key,
                                 const std::string& netns_path) override;
  Result<void> adopt(const std::string& task_id) override;

  // The task's DNATs, replacing any it had. Removed by removePortForwards (idempotent).
  Result<void> addPortForwards(const std::string& task_id,
                               const std::vector<PortForward>& forwards);
  Result<void> removePortForwards(const std::string& task_id);

  // Deletes the bridge and its rules, and the ECS- chains if no other bridge uses them. For
  // tests and uninstall; tasks must be gone first.
  Result<void> remove();

  const BridgeNetworkOptions& options() const { return options_; }
  Ipam& ipam() { return *ipam_; }

 private:
  BridgeNetwork(BridgeNetworkOptions options, std::unique_ptr<Ipam> ipam);
  Result<void> configureInside(const std::string& netns_path, const std::string& ip_address);

  BridgeNetworkOptions options_;
  std::unique_ptr<Ipam> ipam_;
};

}  // namespace ecs::netns
