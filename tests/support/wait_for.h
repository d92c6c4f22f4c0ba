// Waiting in tests for the event a fixed sleep would only hope for: a condition polled until it
// holds or a deadline passes. A test then takes as long as the machine needs, no longer, and a
// slow machine gives a failure that names what never happened instead of a flake. Header-only, so
// unit and integration tests share it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>

namespace ecs::testing {

// Polls `condition` until it returns true (true) or `timeout` passes (false). It is polled at once,
// then with a backoff from 1 ms doubling to 50 ms between polls, and a last time at the deadline.
// For support code that reports a timeout its own way; tests use waitFor.
template <typename Condition>
[[nodiscard]] bool pollUntil(Condition&& condition, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  std::chrono::milliseconds pause(1);
  while (!condition()) {
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  return true;
}

// pollUntil as an assertion: ASSERT_TRUE(waitFor(cond, 5s, "the task to stop")) fails the test on
// timeout with "timed out after 5000 ms waiting for the task to stop".
template <typename Condition>
[[nodiscard]] ::testing::AssertionResult waitFor(Condition&& condition,
                                                 std::chrono::milliseconds timeout,
                                                 std::string_view what = "the condition") {
  if (pollUntil(std::forward<Condition>(condition), timeout)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "timed out after " << timeout.count() << " ms waiting for " << what;
}

}  // namespace ecs::testing
