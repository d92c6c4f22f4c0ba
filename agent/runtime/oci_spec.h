// OCI runtime spec builder: typed inputs (the image's config plus what the task definition and
// the task's resources override) in, the runc-ready `config.json` out (Boost.JSON). Also parses
// an OCI/Docker image config blob into ImageConfig.
//
// Defaults follow Docker's: its 14 default capabilities, pid/ipc/uts/mount/network namespaces,
// the standard /proc /dev /sys mounts, masked and read-only /proc and /sys paths, and a device
// cgroup that denies everything but runc's default devices.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"
#include "agent/runtime/types.h"

namespace ecs::runtime {

// The part of an image's config blob the agent uses ("config" section of the OCI image config,
// plus the rootfs and platform fields).
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_dir;
  std::string user;
  std::string stop_signal;
  Labels labels;
  std::string os;
  std::string architecture;
  std::vector<std::string> diff_ids;  // rootfs.diff_ids, bottom layer first
};

// Parses an OCI (or Docker schema 2) image config JSON. Missing and null fields are empty.
Result<ImageConfig> parseImageConfig(std::string_view json);

struct SpecMount {
  std::string destination;
  std::string type;  // "bind", "tmpfs", ...
  std::string source;
  std::vector<std::string> options;
};

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE", ...
  uint64_t soft = 0;
  uint64_t hard = 0;
};

struct SpecInputs {
  ImageConfig image;

  // Overrides from the task definition. As in Docker's API (which ECS uses): a non-empty
  // entrypoint replaces the image's Entrypoint AND drops the image's Cmd; a non-empty command
  // replaces the image's Cmd. env entries ("KEY=value") replace image entries of the same key.
  std::vector<std::string> entrypoint;
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string working_dir;  // empty: the image's, else "/"
  std::string user;         // empty: the image's; numeric "uid[:gid]" (or "root") for now

  std::string hostname;           // empty: the UTS namespace keeps the host's name
  std::string cgroups_path;       // empty: runc's default
  std::string netns_path;         // empty: a new network namespace
  std::vector<SpecMount> mounts;  // extra mounts; one on a default mount's destination replaces it
  bool readonly_rootfs = false;
  // Empty: inherited from the shim (i.e. containerd's own limits), as Docker containers inherit
  // dockerd's. A limit above the inherited hard limit needs CAP_SYS_RESOURCE, which sandboxed
  // hosts may not grant (runc then fails with "error setting rlimit type 7").
  std::vector<Rlimit> rlimits;
  Labels annotations;
};

// The resolved process: what the container will run, and as whom.
struct ProcessInputs {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// Applies the override rules above. kInvalidArgument when there is nothing to run, the working
// directory is relative, or the user is not numeric.
Result<ProcessInputs> resolveProcess(const SpecInputs& inputs);

// The full runtime spec as JSON.
Result<std::string> buildOciSpec(const SpecInputs& inputs);

// A runtime-spec Process (JSON) for Tasks.Exec: the container's user, env, cwd and capabilities
// with other args (health checks run this way).
Result<std::string> buildExecProcessSpec(const SpecInputs& inputs,
                                         const std::vector<std::string>& args);

// Docker's default capability set (the names runc expects, with CAP_ prefixes).
const std::vector<std::string>& defaultCapabilities();

}  // namespace ecs::runtime
