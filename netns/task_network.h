// TaskNetwork: the network task resource — what a task's networkMode means on this host:
//   bridge  a namespace per container (ecs-<taskId>-<n>) on the agent's bridge, an address each,
//           port mappings DNATed from host ports (static, or dynamic from the allocator)
//   awsvpc  one namespace (ecs-<taskId>) shared by every container, one address; ports are the
//           task's own (hostPort = containerPort), no DNAT
//   host    the host's namespace; static ports reserved through the allocator, so two host-mode
//           tasks wanting one port clash with a clear reason instead of a bind error in the app
//   none    loopback only
// cleanup() undoes create() in reverse and is idempotent; sweep() removes at agent start what
// tasks that no longer exist left behind. recover(), in a restarted agent, re-attaches to what
// an earlier (dead) agent process made for the task: it reads the host ports and addresses back
// from their stores, checks the namespaces, veths and bridge ports are still there (re-adding
// only missing port-mapping rules), and makes this process answer for the records, so that
// sweeps spare them and contribute() gives every container what it was given before.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/engine/task_resource.h"
#include "netns/bridge_network.h"
#include "netns/host_port_allocator.h"
#include "netns/namespace_records.h"

namespace ecs::netns {

struct TaskNetworkOptions {
  BridgeNetworkOptions bridge;       // its state_dir also holds host_ports.json and namespaces.json
  HostPortRange dynamic_port_range;  // ECS_DYNAMIC_HOST_PORT_RANGE; {0, 0}: the default
  std::vector<int> reserved_tcp;     // ECS_RESERVED_PORTS
  std::vector<int> reserved_udp;     // ECS_RESERVED_PORTS_UDP
  // Whether something on the host holds a port; unset: the allocator's default (try to bind).
  std::function<bool(Protocol, int port)> port_in_use;
};

class TaskNetworkFactory : public engine::TaskResourceFactory {
 public:
  // Sets up the bridge and opens the IPAM and host-port stores.
  static Result<std::unique_ptr<TaskNetworkFactory>> create(TaskNetworkOptions options);

  // awsvpc tasks attach through `attacher` from now on (default: the bridge).
  void setAwsvpcAttacher(std::shared_ptr<TaskInterfaceAttacher> attacher);

  Result<std::unique_ptr<engine::TaskResource>> resourceFor(const engine::TaskInfo& task) override;

  // Removes the namespaces, veths, ecs-task: rules, addresses and host ports of every task this
  // factory's stores record that is not in `live_task_ids`; tasks no store of its state
  // directory records are another agent's and are left alone. Returns the task IDs it cleaned
  // up after. Logs what it could not remove and carries on.
  std::vector<std::string> sweep(const std::set<std::string>& live_task_ids);

  BridgeNetwork& bridge() { return *bridge_; }
  HostPortAllocator& hostPorts() { return *host_ports_; }

 private:
  TaskNetworkFactory(std::shared_ptr<BridgeNetwork> bridge,
                     std::unique_ptr<HostPortAllocator> host_ports,
                     std::unique_ptr<NamespaceRecords> namespaces);

  std::shared_ptr<BridgeNetwork> bridge_;
  std::shared_ptr<TaskInterfaceAttacher> awsvpc_attacher_;
  std::shared_ptr<HostPortAllocator> host_ports_;
  std::shared_ptr<NamespaceRecords> namespaces_;
};

}  // namespace ecs::netns
