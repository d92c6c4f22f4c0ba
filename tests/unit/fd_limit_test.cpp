// raiseFdLimit: the soft RLIMIT_NOFILE goes up to the hard limit, and never down.
#include "agent/common/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace {

class FdLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0); }
  void TearDown() override { EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved_), 0); }
  rlimit saved_{};
};

TEST_F(FdLimitTest, RaisesTheSoftLimitToTheHardLimit) {
  ASSERT_NE(saved_.rlim_max, RLIM_INFINITY);  // Linux caps RLIMIT_NOFILE at fs.nr_open
  ASSERT_GT(saved_.rlim_max, 64u);
  rlimit lowered{64, saved_.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);

  auto change = ecs::raiseFdLimit();
  ASSERT_TRUE(change) << change.error().message;
  EXPECT_EQ(change->before.soft, 64u);
  EXPECT_EQ(change->after.soft, saved_.rlim_max);
  EXPECT_EQ(change->after.hard, saved_.rlim_max);
  auto now = ecs::fdLimit();
  ASSERT_TRUE(now);
  EXPECT_EQ(now->soft, saved_.rlim_max);

  // Already at the hard limit: nothing changes.
  auto again = ecs::raiseFdLimit();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->before.soft, again->after.soft);
}

}  // namespace
