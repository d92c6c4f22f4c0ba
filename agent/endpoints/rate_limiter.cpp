#include "agent/endpoints/rate_limiter.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace ecs::endpoints {

namespace {

std::optional<double> parsePositive(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || !(v > 0) || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

Result<RateLimit> parseRateLimit(std::string_view text) {
  auto comma = text.find(',');
  if (comma == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "rate limit \"{}\" is not \"<steady>,<burst>\" (e.g. \"40,60\")", text);
  }
  auto steady = parsePositive(text.substr(0, comma));
  auto burst = parsePositive(text.substr(comma + 1));
  if (!steady || !burst) {
    return fail(ErrorCode::kInvalidArgument,
                "rate limit \"{}\": steady and burst must both be numbers > 0", text);
  }
  return RateLimit{*steady, *burst};
}

RateLimiter::RateLimiter(RateLimit limit, std::function<Clock::time_point()> now)
    : limit_(limit), now_(std::move(now)), last_prune_(now_()) {}

std::optional<std::chrono::milliseconds> RateLimiter::admit(std::string_view client) {
  auto now = now_();
  std::lock_guard lock(mutex_);
  pruneLocked(now);
  auto [it, inserted] = buckets_.try_emplace(std::string(client), Bucket{limit_.burst, now});
  Bucket& b = it->second;
  if (!inserted) {
    double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(limit_.burst, b.tokens + std::max(0.0, elapsed) * limit_.steady);
    b.last = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  double wait_s = (1 - b.tokens) / limit_.steady;
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(wait_s * 1000)));
}

size_t RateLimiter::clients() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

void RateLimiter::pruneLocked(Clock::time_point now) {
  // A bucket idle for the time it takes to refill completely is indistinguishable from a new one.
  auto full_after = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(limit_.burst / limit_.steady));
  if (now - last_prune_ < std::max<Clock::duration>(full_after, std::chrono::seconds(1))) return;
  last_prune_ = now;
  std::erase_if(buckets_, [&](const auto& kv) { return now - kv.second.last >= full_after; });
}

}  // namespace ecs::endpoints
