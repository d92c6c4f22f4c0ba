// EngineClock: the clock of every engine decision that depends on elapsed time — stop timeouts,
// health-check intervals and start periods, startTimeout, the restart policy's attempt period.
//
// It is steady_clock plus an offset that only tests move (advance()), so the engine's
// state-machine tests cover minutes of behaviour in milliseconds without a second clock type in
// production: until advance() is first called, timers wait exactly as steady_timer would; after
// it, their waits are cut into short slices so that a jump of the offset is noticed at once.
#pragma once

#include <atomic>
#include <boost/asio/basic_waitable_timer.hpp>
#include <chrono>

namespace ecs::engine {

struct EngineClock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<EngineClock, duration>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    return time_point(std::chrono::steady_clock::now().time_since_epoch() +
                      duration(offset_.load(std::memory_order_relaxed)));
  }
  // Tests only: moves every engine clock in the process forward by `by`.
  static void advance(duration by) noexcept {
    manual_.store(true, std::memory_order_relaxed);
    offset_.fetch_add(by.count(), std::memory_order_relaxed);
  }
  static bool manual() noexcept { return manual_.load(std::memory_order_relaxed); }

 private:
  static inline std::atomic<rep> offset_{0};
  static inline std::atomic<bool> manual_{false};
};

struct EngineClockWaitTraits {
  static EngineClock::duration to_wait_duration(const EngineClock::duration& d) {
    if (!EngineClock::manual()) return d;
    return std::min<EngineClock::duration>(d, std::chrono::milliseconds(2));
  }
  static EngineClock::duration to_wait_duration(const EngineClock::time_point& t) {
    return to_wait_duration(t - EngineClock::now());
  }
};

using EngineTimer = boost::asio::basic_waitable_timer<EngineClock, EngineClockWaitTraits>;

}  // namespace ecs::engine
