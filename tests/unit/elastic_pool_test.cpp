// ElasticPool: threads start as work arrives (never more than the cap), run it side by side,
// end after the idle timeout, and join() runs what was queued.
#include "agent/common/elastic_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace ecs {
namespace {

using namespace std::chrono_literals;

// Waits (up to five seconds) until `condition` holds.
template <typename Condition>
bool eventually(Condition condition) {
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(ElasticPoolTest, AnIdlePoolHasNoThreads) {
  ElasticPool pool(8);
  EXPECT_EQ(pool.threads(), 0u);
}

TEST(ElasticPoolTest, ABurstRunsSideBySideUpToTheCap) {
  ElasticPool pool(4);
  std::mutex mutex;
  std::condition_variable release;
  bool go = false;
  std::atomic<int> running{0}, most{0}, finished{0};
  for (int i = 0; i < 10; ++i) {
    pool.post([&] {
      const int now = ++running;
      for (int seen = most; now > seen && !most.compare_exchange_weak(seen, now);) {
      }
      std::unique_lock lock(mutex);
      release.wait(lock, [&] { return go; });
      --running;
      ++finished;
    });
  }
  ASSERT_TRUE(eventually([&] { return running == 4; })) << "four should run at once";
  EXPECT_EQ(pool.threads(), 4u);
  {
    std::lock_guard lock(mutex);
    go = true;
  }
  release.notify_all();
  ASSERT_TRUE(eventually([&] { return finished == 10; }));
  EXPECT_EQ(most, 4);
}

TEST(ElasticPoolTest, ThreadsEndAfterTheIdleTimeoutAndComeBackForNewWork) {
  ElasticPool pool(4, 50ms);
  std::atomic<int> done{0};
  for (int i = 0; i < 3; ++i) pool.post([&] { ++done; });
  ASSERT_TRUE(eventually([&] { return done == 3; }));
  ASSERT_TRUE(eventually([&] { return pool.threads() == 0; }));
  pool.post([&] { ++done; });
  ASSERT_TRUE(eventually([&] { return done == 4; }));
}

TEST(ElasticPoolTest, JoinRunsWhatIsQueuedAndDropsWhatComesAfter) {
  std::atomic<int> done{0};
  {
    ElasticPool pool(1);
    for (int i = 0; i < 20; ++i) {
      pool.post([&] {
        std::this_thread::sleep_for(1ms);
        ++done;
      });
    }
    pool.join();
    EXPECT_EQ(done, 20);
    pool.post([&] { ++done; });
  }
  EXPECT_EQ(done, 20);
}

TEST(ElasticPoolTest, MoveOnlyWorkIsAccepted) {
  ElasticPool pool(2);
  std::atomic<int> value{0};
  auto owned = std::make_unique<int>(7);
  pool.post([&value, owned = std::move(owned)] { value = *owned; });
  pool.join();
  EXPECT_EQ(value, 7);
}

}  // namespace
}  // namespace ecs
