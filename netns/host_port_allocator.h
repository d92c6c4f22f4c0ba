// The host-port allocator of bridge-mode networking: which host ports a task's portMappings get.
// A static hostPort is checked (reserved, held by another task, bound on the host); hostPort 0 or
// omitted gets the lowest free port of ECS_DYNAMIC_HOST_PORT_RANGE, which by default lies outside
// the kernel's ip_local_port_range so an ephemeral connect() cannot take a port we handed out.
// Allocations live in one JSON file shared by every agent process on the host (flock), so they
// survive agent restarts and two agents never hand out the same port.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"
#include "netns/owner_store.h"

namespace ecs::netns {

enum class Protocol { kTcp, kUdp };
std::string_view toString(Protocol);  // "tcp" / "udp"

struct HostPortRange {
  int first = 0;
  int last = 0;
};

struct PortRequest {
  Protocol protocol = Protocol::kTcp;
  int count = 1;                 // > 1: a contiguous run of host ports (containerPortRange)
  std::optional<int> host_port;  // set and non-zero: this exact (first) host port; else dynamic
};

// `count` consecutive host ports from `first`, held by one owner.
struct HeldPorts {
  Protocol protocol = Protocol::kTcp;
  int first = 0;
  int count = 1;
};

struct HostPortAllocatorOptions {
  std::string state_path;         // a JSON file shared by every agent process on the host
  HostPortRange dynamic_range;    // ECS_DYNAMIC_HOST_PORT_RANGE
  std::vector<int> reserved_tcp;  // ECS_RESERVED_PORTS
  std::vector<int> reserved_udp;  // ECS_RESERVED_PORTS_UDP
  // Whether something on the host holds the port; default: try to bind it (0.0.0.0 and ::), and
  // look for it among the ports agents forward (ECS-HOSTPORTS), which are not bound.
  std::function<bool(Protocol, int port)> port_in_use;
};

class HostPortAllocator : public OwnerStore {
 public:
  static Result<std::unique_ptr<HostPortAllocator>> open(HostPortAllocatorOptions options);

  // All of `requests` for `owner` (a task ID), or nothing. Returns the first host port of each.
  // A static port that is reserved, held by another owner, or in use on the host fails with
  // kAlreadyExists and a message naming the port, protocol and holder ("host port 8080/tcp is
  // already used by task 1234abcd" / "... is in use on the host"). Dynamic ports skip reserved,
  // held and in-use ports; none left: kFailedPrecondition naming the range. Static requests are
  // served before dynamic ones, lowest free port first. Calling again for an owner adds to what
  // it holds, and makes the calling agent process answer for all of it (see sweepDead): a
  // restarted agent adopts a task's ports with allocate(owner, {}).
  virtual Result<std::vector<int>> allocate(const std::string& owner,
                                            const std::vector<PortRequest>& requests) = 0;
  // What `owner` holds, in the order allocate() recorded it: for each call, the static requests
  // in request order, then the dynamic ones in request order. Empty: nothing. For a restarted
  // agent re-attaching to a task an earlier agent process made; allocates nothing.
  virtual Result<std::vector<HeldPorts>> held(const std::string& owner) const = 0;
  // release(owner) frees every host port of the owner; owners(), sweepDead(), deadOwners() and
  // adopt() as OwnerStore.
};

// The host-port store at `state_path` for housekeeping that needs no port range (sweeping,
// teardown); null when there is no store there, and none is created.
std::unique_ptr<OwnerStore> openHostPortOwners(const std::string& state_path);

// The dynamic range to use when ECS_DYNAMIC_HOST_PORT_RANGE is unset: ports in 1024..65535 that
// do not overlap the kernel's ip_local_port_range (read from `path`), so that no outgoing
// connection can take a port a task was given (the intermittent EADDRINUSE of the real agent).
// The run above the kernel's range when it holds at least 1024 ports ("32768 60999" ->
// 61000-65535), else the larger of the runs above and below it ("49152 65535" -> 1024-49151);
// no room at all ("1024 65535"): kFailedPrecondition asking for ECS_DYNAMIC_HOST_PORT_RANGE.
Result<HostPortRange> defaultDynamicPortRange(
    const std::string& path = "/proc/sys/net/ipv4/ip_local_port_range");
Result<HostPortRange> parseHostPortRange(std::string_view text);  // "61000-65535"

}  // namespace ecs::netns
