// RateLimiter and the small metrics/HTTP helpers of agent/endpoints.
#include <gtest/gtest.h>

#include "agent/endpoints/http_util.h"
#include "agent/endpoints/rate_limiter.h"

namespace {

using namespace std::chrono_literals;
using ecs::endpoints::RateLimiter;

struct FakeClock {
  RateLimiter::Clock::time_point now{std::chrono::seconds(1000)};
};

TEST(RateLimiterTest, BurstThenSteadyPerClient) {
  FakeClock clock;
  RateLimiter limiter({40, 60}, [&] { return clock.now; });
  for (int i = 0; i < 60; ++i) ASSERT_FALSE(limiter.admit("10.0.0.1")) << i;
  auto wait = limiter.admit("10.0.0.1");
  ASSERT_TRUE(wait);
  EXPECT_EQ(wait->count(), 25);  // one token at 40/s
  // Another client has its own bucket.
  EXPECT_FALSE(limiter.admit("10.0.0.2"));
  // 100 ms later: 4 tokens.
  clock.now += 100ms;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(limiter.admit("10.0.0.1")) << i;
  EXPECT_TRUE(limiter.admit("10.0.0.1"));
}

TEST(RateLimiterTest, IdleBucketsAreForgotten) {
  FakeClock clock;
  RateLimiter limiter({40, 60}, [&] { return clock.now; });
  for (int i = 0; i < 100; ++i) limiter.admit("10.0.0." + std::to_string(i));
  EXPECT_EQ(limiter.clients(), 100u);
  clock.now += 10s;
  limiter.admit("10.1.1.1");
  EXPECT_EQ(limiter.clients(), 1u);
}

TEST(RateLimiterTest, ParseRateLimit) {
  auto ok = ecs::endpoints::parseRateLimit("40,60");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->steady, 40);
  EXPECT_EQ(ok->burst, 60);
  EXPECT_TRUE(ecs::endpoints::parseRateLimit(" 1.5 , 3 "));
  EXPECT_FALSE(ecs::endpoints::parseRateLimit("40"));
  EXPECT_FALSE(ecs::endpoints::parseRateLimit("0,60"));
  EXPECT_FALSE(ecs::endpoints::parseRateLimit("40,-1"));
  EXPECT_FALSE(ecs::endpoints::parseRateLimit("a,b"));
}

TEST(HttpUtilTest, CleanPathLikeGorillaMux) {
  using ecs::endpoints::cleanPath;
  EXPECT_EQ(cleanPath("/v2/credentials/abc"), "/v2/credentials/abc");
  EXPECT_EQ(cleanPath("/v2//credentials/abc"), "/v2/credentials/abc");
  EXPECT_EQ(cleanPath("/v4/x/../y/task"), "/v4/y/task");
  EXPECT_EQ(cleanPath("/v2/metadata/"), "/v2/metadata/");
  EXPECT_EQ(cleanPath("/.."), "/");
  EXPECT_EQ(cleanPath(""), "/");
  EXPECT_EQ(cleanPath("/a/./b"), "/a/b");
}

TEST(HttpUtilTest, QueryAndDecoding) {
  using ecs::endpoints::queryParam;
  EXPECT_EQ(queryParam("id=abc&x=1", "id"), "abc");
  EXPECT_EQ(queryParam("x=1&taskarn=arn%3Aaws%3Aecs", "taskarn"), "arn:aws:ecs");
  EXPECT_EQ(queryParam("id=", "id"), "");
  EXPECT_FALSE(queryParam("x=1", "id"));
  EXPECT_FALSE(ecs::endpoints::percentDecode("%zz"));
  EXPECT_FALSE(ecs::endpoints::percentDecode("abc%4"));
}

TEST(HttpUtilTest, Rfc3339Nano) {
  using namespace std::chrono;
  auto t = sys_days{2026y / 1 / 2} + 3h + 4min + 5s;
  EXPECT_EQ(ecs::endpoints::formatTimeRfc3339Nano(t), "2026-01-02T03:04:05Z");
  EXPECT_EQ(ecs::endpoints::formatTimeRfc3339Nano(t + 120ms), "2026-01-02T03:04:05.12Z");
}

}  // namespace
