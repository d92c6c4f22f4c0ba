// TaskResource: one thing a task needs besides its containers — its directory, its cgroup, its
// network namespaces and host ports, its volumes and mounts, its credentials — with one
// lifecycle the engine drives: create() before any container is pulled (or recover() for a task
// an earlier agent process started), contribute() for each container before it is created,
// inspectExit() when a container's process exits, releaseOnStop() once every container has
// stopped, cleanup() when the stopped task is removed (or when create failed). This is the Mesos
// isolator idea and the ECS agent's task-resource idea in one: the engine knows nothing about
// cgroups, netlink, mounts or credentials, only this interface.
//
// Every method blocks and runs on the engine's worker pool, never on its loop; one task's
// resource is never called concurrently with itself. cleanup() is idempotent and must succeed
// after a partial create().
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_definition.h"
#include "agent/runtime/oci_spec.h"

namespace ecs::engine {

struct NetworkBinding {
  std::string bind_ip;
  int container_port = 0;
  int host_port = 0;
  std::string protocol = "tcp";
  std::string container_port_range;  // "8000-8010", with host_port_range instead of the ports
  std::string host_port_range;
};

// The task a resource is for. `definition` outlives the resource.
struct TaskInfo {
  std::string arn;
  std::string id;   // last segment of the ARN: kernel object names derive from it
  std::string dir;  // <ECS_DATADIR>/tasks/<id>; made by the task directory resource (first)
  const TaskDefinition* definition = nullptr;
  std::string role_credentials_id;  // the cluster's id for the task role's credentials; may be ""
  std::string execution_role_credentials_id;
};

struct ContainerInfo {
  const ContainerDefinition* definition = nullptr;
  std::string runtime_id;  // the containerd container ID
  std::string dir;         // private to this container, created before contribute()
};

// What the task's resources give one container. Each resource adds its part.
struct ContainerResources {
  // A network namespace to join (a path such as /run/netns/<name>); empty: the container's own
  // new namespace with loopback only, unless the task is in host mode.
  std::string netns_path;
  std::string ip_address;    // the container's IPv4 address, for /etc/hosts and metadata
  std::string network_mode;  // as reported by metadata ("bridge", "awsvpc", "host", "none")
  std::string ipv4_subnet;   // "172.31.0.0/24", metadata
  std::string ipv4_gateway;  // metadata
  std::vector<NetworkBinding> network_bindings;  // reported with RUNNING
  std::vector<std::string> env;                  // "KEY=value", after the definition's
  std::vector<runtime::SpecMount> mounts;        // volumes
  std::string cgroups_path;       // the container's cgroup (linux.cgroupsPath); "": runc's default
  std::string task_cgroups_path;  // the task's cgroup relative to each hierarchy ("/ecs/<id>")
};

// What resources learn about a container's exit before the engine records it.
struct ContainerExit {
  bool oom_killed = false;  // the kernel killed a process of the container for memory
};

class TaskResource {
 public:
  virtual ~TaskResource() = default;
  // For messages: "network", "volumes", "credentials".
  virtual std::string_view name() const = 0;
  // Makes the resource. An error stops the task; its message says what failed and why, for a
  // person to act on ("host port 8080/tcp is already in use").
  virtual Result<void> create() = 0;
  // Re-attaches to what create() made in an earlier agent process for the same task (after a
  // restart), making nothing new; an error means the resource is gone or broken and the task
  // must stop. The default knows no way back: resources whose records do not survive a restart
  // yet (they will, with the state store) say so and the task is stopped and cleaned up.
  virtual Result<void> recover() {
    return fail(ErrorCode::kFailedPrecondition,
                "{}: nothing recorded of it survives an agent restart", name());
  }
  // Adds what this resource gives `container`. An error stops the container (and the task, if
  // the container is essential).
  virtual Result<void> contribute(const ContainerInfo& container, ContainerResources& out) = 0;
  // Adds what this resource saw of `container`'s exit (the task cgroup: an OOM kill).
  virtual void inspectExit(const ContainerInfo& container, ContainerExit& exit) {
    (void)container;
    (void)exit;
  }
  // Every container of the task has stopped, but the containers stay (inspectable) until the
  // cleanup wait (ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION) ends: releases now what a stopped task
  // must not hold for hours — host ports, addresses, network namespaces. cleanup() still
  // follows and must work after it. Not called when the task is removed at once. Default: keeps
  // everything for cleanup().
  virtual void releaseOnStop() {}
  // Releases everything create() made. Idempotent; logs what it could not release and carries on.
  virtual void cleanup() = 0;
};

// Makes the resources of one kind for a task. Registered with the engine once per agent.
class TaskResourceFactory {
 public:
  virtual ~TaskResourceFactory() = default;
  // Null when the task needs nothing of this kind. An error (a definition this host cannot
  // honour) stops the task with its message.
  virtual Result<std::unique_ptr<TaskResource>> resourceFor(const TaskInfo& task) = 0;
};

}  // namespace ecs::engine
