// RateLimiter: a token bucket per client address, as the real agent's task endpoint applies with
// tollbooth (ECS_TASK_METADATA_RPS_LIMIT, "40,60": 40 requests/s steady, bursts of 60). A client
// over its limit is told how long to wait (Retry-After). Buckets idle long enough to be full
// again are forgotten, so memory stays bounded by the number of recently active clients.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "agent/common/result.h"

namespace ecs::endpoints {

struct RateLimit {
  double steady = 40;  // tokens per second
  double burst = 60;   // bucket size
};

// Parses "<steady>,<burst>" (both > 0), the form of ECS_TASK_METADATA_RPS_LIMIT.
Result<RateLimit> parseRateLimit(std::string_view text);

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateLimiter(RateLimit limit, std::function<Clock::time_point()> now = Clock::now);

  // Takes a token for `client`; if there is none, returns how long until there is one.
  std::optional<std::chrono::milliseconds> admit(std::string_view client);
  size_t clients() const;

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  void pruneLocked(Clock::time_point now);

  RateLimit limit_;
  std::function<Clock::time_point()> now_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
  Clock::time_point last_prune_;
};

}  // namespace ecs::endpoints
