#include "netns/ipam.h"

namespace ecs::netns {

Result<std::unique_ptr<Ipam>> Ipam::open(IpamOptions) {
  return fail(ErrorCode::kInternal, "ipam: not implemented yet");
}

}  // namespace ecs::netns
