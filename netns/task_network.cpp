#include "netns/task_network.h"

#include <spdlog/spdlog.h>

#include "netns/host_network.h"
#include "netns/iptables.h"
#include "netns/network_names.h"
#include "netns/network_namespace.h"

namespace ecs::netns {
namespace {

using engine::ContainerDefinition;
using engine::NetworkBinding;

enum class Mode { kBridge, kAwsvpc, kHost, kNone };

Result<Mode> parseMode(const std::string& mode) {
  if (mode == "bridge" || mode.empty()) return Mode::kBridge;
  if (mode == "awsvpc") return Mode::kAwsvpc;
  if (mode == "host") return Mode::kHost;
  if (mode == "none") return Mode::kNone;
  return fail(ErrorCode::kInvalidArgument,
              "networkMode \"{}\" is not one of bridge, host, awsvpc, none", mode);
}

std::string_view modeName(Mode mode) {
  switch (mode) {
    case Mode::kBridge:
      return "bridge";
    case Mode::kAwsvpc:
      return "awsvpc";
    case Mode::kHost:
      return "host";
    case Mode::kNone:
      return "none";
  }
  return "none";
}

// One portMappings entry, checked and typed.
struct PortPlan {
  size_t container = 0;  // index in containerDefinitions
  Protocol protocol = Protocol::kTcp;
  int container_port = 0;  // the first, for a range
  int count = 1;
  bool range = false;
  std::optional<int> host_port;  // static (first) host port; nullopt: dynamic
};

Result<std::vector<PortPlan>> planPorts(const engine::TaskDefinition& definition, Mode mode) {
  std::vector<PortPlan> plans;
  for (size_t i = 0; i < definition.container_definitions.size(); ++i) {
    const ContainerDefinition& c = definition.container_definitions[i];
    if (c.disable_networking) continue;
    for (size_t j = 0; j < c.port_mappings.size(); ++j) {
      const auto& m = c.port_mappings[j];
      const std::string field = fmt::format("container {}: portMappings[{}]", c.name, j);
      if (mode == Mode::kNone) {
        return fail(ErrorCode::kInvalidArgument, "{}: not allowed with networkMode \"none\"",
                    field);
      }
      PortPlan plan{.container = i};
      if (m.protocol == "tcp" || m.protocol.empty()) {
        plan.protocol = Protocol::kTcp;
      } else if (m.protocol == "udp") {
        plan.protocol = Protocol::kUdp;
      } else {
        return fail(ErrorCode::kInvalidArgument, "{}: protocol \"{}\" is not one of tcp, udp",
                    field, m.protocol);
      }
      if (!m.container_port_range.empty()) {
        auto range = engine::parsePortRange(m.container_port_range);
        if (!range) {
          return fail(ErrorCode::kInvalidArgument, "{}: containerPortRange: {}", field,
                      range.error().message);
        }
        if (m.container_port || m.host_port.value_or(0) != 0) {
          return fail(ErrorCode::kInvalidArgument,
                      "{}: containerPortRange cannot be combined with containerPort or hostPort",
                      field);
        }
        plan.container_port = range->first;
        plan.count = range->size();
        plan.range = true;
        // Bridge: a dynamic run of host ports. Host: the same ports on the host.
        if (mode == Mode::kHost) plan.host_port = range->first;
        plans.push_back(plan);
        continue;
      }
      if (!m.container_port || *m.container_port < 1 || *m.container_port > 65535) {
        return fail(ErrorCode::kInvalidArgument,
                    "{}: containerPort must be 1..65535 (or give containerPortRange)", field);
      }
      plan.container_port = *m.container_port;
      const int host_port = m.host_port.value_or(0);
      if (host_port < 0 || host_port > 65535) {
        return fail(ErrorCode::kInvalidArgument, "{}: hostPort {} is outside 0..65535", field,
                    host_port);
      }
      if ((mode == Mode::kHost || mode == Mode::kAwsvpc) && host_port != 0 &&
          host_port != plan.container_port) {
        return fail(ErrorCode::kInvalidArgument,
                    "{}: in {} mode hostPort ({}) must equal containerPort ({})", field,
                    modeName(mode), host_port, plan.container_port);
      }
      if (mode == Mode::kHost) {
        plan.host_port = plan.container_port;
      } else if (host_port != 0) {
        plan.host_port = host_port;
      }
      plans.push_back(plan);
    }
  }
  return plans;
}

NetworkBinding binding(const PortPlan& plan, int host_port) {
  NetworkBinding b{.bind_ip = "0.0.0.0", .protocol = std::string(toString(plan.protocol))};
  if (plan.range) {
    b.container_port_range =
        fmt::format("{}-{}", plan.container_port, plan.container_port + plan.count - 1);
    b.host_port_range = fmt::format("{}-{}", host_port, host_port + plan.count - 1);
  } else {
    b.container_port = plan.container_port;
    b.host_port = host_port;
  }
  return b;
}

class TaskNetwork : public engine::TaskResource {
 public:
  TaskNetwork(const engine::TaskInfo& task, Mode mode, std::vector<PortPlan> plans,
              std::shared_ptr<BridgeNetwork> bridge,
              std::shared_ptr<TaskInterfaceAttacher> awsvpc_attacher,
              std::shared_ptr<HostPortAllocator> host_ports,
              std::shared_ptr<NamespaceRecords> namespaces)
      : task_id_(task.id),
        definition_(*task.definition),
        mode_(mode),
        plans_(std::move(plans)),
        bridge_(std::move(bridge)),
        awsvpc_attacher_(std::move(awsvpc_attacher)),
        host_ports_(std::move(host_ports)),
        namespaces_(std::move(namespaces)),
        slots_(definition_.container_definitions.size()) {}

  std::string_view name() const override { return "network"; }

  Result<void> create() override {
    switch (mode_) {
      case Mode::kBridge:
        return createBridge();
      case Mode::kAwsvpc:
        return createAwsvpc();
      case Mode::kHost:
        return createHost();
      case Mode::kNone:
        return {};
    }
    return {};
  }

  // Re-attaches to what create() made in an agent process that is gone: the records (host
  // ports, addresses) and the kernel objects are checked, only missing port-mapping rules are
  // made again, and only then do the records become this process's: a task found broken is
  // adopted in no part, and what the dead agent left stays the sweep's, or cleanup()'s.
  Result<void> recover() override {
    Result<void> recovered;
    switch (mode_) {
      case Mode::kBridge:
        recovered = recoverBridge();
        break;
      case Mode::kAwsvpc:
        recovered = recoverAwsvpc();
        break;
      case Mode::kHost:
        recovered = recoverHost();
        break;
      case Mode::kNone:
        break;
    }
    if (!recovered) {
      for (auto& slot : slots_) slot = Slot{};
      task_slot_ = Slot{};
      return fail(recovered.error().wrap(fmt::format("recover the network of task {}", task_id_)));
    }
    spdlog::info("task {}: {} network recovered", task_id_, modeName(mode_));
    return {};
  }

  Result<void> contribute(const engine::ContainerInfo& container,
                          engine::ContainerResources& out) override {
    const auto index = indexOf(container.definition);
    if (!index) {
      return fail(ErrorCode::kNotFound, "container {} is not in task {}",
                  container.definition ? container.definition->name : "?", task_id_);
    }
    const Slot& slot = slots_[*index];
    const bool disabled = definition_.container_definitions[*index].disable_networking;
    if (mode_ == Mode::kNone || disabled) {
      out.network_mode = "none";
      out.netns_path.clear();
      return {};
    }
    out.network_mode = std::string(modeName(mode_));
    out.network_bindings.insert(out.network_bindings.end(), slot.bindings.begin(),
                                slot.bindings.end());
    if (mode_ == Mode::kHost) {
      out.netns_path.clear();
      return {};
    }
    const Slot& attached = mode_ == Mode::kAwsvpc ? task_slot_ : slot;
    if (attached.netns.empty()) {
      return fail(ErrorCode::kFailedPrecondition, "the network of task {} was not created",
                  task_id_);
    }
    out.netns_path = namespacePath(attached.netns);
    out.ip_address = attached.interface.ip_address;
    out.ipv4_subnet = attached.interface.subnet;
    out.ipv4_gateway = attached.interface.gateway;
    return {};
  }

  // A stopped task's ports and addresses go back at once, as the ECS agent does: its stopped
  // containers need neither while they wait to be removed.
  void releaseOnStop() override { cleanup(); }

  void cleanup() override {
    switch (mode_) {
      case Mode::kBridge:
        if (auto removed = bridge_->removePortForwards(task_id_); !removed) {
          spdlog::warn("task {}: remove port mappings: {}", task_id_, removed.error().message);
        }
        // Every slot the definition could have made, not only those recorded: a create() that
        // failed half-way, or an agent that restarted, still leaves nothing.
        for (size_t i = 0; i < slots_.size(); ++i) {
          removeSlot(*bridge_, static_cast<int>(i),
                     containerNamespaceName(task_id_, static_cast<int>(i)));
          slots_[i] = Slot{};
        }
        bridge_->release(task_id_);
        break;
      case Mode::kAwsvpc:
        removeSlot(*awsvpc_attacher_, 0, taskNamespaceName(task_id_));
        task_slot_ = Slot{};
        awsvpc_attacher_->release(task_id_);
        break;
      case Mode::kHost:
      case Mode::kNone:
        break;
    }
    // Last: until its namespaces are gone, the task stays this agent's to sweep.
    if (mode_ == Mode::kBridge || mode_ == Mode::kAwsvpc) namespaces_->release(task_id_);
    if (mode_ != Mode::kNone) host_ports_->release(task_id_);
  }

 private:
  struct Slot {
    std::string netns;  // name under /run/netns; empty: none made
    TaskInterface interface;
    std::vector<NetworkBinding> bindings;
  };

  std::optional<size_t> indexOf(const ContainerDefinition* definition) const {
    const auto& all = definition_.container_definitions;
    for (size_t i = 0; i < all.size(); ++i) {
      if (&all[i] == definition) return i;
    }
    for (size_t i = 0; definition != nullptr && i < all.size(); ++i) {
      if (all[i].name == definition->name) return i;
    }
    return std::nullopt;
  }

  void removeSlot(TaskInterfaceAttacher& attacher, int slot, const std::string& netns) {
    if (auto detached = attacher.detach(task_id_, slot); !detached) {
      spdlog::warn("task {}: detach {}: {}", task_id_, netns, detached.error().message);
    }
    if (auto removed = removeNamespace(netns); !removed) {
      spdlog::warn("task {}: {}", task_id_, removed.error().message);
    }
  }

  // A namespace for `name`, attached through `attacher`. A leftover of the same name (an
  // earlier attempt at this task) is replaced.
  Result<Slot> makeSlot(TaskInterfaceAttacher& attacher, int slot, const std::string& netns,
                        const std::string& key) {
    auto created = createNamespace(netns);
    if (!created && created.error().code == ErrorCode::kAlreadyExists) {
      removeSlot(attacher, slot, netns);  // what it cannot remove, it logs; creating again fails
      created = createNamespace(netns);
    }
    if (!created) return fail(created.error());
    Slot made{.netns = netns};
    auto attached = attacher.attach(task_id_, slot, key, namespacePath(netns));
    if (!attached) {
      if (auto removed = removeNamespace(netns); !removed) {
        spdlog::warn("task {}: {}", task_id_, removed.error().message);
      }
      return fail(attached.error());
    }
    made.interface = *attached;
    return made;
  }

  // All of the task's host ports, or none.
  Result<std::vector<int>> allocatePorts() {
    std::vector<PortRequest> requests;
    for (const auto& plan : plans_) {
      requests.push_back(
          {.protocol = plan.protocol, .count = plan.count, .host_port = plan.host_port});
    }
    if (requests.empty()) return std::vector<int>{};
    return host_ports_->allocate(task_id_, requests);
  }

  Result<void> createBridge() {
    // Ports first: the likeliest failure, and the clearest message, before any kernel object.
    auto ports = allocatePorts();
    if (!ports) return fail(ports.error());
    // Once per task, before its first namespace exists: a namespace no record names is another
    // agent's, never this one's to sweep.
    if (auto recorded = namespaces_->record(task_id_); !recorded) return recorded;
    const auto& containers = definition_.container_definitions;
    for (size_t i = 0; i < containers.size(); ++i) {
      if (containers[i].disable_networking) continue;
      const int slot = static_cast<int>(i);
      auto made =
          makeSlot(*bridge_, slot, containerNamespaceName(task_id_, slot), containers[i].name);
      if (!made) return fail(made.error().wrap(fmt::format("container {}", containers[i].name)));
      slots_[i] = std::move(*made);
    }
    std::vector<PortForward> forwards;
    for (size_t k = 0; k < plans_.size(); ++k) {
      const PortPlan& plan = plans_[k];
      const int host_port = (*ports)[k];
      Slot& slot = slots_[plan.container];
      for (int offset = 0; offset < plan.count; ++offset) {
        forwards.push_back({.protocol = std::string(toString(plan.protocol)),
                            .host_port = host_port + offset,
                            .container_ip = slot.interface.ip_address,
                            .container_port = plan.container_port + offset});
      }
      slot.bindings.push_back(binding(plan, host_port));
    }
    if (!forwards.empty()) {
      if (auto added = bridge_->addPortForwards(task_id_, forwards); !added) {
        return fail(added.error().wrap("port mappings"));
      }
    }
    return {};
  }

  Result<void> createAwsvpc() {
    if (auto recorded = namespaces_->record(task_id_); !recorded) return recorded;  // as above
    auto made = makeSlot(*awsvpc_attacher_, 0, taskNamespaceName(task_id_), "task");
    if (!made) return fail(made.error());
    task_slot_ = std::move(*made);
    // The task has its own address: its ports are its own, nothing to allocate or forward.
    for (const auto& plan : plans_) {
      slots_[plan.container].bindings.push_back(binding(plan, plan.container_port));
    }
    return {};
  }

  Result<void> createHost() {
    auto ports = allocatePorts();
    if (!ports) return fail(ports.error());
    for (size_t k = 0; k < plans_.size(); ++k) {
      slots_[plans_[k].container].bindings.push_back(binding(plans_[k], (*ports)[k]));
    }
    return {};
  }

  // The first host port of each plan, from what the allocator recorded for the task: static
  // plans by their port, dynamic ones in order (allocate() records statics, then dynamics).
  Result<std::vector<int>> recordedPorts() {
    std::vector<int> ports(plans_.size(), 0);
    if (plans_.empty()) return ports;
    auto held = host_ports_->held(task_id_);
    if (!held) return fail(held.error());
    if (held->empty()) {
      return fail(ErrorCode::kNotFound, "no host ports of task {} are recorded", task_id_);
    }
    std::vector<bool> used(held->size(), false);
    auto take = [&](const PortPlan& plan) -> std::optional<int> {
      for (size_t b = 0; b < held->size(); ++b) {
        const HeldPorts& block = (*held)[b];
        if (used[b] || block.protocol != plan.protocol || block.count != plan.count) continue;
        if (plan.host_port && block.first != *plan.host_port) continue;
        used[b] = true;
        return block.first;
      }
      return std::nullopt;
    };
    for (bool statics : {true, false}) {
      for (size_t k = 0; k < plans_.size(); ++k) {
        const PortPlan& plan = plans_[k];
        if (plan.host_port.has_value() != statics) continue;
        auto first = take(plan);
        if (!first) {
          const auto& name = definition_.container_definitions[plan.container].name;
          return fail(ErrorCode::kNotFound,
                      "container {}: no {} host port for container port {} is recorded", name,
                      toString(plan.protocol), plan.container_port);
        }
        ports[k] = *first;
      }
    }
    return ports;
  }

  Result<Slot> reattachSlot(TaskInterfaceAttacher& attacher, int slot, const std::string& netns,
                            const std::string& key) {
    auto attached = attacher.reattach(task_id_, slot, key, namespacePath(netns));
    if (!attached) return fail(attached.error());
    return Slot{.netns = netns, .interface = *attached};
  }

  // The task's DNATs as create() made them; made again only when they are not all there.
  Result<void> ensurePortForwards(const std::vector<PortForward>& forwards) {
    if (forwards.empty()) return {};
    auto rules = Iptables::snapshot();
    if (!rules) return fail(rules.error());
    if (rules->tagged(taskTag(task_id_)).size() != portForwardRules(task_id_, forwards).size()) {
      spdlog::warn("task {}: port mappings missing after the agent restart; adding them again",
                   task_id_);
    }
    // Idempotent: rules that are all there are left untouched.
    if (auto added = bridge_->addPortForwards(task_id_, forwards); !added) {
      return fail(added.error().wrap("port mappings"));
    }
    return {};
  }

  Result<void> recoverBridge() {
    auto ports = recordedPorts();
    if (!ports) return fail(ports.error());
    const auto& containers = definition_.container_definitions;
    bool attached = false;
    for (size_t i = 0; i < containers.size(); ++i) {
      if (containers[i].disable_networking) continue;
      const int slot = static_cast<int>(i);
      auto found =
          reattachSlot(*bridge_, slot, containerNamespaceName(task_id_, slot), containers[i].name);
      if (!found) return fail(found.error().wrap(fmt::format("container {}", containers[i].name)));
      slots_[i] = std::move(*found);
      attached = true;
    }
    std::vector<PortForward> forwards;
    for (size_t k = 0; k < plans_.size(); ++k) {
      const PortPlan& plan = plans_[k];
      Slot& slot = slots_[plan.container];
      for (int offset = 0; offset < plan.count; ++offset) {
        forwards.push_back({.protocol = std::string(toString(plan.protocol)),
                            .host_port = (*ports)[k] + offset,
                            .container_ip = slot.interface.ip_address,
                            .container_port = plan.container_port + offset});
      }
      slot.bindings.push_back(binding(plan, (*ports)[k]));
    }
    if (auto ensured = ensurePortForwards(forwards); !ensured) return ensured;
    if (!plans_.empty()) {
      if (auto adopted = host_ports_->adopt(task_id_); !adopted) return adopted;
    }
    if (attached) {
      if (auto adopted = bridge_->adopt(task_id_); !adopted) return adopted;
      // record(), not adopt(): an agent older than the records made no entry.
      if (auto recorded = namespaces_->record(task_id_); !recorded) return recorded;
    }
    return {};
  }

  Result<void> recoverAwsvpc() {
    auto found = reattachSlot(*awsvpc_attacher_, 0, taskNamespaceName(task_id_), "task");
    if (!found) return fail(found.error());
    task_slot_ = std::move(*found);
    for (const auto& plan : plans_) {
      slots_[plan.container].bindings.push_back(binding(plan, plan.container_port));
    }
    if (auto adopted = awsvpc_attacher_->adopt(task_id_); !adopted) return adopted;
    return namespaces_->record(task_id_);
  }

  Result<void> recoverHost() {
    auto ports = recordedPorts();
    if (!ports) return fail(ports.error());
    for (size_t k = 0; k < plans_.size(); ++k) {
      slots_[plans_[k].container].bindings.push_back(binding(plans_[k], (*ports)[k]));
    }
    if (plans_.empty()) return {};
    return host_ports_->adopt(task_id_);
  }

  const std::string task_id_;
  const engine::TaskDefinition& definition_;
  const Mode mode_;
  const std::vector<PortPlan> plans_;
  std::shared_ptr<BridgeNetwork> bridge_;
  std::shared_ptr<TaskInterfaceAttacher> awsvpc_attacher_;
  std::shared_ptr<HostPortAllocator> host_ports_;
  std::shared_ptr<NamespaceRecords> namespaces_;
  std::vector<Slot> slots_;  // per container (bridge); bindings in every mode
  Slot task_slot_;           // awsvpc
};

}  // namespace

TaskNetworkFactory::TaskNetworkFactory(std::shared_ptr<BridgeNetwork> bridge,
                                       std::unique_ptr<HostPortAllocator> host_ports,
                                       std::unique_ptr<NamespaceRecords> namespaces)
    : bridge_(std::move(bridge)),
      awsvpc_attacher_(bridge_),
      host_ports_(std::move(host_ports)),
      namespaces_(std::move(namespaces)) {}

Result<std::unique_ptr<TaskNetworkFactory>> TaskNetworkFactory::create(TaskNetworkOptions options) {
  auto bridge = BridgeNetwork::create(options.bridge);
  if (!bridge) return fail(bridge.error());
  HostPortRange range = options.dynamic_port_range;
  if (range.first == 0 && range.last == 0) {
    auto fallback = defaultDynamicPortRange();
    if (!fallback) return fail(fallback.error().wrap("dynamic host port range"));
    range = *fallback;
  }
  auto host_ports =
      HostPortAllocator::open({.state_path = options.bridge.state_dir + "/host_ports.json",
                               .dynamic_range = range,
                               .reserved_tcp = options.reserved_tcp,
                               .reserved_udp = options.reserved_udp,
                               .port_in_use = options.port_in_use});
  if (!host_ports) return fail(host_ports.error().wrap("open the host port store"));
  auto namespaces = NamespaceRecords::open(options.bridge.state_dir + "/namespaces.json");
  if (!namespaces) return fail(namespaces.error().wrap("open the network namespace records"));
  return std::unique_ptr<TaskNetworkFactory>(
      new TaskNetworkFactory(std::shared_ptr<BridgeNetwork>(std::move(*bridge)),
                             std::move(*host_ports), std::move(*namespaces)));
}

void TaskNetworkFactory::setAwsvpcAttacher(std::shared_ptr<TaskInterfaceAttacher> attacher) {
  awsvpc_attacher_ = attacher ? std::move(attacher) : bridge_;
}

Result<std::unique_ptr<engine::TaskResource>> TaskNetworkFactory::resourceFor(
    const engine::TaskInfo& task) {
  if (task.definition == nullptr) {
    return fail(ErrorCode::kInvalidArgument, "task {} has no definition", task.id);
  }
  if (auto valid = validateTaskId(task.id); !valid) return fail(valid.error());
  auto mode = parseMode(task.definition->network_mode);
  if (!mode) return fail(mode.error());
  if (task.definition->container_definitions.size() > static_cast<size_t>(kMaxSlot)) {
    return fail(ErrorCode::kInvalidArgument, "too many containers for one task network");
  }
  auto plans = planPorts(*task.definition, *mode);
  if (!plans) return fail(plans.error());
  return std::unique_ptr<engine::TaskResource>(std::make_unique<TaskNetwork>(
      task, *mode, std::move(*plans), bridge_, awsvpc_attacher_, host_ports_, namespaces_));
}

std::vector<std::string> TaskNetworkFactory::sweep(const std::set<std::string>& live) {
  const std::vector<OwnerStore*> stores{&bridge_->ipam(), host_ports_.get(), namespaces_.get()};
  std::set<std::string> gone = recordedTasks(stores);
  for (const auto& id : live) gone.erase(id);
  return sweepTaskNetworks(gone, stores);
}

}  // namespace ecs::netns
