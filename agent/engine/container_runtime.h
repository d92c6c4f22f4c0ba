// What the engine needs of a container runtime and of an image store: two narrow interfaces, so
// the task state machine runs against fakes in unit tests and against containerd (the adapters
// in agent/node) in the agent.
//
// Every method may block and is called from the engine's worker or pull pools, never from its
// loop; implementations are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "agent/common/result.h"
#include "agent/engine/container_spec.h"
#include "agent/images/image_puller.h"
#include "agent/runtime/types.h"

namespace ecs::engine {

// What the runtime holds of one container, for taking over a task after an agent restart.
struct RuntimeContainerState {
  bool exists = false;  // the container record (and its snapshot)
  // Its process: kUnknown when there is none (never started, or deleted after its exit).
  runtime::TaskStatus process = runtime::TaskStatus::kUnknown;
  uint32_t exit_status = 0;  // when process is kStopped
  // When its process started (a running one), if the runtime can tell: an adopted container
  // keeps its real start time rather than the adoption's.
  std::optional<std::chrono::system_clock::time_point> started_at;
};

class ContainerRuntime {
 public:
  virtual ~ContainerRuntime() = default;

  // Creates the container (its writable snapshot on spec.snapshot_parent and its record).
  virtual Result<void> createContainer(const runtime::ContainerSpec& spec) = 0;
  // Starts the container's process with output appended to the files; returns its pid.
  // `log_options`: the options of the container's json-file logConfiguration (`max-size`,
  // `max-file` cap the files; the runtime's defaults stand for what is not given), else empty.
  virtual Result<uint32_t> startTask(const std::string& id, const std::string& stdout_path,
                                     const std::string& stderr_path,
                                     const std::map<std::string, std::string>& log_options) = 0;
  // Signals the container's process (all: every process in it). kNotFound: not running.
  virtual Result<void> killTask(const std::string& id, int signal, bool all) = 0;
  // Deletes the exited process so the container can be started again or removed.
  // kNotFound: there is none.
  virtual Result<void> deleteTask(const std::string& id) = 0;
  // Deletes the container and its snapshot; missing pieces are not an error.
  virtual Result<void> deleteContainer(const std::string& id) = 0;
  // Runs a process (health checks) in the running container and waits for it: its exit code,
  // or kUnavailable once `timeout` passed (the process is then killed). Output to output_path.
  virtual Result<int> exec(const std::string& id, const std::string& exec_id,
                           const std::string& process_spec_json, const std::string& output_path,
                           std::chrono::milliseconds timeout) = 0;
  // Resolves a user spec against the /etc/passwd and /etc/group of the image whose unpacked
  // rootfs is the snapshot `image_chain_id` (container `id` is for naming temporary objects).
  virtual Result<UserIds> resolveUser(const std::string& id, const std::string& image_chain_id,
                                      const std::string& user) = 0;
  // What the runtime has of container `id` now.
  virtual Result<RuntimeContainerState> inspect(const std::string& id) = 0;
  // Called (on any thread, must not block) for every exit of a container's main process, and
  // for every out-of-memory kill the runtime reports.
  virtual void onExit(std::function<void(const std::string& id, uint32_t exit_status)> cb) = 0;
  virtual void onOom(std::function<void(const std::string& id)> cb) = 0;
};

// How long a pull may take and whether its task still wants it.
struct PullLimits {
  std::chrono::milliseconds timeout{std::chrono::hours(2)};  // ECS_IMAGE_PULL_TIMEOUT
  std::function<bool()> cancelled;                           // true: stop at the next chance
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // The image if it is already in the store.
  virtual Result<images::ResolvedImage> resolveLocal(const images::ImageReference& image) = 0;
  // Pulls (or refreshes) the image into the store.
  virtual Result<images::ResolvedImage> pull(const images::ImageReference& image,
                                             const PullLimits& limits) = 0;
};

}  // namespace ecs::engine
