// SystemMounter::run: how a mount command's failure, output and hang come back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include "volumes/mounter.h"

namespace ecs::volumes {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(SystemMounterRunTest, SuccessFailureAndStderr) {
  auto mounter = makeSystemMounter();
  EXPECT_TRUE(mounter->run({"sh", "-c", "echo fine"}, 10s));
  auto r =
      mounter->run({"sh", "-c", "echo progress; echo 'mount error(13): denied' >&2; exit 32"}, 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "exit status 32: mount error(13): denied");
  // No stderr: stdout says why.
  r = mounter->run({"sh", "-c", "echo only-stdout; exit 1"}, 10s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "exit status 1: only-stdout");
  r = mounter->run({"/nonexistent/mount-helper"}, 10s);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("/nonexistent/mount-helper"));
}

TEST(SystemMounterRunTest, AHangingCommandIsKilledWithItsChildren) {
  auto mounter = makeSystemMounter();
  auto start = std::chrono::steady_clock::now();
  // The child sleep keeps the pipes open: only killing the process group ends the wait.
  auto r = mounter->run({"sh", "-c", "sleep 30 & sleep 30"}, 300ms);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("timed out after 300 ms"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

}  // namespace
}  // namespace ecs::volumes
