#include "netns/host_port_allocator.h"

namespace ecs::netns {

std::string_view toString(Protocol protocol) {
  return protocol == Protocol::kUdp ? "udp" : "tcp";
}

Result<std::unique_ptr<HostPortAllocator>> HostPortAllocator::open(HostPortAllocatorOptions) {
  return fail(ErrorCode::kInternal, "host port allocator: not implemented yet");
}

Result<HostPortRange> defaultDynamicPortRange(const std::string&) {
  return fail(ErrorCode::kInternal, "not implemented yet");
}

Result<HostPortRange> parseHostPortRange(std::string_view) {
  return fail(ErrorCode::kInternal, "not implemented yet");
}

}  // namespace ecs::netns
