// PullControl: when a pull (and every registry request and content write it makes) gives up — at a
// deadline (ECS_IMAGE_PULL_TIMEOUT, as the engine computes it) or as soon as the caller cancels.
#pragma once

#include <chrono>
#include <functional>

#include "agent/common/result.h"

namespace ecs::images {

struct PullControl {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // Asked often while the pull runs, from the pull's threads (it must be thread-safe and cheap);
  // true stops the pull. Empty: never cancelled.
  std::function<bool()> cancelled;

  // kUnavailable "pull deadline passed" or "pull cancelled" once either applies.
  Result<void> check() const {
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ErrorCode::kUnavailable, "pull deadline passed");
    }
    if (cancelled && cancelled()) return fail(ErrorCode::kUnavailable, "pull cancelled");
    return {};
  }
};

}  // namespace ecs::images
