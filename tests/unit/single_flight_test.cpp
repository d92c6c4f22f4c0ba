// SingleFlight: one run per key however many callers ask, and callers that stop waiting on their
// own terms (a pull's deadline or cancellation) without stopping the run for the others.
#include "agent/common/single_flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace ecs {
namespace {

using namespace std::chrono_literals;

TEST(SingleFlightTest, CallersArrivingDuringARunShareItsResult) {
  SingleFlight<int> flight;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::atomic<int> runs{0};
  auto work = [&]() -> Result<int> {
    if (runs++ == 0) started.set_value();
    released.wait();
    return 42;
  };
  std::pair<Result<int>, bool> first{0, false};
  std::thread leader([&] { first = flight.run("key", work); });
  started.get_future().wait();

  std::pair<Result<int>, bool> second{0, false};
  std::thread joiner([&] { second = flight.run("key", work); });
  release.set_value();
  leader.join();
  joiner.join();
  ASSERT_TRUE(first.first);
  EXPECT_EQ(*first.first, 42);
  EXPECT_FALSE(first.second);
  // The joiner either shared the run or, arriving after it ended, ran the work itself.
  ASSERT_TRUE(second.first);
  EXPECT_EQ(*second.first, 42);
  EXPECT_EQ(runs.load(), second.second ? 1 : 2);
}

TEST(SingleFlightTest, AWaiterThatStopsGetsItsOwnErrorAndTheRunGoesOn) {
  SingleFlight<int> flight;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::pair<Result<int>, bool> leader_result{0, false};
  std::thread leader([&] {
    leader_result = flight.run("key", [&]() -> Result<int> {
      started.set_value();
      released.wait();
      return 7;
    });
  });
  started.get_future().wait();

  std::atomic<int> asked{0};
  auto [result, joined] = flight.run(
      "key", []() -> Result<int> { return fail(ErrorCode::kInternal, "must not run"); },
      [&]() -> Result<void> {
        if (++asked < 3) return {};
        return fail(ErrorCode::kUnavailable, "pull cancelled");
      },
      1ms);
  EXPECT_TRUE(joined);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "pull cancelled");
  EXPECT_EQ(asked.load(), 3);

  release.set_value();
  leader.join();
  ASSERT_TRUE(leader_result.first);
  EXPECT_EQ(*leader_result.first, 7);
  EXPECT_FALSE(leader_result.second);
}

}  // namespace
}  // namespace ecs
