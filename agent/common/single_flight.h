// SingleFlight: at most one in-flight computation per key. The first caller for a key runs the
// work; callers arriving while it runs wait for that result instead of repeating the work (one
// download of an image or a layer however many pulls ask for it at once).
#pragma once

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "agent/common/result.h"

namespace ecs {

template <typename Value>
class SingleFlight {
 public:
  // Returns the result, and whether it was another caller's (true) or this caller's own run.
  template <typename Work>
  std::pair<Result<Value>, bool> run(const std::string& key, Work&& work) {
    return run(
        key, std::forward<Work>(work), [] { return Result<void>{}; }, std::chrono::hours(1));
  }

  // As run(), but a caller waiting for another's run gives up as soon as `stop()` returns an
  // error (asked every `poll` while it waits) and gets that error as the other's result; the run
  // goes on for whoever still waits. Lets each caller keep its own deadline or cancellation.
  template <typename Work, typename Stop>
  std::pair<Result<Value>, bool> run(const std::string& key, Work&& work, Stop&& stop,
                                     std::chrono::milliseconds poll) {
    std::promise<Result<Value>> promise;
    std::shared_future<Result<Value>> in_flight;
    {
      std::lock_guard lock(mutex_);
      if (auto it = in_flight_.find(key); it != in_flight_.end()) {
        in_flight = it->second;
      } else {
        in_flight_.emplace(key, promise.get_future().share());
      }
    }
    if (in_flight.valid()) {
      while (in_flight.wait_for(poll) != std::future_status::ready) {
        if (Result<void> go = stop(); !go) return {std::unexpected(go.error()), true};
      }
      return {in_flight.get(), true};
    }

    Result<Value> result = work();
    {
      std::lock_guard lock(mutex_);
      in_flight_.erase(key);
    }
    promise.set_value(result);
    return {std::move(result), false};
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_future<Result<Value>>> in_flight_;
};

}  // namespace ecs
