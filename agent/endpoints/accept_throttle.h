// How an accepting server behaves when accept() fails or it refuses connections over its caps,
// so that a flood costs the agent neither CPU nor log volume:
//
// - LogThrottle turns a stream of events into at most one log line per interval: the first event
//   is reported at once, later ones are counted and reported with the next line that is due.
// - AcceptBackoff: after a failed accept() (out of descriptors, buffers or memory: retrying at
//   once would fail the same way and spin), the next attempt waits 10 ms, doubling to 1 s; a
//   successful accept resets it.
//
// Both are plain state driven by the caller's clock, for one thread (the accepting one).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace ecs::endpoints {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(std::chrono::milliseconds interval) : interval_(interval) {}

  // Records one event at `now`. When a line is due, returns how many events it reports (this one
  // and every one since the last line) and starts a new interval.
  std::optional<uint64_t> record(Clock::time_point now);
  uint64_t pending() const { return pending_; }  // counted, not yet reported

 private:
  std::chrono::milliseconds interval_;
  std::optional<Clock::time_point> last_line_;
  uint64_t pending_ = 0;
};

class AcceptBackoff {
 public:
  AcceptBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max) {}

  // After a failure: how long to wait before the next accept().
  std::chrono::milliseconds failed();
  void succeeded() { next_ = std::chrono::milliseconds::zero(); }

 private:
  std::chrono::milliseconds initial_, max_;
  std::chrono::milliseconds next_{0};
};

}  // namespace ecs::endpoints
