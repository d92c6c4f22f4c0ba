#include "netns/network_namespace.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

namespace ecs::netns {
namespace {

namespace fs = std::filesystem;

// Makes /run/netns a shared mount, as iproute2 does before every `ip netns add`: a bind mount
// made under a shared mount propagates to mount namespaces created later (containerd's shim,
// runc), so they can open the path. Bind-mounting the directory onto itself first makes it a
// mount point when it is not one (EINVAL on the first attempt).
Result<void> ensureSharedNetnsDir() {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) {
    return fail(ErrorCode::kInternal, "mkdir {}: {}", kNetnsDir, std::strerror(errno));
  }
  bool bound = false;
  while (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || bound) {
      return fail(ErrorCode::kInternal, "make {} a shared mount: {}", kNetnsDir,
                  std::strerror(errno));
    }
    if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
      return fail(ErrorCode::kInternal, "bind-mount {} on itself: {}", kNetnsDir,
                  std::strerror(errno));
    }
    bound = true;
  }
  return {};
}

bool validName(const std::string& name) {
  return !name.empty() && name.size() < 256 && name != "." && name != ".." &&
         name.find('/') == std::string::npos;
}

// Runs `fn` on a fresh thread and waits: the thread's namespace changes die with it.
Result<void> onOwnThread(const std::function<Result<void>()>& fn) {
  Result<void> result;
  std::thread thread([&] {
    try {
      result = fn();
    } catch (const std::exception& e) {
      result = fail(ErrorCode::kInternal, "{}", e.what());
    }
  });
  thread.join();
  return result;
}

}  // namespace

std::string namespacePath(const std::string& name) {
  return fmt::format("{}/{}", kNetnsDir, name);
}

Result<void> createNamespace(const std::string& name) {
  if (!validName(name)) {
    return fail(ErrorCode::kInvalidArgument, "invalid network namespace name '{}'", name);
  }
  if (auto shared = ensureSharedNetnsDir(); !shared) return shared;
  const std::string path = namespacePath(name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == EEXIST) {
      return fail(ErrorCode::kAlreadyExists, "network namespace {} already exists", name);
    }
    return fail(ErrorCode::kInternal, "create {}: {}", path, std::strerror(errno));
  }
  ::close(fd);
  auto made = onOwnThread([&]() -> Result<void> {
    if (::unshare(CLONE_NEWNET) != 0) {
      return fail(ErrorCode::kInternal, "unshare(CLONE_NEWNET): {}", std::strerror(errno));
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      return fail(ErrorCode::kInternal, "bind-mount the new namespace on {}: {}", path,
                  std::strerror(errno));
    }
    return {};
  });
  if (!made) {
    ::unlink(path.c_str());
    return fail(made.error().wrap(fmt::format("create network namespace {}", name)));
  }
  return {};
}

Result<void> removeNamespace(const std::string& name) {
  if (!validName(name)) {
    return fail(ErrorCode::kInvalidArgument, "invalid network namespace name '{}'", name);
  }
  const std::string path = namespacePath(name);
  // MNT_DETACH: a process still inside keeps the namespace alive, but the name goes now.
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return fail(ErrorCode::kInternal, "unmount {}: {}", path, std::strerror(errno));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(ErrorCode::kInternal, "remove {}: {}", path, std::strerror(errno));
  }
  return {};
}

bool namespaceExists(const std::string& name) {
  struct stat st {};
  return validName(name) && ::stat(namespacePath(name).c_str(), &st) == 0;
}

std::vector<std::string> listNamespaces(const std::string& prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kNetnsDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<void> runInNamespace(const std::string& path, const std::function<Result<void>()>& fn) {
  return onOwnThread([&]() -> Result<void> {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return fail(ErrorCode::kNotFound, "open network namespace {}: {}", path,
                  std::strerror(errno));
    }
    const int rc = ::setns(fd, CLONE_NEWNET);
    const int saved = errno;
    ::close(fd);
    if (rc != 0) {
      return fail(ErrorCode::kInternal, "join network namespace {}: {}", path,
                  std::strerror(saved));
    }
    return fn();
  });
}

Result<int> openSocketInNamespace(const std::string& path, int domain, int type, int protocol) {
  int fd = -1;
  auto opened = runInNamespace(path, [&]() -> Result<void> {
    fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return fail(ErrorCode::kInternal, "socket: {}", std::strerror(errno));
    return {};
  });
  if (!opened) return fail(opened.error());
  return fd;
}

}  // namespace ecs::netns
