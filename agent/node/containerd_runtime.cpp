#include "agent/node/containerd_runtime.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include "agent/common/process_identity.h"
#include "agent/engine/image_user.h"

namespace ecs::node {
namespace {

// Mounts a snapshot's mounts read-only at a temporary directory for `fn`, then unmounts.
Result<engine::UserIds> withSnapshotRootfs(
    const std::vector<runtime::Mount>& mounts,
    const std::function<Result<engine::UserIds>(const std::string&)>& fn) {
  if (mounts.size() != 1) {
    return fail(ErrorCode::kInternal, "expected one rootfs mount, got {}", mounts.size());
  }
  const auto& m = mounts[0];
  char dir_template[] = "/tmp/ecs-rootfs-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) return fail(ErrorCode::kInternal, "mkdtemp: {}", std::strerror(errno));
  std::string data;
  unsigned long flags = MS_RDONLY;
  for (const auto& option : m.options) {
    if (option == "rbind")
      flags |= MS_BIND | MS_REC;
    else if (option == "bind")
      flags |= MS_BIND;
    else if (option == "ro" || option == "rw")
      continue;
    else
      data += (data.empty() ? "" : ",") + option;
  }
  int rc = ::mount(m.source.c_str(), dir, m.type == "bind" ? nullptr : m.type.c_str(), flags,
                   data.empty() ? nullptr : data.c_str());
  if (rc != 0) {
    auto error = std::strerror(errno);
    ::rmdir(dir);
    return fail(ErrorCode::kInternal, "mount image rootfs to read /etc/passwd: {}", error);
  }
  auto result = fn(dir);
  ::umount2(dir, MNT_DETACH);
  ::rmdir(dir);
  return result;
}

}  // namespace

Result<void> ContainerdRuntime::createContainer(const runtime::ContainerSpec& spec) {
  auto created = client_.createContainer(spec);
  if (!created && created.error().code == ErrorCode::kAlreadyExists) {
    // An agent killed half way through a create leaves the writable snapshot without the
    // container record: it holds nothing yet, so it goes and the create is tried again.
    auto record = client_.getContainer(spec.id);
    auto snapshot = client_.statSnapshot(spec.id);
    if (record && !*record && snapshot && *snapshot) {
      spdlog::info("container {}: removing the snapshot an interrupted create left", spec.id);
      if (auto removed = client_.removeSnapshot(spec.id); !removed) return fail(removed.error());
      created = client_.createContainer(spec);
    }
  }
  if (!created) return fail(created.error());
  return {};
}

Result<engine::RuntimeContainerState> ContainerdRuntime::inspect(const std::string& id) {
  engine::RuntimeContainerState state;
  auto record = client_.getContainer(id);
  if (!record) return fail(record.error());
  if (!*record) return state;
  state.exists = true;
  auto task = client_.getTask(id);
  if (!task) return fail(task.error());
  if (*task) {
    state.process = (*task)->status;
    state.exit_status = (*task)->exit_status;
    // The shim reports the host's pid of the container's init process.
    if (state.process == runtime::TaskStatus::kRunning && (*task)->pid > 0) {
      state.started_at = processStartedAt(static_cast<int>((*task)->pid));
    }
  }
  return state;
}

Result<uint32_t> ContainerdRuntime::startTask(
    const std::string& id, const std::string& stdout_path, const std::string& stderr_path,
    const std::map<std::string, std::string>& log_options) {
  std::vector<std::string> warnings;
  const auto limits =
      runtime::containerOutputLimits(client_.options().output_limits, log_options, warnings);
  for (const auto& warning : warnings) spdlog::warn("container {}: {}", id, warning);
  return client_.startTask(id, stdout_path, stderr_path, limits);
}

Result<void> ContainerdRuntime::killTask(const std::string& id, int signal, bool all) {
  return client_.killTask(id, signal, all);
}

Result<void> ContainerdRuntime::deleteTask(const std::string& id) {
  auto deleted = client_.deleteTask(id);
  if (!deleted) return fail(deleted.error());
  return {};
}

Result<void> ContainerdRuntime::deleteContainer(const std::string& id) {
  return client_.deleteContainer(id);
}

Result<int> ContainerdRuntime::exec(const std::string& id, const std::string& exec_id,
                                    const std::string& process_spec_json,
                                    const std::string& output_path,
                                    std::chrono::milliseconds timeout) {
  // Through the log writer, capped: a check that prints without end fills neither the disk nor
  // the agent; the engine reads only the output's start, which is what the cap keeps.
  auto started = client_.execProcess(id, exec_id, process_spec_json, output_path, output_path,
                                     runtime::kExecOutputLimits);
  if (!started) return fail(started.error());
  auto exit = client_.events().waitExecExit(id, exec_id, timeout);
  if (!exit) {
    // Past its timeout: kill it and give it a moment to be reaped before deleting it.
    if (auto killed = client_.killProcess(id, exec_id, SIGKILL); !killed) {
      spdlog::debug("kill exec {} of {}: {}", exec_id, id, killed.error().message);
    }
    (void)client_.events().waitExecExit(id, exec_id, std::chrono::seconds(5));
  }
  if (auto deleted = client_.deleteProcess(id, exec_id); !deleted) {
    spdlog::debug("delete exec {} of {}: {}", exec_id, id, deleted.error().message);
  }
  if (!exit) {
    return fail(ErrorCode::kUnavailable, "exec {} did not exit within {} ms", exec_id,
                timeout.count());
  }
  return static_cast<int>(exit->exit_status);
}

Result<engine::UserIds> ContainerdRuntime::resolveUser(const std::string& id,
                                                       const std::string& image_chain_id,
                                                       const std::string& user) {
  const std::string key = "userlookup-" + id;
  // The snapshot is made under a lease of its own: an active snapshot nothing references is
  // garbage to containerd, whose collector (run after any deletion, such as another pull's lease
  // going) could remove it between the prepare and the mount. The lease expires by itself if the
  // agent dies before it is deleted.
  const runtime::Labels labels{{runtime::kLabelManagedBy, runtime::kManagedByValue}};
  auto lease = client_.createLease(labels, std::chrono::minutes(10));
  if (!lease) return fail(lease.error().wrap("read the image's /etc/passwd"));
  auto mounts = client_.prepareSnapshot(*lease, key, image_chain_id, labels);
  Result<engine::UserIds> ids =
      mounts ? withSnapshotRootfs(
                   *mounts,
                   [&](const std::string& dir) { return engine::resolveUserInRootfs(dir, user); })
             : fail(mounts.error().wrap("read the image's /etc/passwd"));
  if (mounts) {
    if (auto removed = client_.removeSnapshot(key); !removed) {
      spdlog::warn("remove snapshot {}: {}", key, removed.error().message);
    }
  }
  if (auto released = client_.deleteLease(*lease, false); !released) {
    spdlog::warn("delete lease {}: {}", *lease, released.error().message);
  }
  return ids;
}

void ContainerdRuntime::onExit(std::function<void(const std::string&, uint32_t)> cb) {
  client_.events().onExit([cb = std::move(cb)](const runtime::TaskExit& exit) {
    if (exit.exec_id.empty()) cb(exit.container_id, exit.exit_status);
  });
}

void ContainerdRuntime::onOom(std::function<void(const std::string&)> cb) {
  client_.events().onOom(std::move(cb));
}

Result<images::ResolvedImage> PullerImageSource::resolveLocal(const images::ImageReference& image) {
  return puller_.resolveLocal(image);
}

Result<images::ResolvedImage> PullerImageSource::pull(const images::ImageReference& image,
                                                      const engine::PullLimits& limits) {
  images::PullControl control;
  control.deadline = std::chrono::steady_clock::now() + limits.timeout;
  control.cancelled = limits.cancelled;
  auto pulled = puller_.pull(image, control);
  if (!pulled) return fail(pulled.error());
  return std::move(pulled->image);
}

}  // namespace ecs::node
