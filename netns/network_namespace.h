// NetworkNamespace: a named network namespace the way `ip netns` keeps them — a bind mount of the
// namespace file at /run/netns/<name>, with /run/netns a shared mount so the name is visible in
// every mount namespace (containerd's, runc's). Tasks' namespaces are made here, joined by runc
// through their path, and removed when the task stops.
//
// Nothing here ever moves the calling thread: a namespace is created, and work is done inside
// one, on a short-lived thread that unshare()s or setns()es and then ends, so the agent's worker
// threads stay in the host namespace whatever happens.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::netns {

// Where `ip netns` keeps its names.
inline constexpr const char* kNetnsDir = "/run/netns";

// "/run/netns/<name>".
std::string namespacePath(const std::string& name);

// Creates /run/netns/<name> holding a new network namespace (loopback only, down). Fails with
// kAlreadyExists if the name is taken. Leaves nothing behind on failure.
Result<void> createNamespace(const std::string& name);

// Unmounts and unlinks /run/netns/<name>. Idempotent: a missing name is success. The kernel frees
// the namespace (and every link inside it) once nothing else holds it.
Result<void> removeNamespace(const std::string& name);

bool namespaceExists(const std::string& name);

// Names under /run/netns starting with `prefix`, sorted.
std::vector<std::string> listNamespaces(const std::string& prefix);

// Runs `fn` on a new thread that has joined the namespace at `path` (a /run/netns path or
// /proc/<pid>/ns/net) and returns its result once the thread has ended.
Result<void> runInNamespace(const std::string& path, const std::function<Result<void>()>& fn);

// A socket(domain, type, protocol) created inside the namespace at `path`: sockets stay in the
// namespace they were created in, so the caller may use it from any thread (a netlink socket to
// configure the namespace, a listener for a test). The caller owns the fd.
Result<int> openSocketInNamespace(const std::string& path, int domain, int type, int protocol);

}  // namespace ecs::netns
