// ProcessIdentity: telling a live agent process from a dead one, and when a process started.
#include "agent/common/process_identity.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

namespace ecs {
namespace {

using namespace std::chrono_literals;

TEST(ProcessIdentityTest, TheCurrentProcessIsAliveAndAReapedChildIsNot) {
  EXPECT_TRUE(isAlive(currentProcess()));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  const auto start = processStartTime(child);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  if (start) {
    EXPECT_FALSE(isAlive({child, *start}));
  }
  EXPECT_EQ(processStartTime(child), std::nullopt);
}

TEST(ProcessIdentityTest, AChildStartedNowStartedNowOnTheWallClock) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const auto before = std::chrono::system_clock::now();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[1]);
    char byte = 0;
    (void)::read(ready[0], &byte, 1);  // lives until the parent has looked
    ::_exit(0);
  }
  const auto started = processStartedAt(child);
  const auto after = std::chrono::system_clock::now();
  ::close(ready[1]);
  ::close(ready[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(started.has_value());
  // The boot time is whole seconds, so the start is within a second either side.
  EXPECT_GE(*started, before - 1s);
  EXPECT_LE(*started, after + 1s);
  EXPECT_EQ(processStartedAt(child), std::nullopt);
  EXPECT_EQ(processStartedAt(0), std::nullopt);
}

}  // namespace
}  // namespace ecs
