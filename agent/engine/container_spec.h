// The OCI runtime spec of one ECS container: its container definition (and the task's), over the
// image's config, with the task's resources (cgroup, network namespace, volumes) plugged in.
// Defaults are Docker's, so a task behaves as it did under the real agent.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_definition.h"
#include "agent/runtime/oci_spec.h"

namespace ecs::engine {

struct UserIds {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;
};

struct ContainerSpecInputs {
  const TaskDefinition* task = nullptr;
  const ContainerDefinition* container = nullptr;
  runtime::ImageConfig image;
  std::string task_id;       // last segment of the task ARN
  std::string runtime_id;    // the containerd container ID
  std::string cgroups_path;  // linux.cgroupsPath; empty: runc's default
  // Network: empty and not host mode: a new namespace with loopback only (until task networking
  // provides one); a path: join that namespace. networkMode "host": the host's namespace.
  std::string netns_path;
  // A directory private to this container where the builder writes the files it bind-mounts
  // (/etc/hosts, /etc/resolv.conf, /etc/hostname). Created by the caller.
  std::string container_dir;
  std::vector<std::string> extra_env;            // "KEY=value", after the definition's
  std::vector<runtime::SpecMount> extra_mounts;  // volumes, from the volume layer
  // Resolves a user spec against the image's /etc/passwd and /etc/group (resolveUserInRootfs).
  // Called for names ("app", "app:staff", "1000:staff") and for a bare uid other than 0, whose
  // primary and additional gids come from the image, as in Docker. Not called for root ("",
  // "root", "0": uid 0, gid 0, no additional gids) nor for a numeric "uid:gid". Unset: numeric
  // users work, with gid 0 unless given. buildExecProcess calls it again: cache it if costly.
  std::function<Result<UserIds>(const std::string& user)> resolve_user;

  // The container's address, for its hostname's line in /etc/hosts; empty: 127.0.0.1 (the only
  // address a container has until task networking gives it one).
  std::string ip_address;
  // Host files the builder reads; tests point them elsewhere.
  std::string host_resolv_conf = "/etc/resolv.conf";
  std::string host_hosts = "/etc/hosts";
  std::string host_dev_dir = "/dev";  // every device of a privileged container
  // initProcessEnabled: a static init (tini) from the host, bind-mounted read-only as PID 1.
  std::string init_binary = "/usr/bin/tini-static";
  // Where local environmentFiles may come from (ECS_ENVIRONMENT_FILES_DIR; `run` allows "/"):
  // read beneath it without following links out of it. Empty: local files are refused.
  std::string environment_files_dir;
};

// kInvalidArgument naming the field for anything that cannot be honoured (an env file that
// cannot be read, an unknown user, a device that does not exist on the host, ...).
Result<std::string> buildContainerSpec(const ContainerSpecInputs& inputs);

// A runtime-spec Process for Tasks.Exec running `args` as the container's own user, env and cwd
// (health checks).
Result<std::string> buildExecProcess(const ContainerSpecInputs& inputs,
                                     const std::vector<std::string>& args);

}  // namespace ecs::engine
