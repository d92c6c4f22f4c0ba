#include "agent/endpoints/accept_throttle.h"

#include <algorithm>
#include <utility>

namespace ecs::endpoints {

std::optional<uint64_t> LogThrottle::record(Clock::time_point now) {
  ++pending_;
  if (last_line_ && now - *last_line_ < interval_) return std::nullopt;
  last_line_ = now;
  return std::exchange(pending_, 0);
}

std::chrono::milliseconds AcceptBackoff::failed() {
  next_ = next_ == std::chrono::milliseconds::zero() ? initial_ : std::min(next_ * 2, max_);
  return next_;
}

}  // namespace ecs::endpoints
