// OwnerStore: allocations of one kind on this host (addresses, host ports) recorded by owner — a
// task ID — each answered for by the agent process that made it. What Ipam and
// HostPortAllocator have in common, so that housekeeping (sweeping what dead agents left, tearing
// everything down) works on either without knowing what it holds.
#pragma once

#include <string>
#include <vector>

#include "agent/common/result.h"

namespace ecs::netns {

class OwnerStore {
 public:
  virtual ~OwnerStore() = default;

  // Frees everything `owner` holds. Idempotent.
  virtual void release(const std::string& owner) = 0;
  virtual std::vector<std::string> owners() const = 0;
  // Frees what owners whose agent process is gone (pid + process start time, recorded with
  // every allocation) held; returns those owners.
  virtual std::vector<std::string> sweepDead() = 0;
  // The owners whose agent process is gone, without freeing anything: what sweepDead() would
  // free. A restarted agent asks this before any sweep, to adopt the tasks it can still run.
  virtual std::vector<std::string> deadOwners() const = 0;
  // Makes the calling agent process answer for everything `owner` holds, under the store's
  // lock, so no sweep frees it while this process lives. kNotFound when `owner` holds nothing.
  virtual Result<void> adopt(const std::string& owner) = 0;
};

}  // namespace ecs::netns
