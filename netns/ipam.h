// IP address management for the task bridge: one IPv4 address per (task, container) from the
// bridge subnet, the first host address being the bridge's own (the gateway). Allocations live in
// one JSON file shared by every agent process on the host (flock), so they survive agent restarts
// and two agents never hand out the same address.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "netns/owner_store.h"

namespace ecs::netns {

struct IpamOptions {
  std::string state_path;  // JSON file shared by every agent process on the host
  std::string subnet;      // "172.31.224.0/20"; the first host address is the gateway
};

class Ipam : public OwnerStore {
 public:
  static Result<std::unique_ptr<Ipam>> open(IpamOptions options);

  virtual const std::string& subnet() const = 0;   // "172.31.224.0/20"
  virtual const std::string& gateway() const = 0;  // "172.31.224.1"
  virtual int prefixLength() const = 0;            // 20
  // An unused address for `owner` (a task ID) under `key` (e.g. a container name); the same
  // (owner, key) again returns the same address. Full: kFailedPrecondition naming the subnet.
  virtual Result<std::string> allocate(const std::string& owner, const std::string& key) = 0;
  // What `owner` holds, key -> address, without allocating (empty: nothing). For a restarted
  // agent re-attaching to a task an earlier agent process made.
  virtual Result<std::map<std::string, std::string>> addresses(const std::string& owner) const = 0;
  // release(owner) frees every address of the owner; owners(), sweepDead(), deadOwners() and
  // adopt() as OwnerStore.
};

// The address store at `state_path` for housekeeping that needs no subnet (sweeping, teardown);
// null when there is no store there, and none is created.
std::unique_ptr<OwnerStore> openIpamOwners(const std::string& state_path);

}  // namespace ecs::netns
