// Waiting that a std::stop_token ends early: backoff delays in retry loops, and a thread that
// only waits to be told to stop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>

namespace ecs {

// Waits `delay` unless `stop` is requested first; false when stopped.
inline bool sleepFor(std::chrono::milliseconds delay, std::stop_token stop) {
  std::mutex mutex;
  std::condition_variable_any wake;
  std::unique_lock lock(mutex);
  return !wake.wait_for(lock, stop, delay, [] { return false; });
}

// Waits until `stop` is requested.
inline void waitForStop(std::stop_token stop) {
  std::mutex mutex;
  std::condition_variable_any wake;
  std::unique_lock lock(mutex);
  wake.wait(lock, stop, [] { return false; });
}

}  // namespace ecs
