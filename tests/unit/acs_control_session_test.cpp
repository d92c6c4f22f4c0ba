// The pieces the ACS and TCS sessions share: the session URL, the signed upgrade's headers, clean
// close codes and the reconnect backoff with its jitter.
#include <gtest/gtest.h>

#include "agent/acs/control_session.h"

namespace ecs::acs {
namespace {

using namespace std::chrono_literals;

TEST(ControlSessionUrl, AppendsWsAndQueryAndSignsTheHttpForm) {
  EXPECT_EQ(sessionUrl("https://ecs-t-1.us-west-2.amazonaws.com", "a=1"),
            "https://ecs-t-1.us-west-2.amazonaws.com/ws?a=1");
  EXPECT_EQ(sessionUrl("http://127.0.0.1:80/tcs/", "a=1&b=2"),
            "http://127.0.0.1:80/tcs/ws?a=1&b=2");
  EXPECT_EQ(sessionUrl("wss://host", "q=1"), "https://host/ws?q=1");
  EXPECT_EQ(sessionUrl("ws://host:8080/x", "q=1"), "http://host:8080/x/ws?q=1");
}

TEST(ControlSessionUrl, UpgradeHeadersAreTheSignature) {
  aws::Credentials credentials{.access_key_id = "AKID",
                               .secret_access_key = "secret",
                               .session_token = "token",
                               .expiration = std::nullopt,
                               .source = "test"};
  auto headers = signedUpgradeHeaders("https://host/ws?a=1", "us-east-1", credentials,
                                      std::chrono::system_clock::time_point(1440938160s));
  ASSERT_TRUE(headers) << headers.error().message;
  ASSERT_EQ(headers->size(), 3u);
  EXPECT_EQ((*headers)[0], (std::pair<std::string, std::string>{"X-Amz-Date", "20150830T123600Z"}));
  EXPECT_EQ((*headers)[1].first, "X-Amz-Security-Token");
  EXPECT_EQ((*headers)[2].first, "Authorization");
  EXPECT_NE((*headers)[2].second.find("/us-east-1/ecs/aws4_request"), std::string::npos);
  EXPECT_FALSE(signedUpgradeHeaders("no-scheme", "us-east-1", credentials,
                                    std::chrono::system_clock::now()));
}

TEST(ControlSessionClose, CleanCodes) {
  for (std::uint16_t code : {1000, 1001, 1006, 1011}) EXPECT_TRUE(isCleanCloseCode(code)) << code;
  for (std::uint16_t code : {1002, 1003, 1008, 4000}) EXPECT_FALSE(isCleanCloseCode(code)) << code;
}

TEST(ControlSessionBackoff, GrowsToTheCapWithBoundedJitterAndResets) {
  std::mt19937_64 random(42);
  Backoff exact(1s, 60s, 2.0, 0.0);
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(exact.next(random));
  EXPECT_EQ(delays, (std::vector<std::chrono::milliseconds>{1s, 2s, 4s, 8s, 16s, 32s, 60s, 60s}));
  exact.reset();
  EXPECT_EQ(exact.next(random), 1s);

  Backoff jittery(1s, 60s, 2.0, 0.2);
  std::chrono::milliseconds base = 1s;
  for (int i = 0; i < 10; ++i) {
    auto delay = jittery.next(random);
    EXPECT_GE(delay, base);
    EXPECT_LT(delay, base + base / 5 + 1ms);
    base = std::min<std::chrono::milliseconds>(base * 2, 60s);
  }
  EXPECT_EQ(jittered(5s, 0ms, random), 5s);
}

}  // namespace
}  // namespace ecs::acs
