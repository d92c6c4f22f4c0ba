// parseWebSocketUrl: how an ACS endpoint URL is split for the dialer.
#include <gtest/gtest.h>

#include "agent/acs/websocket_client.h"

namespace ecs::acs {
namespace {

TEST(ParseWebSocketUrl, TakesHttpSchemesAsWebSocketOnes) {
  auto url = parseWebSocketUrl("https://ecs-a-1.us-west-2.amazonaws.com/ws?a=b%20c");
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "ecs-a-1.us-west-2.amazonaws.com");
  EXPECT_EQ(url->port, "443");
  EXPECT_EQ(url->target, "/ws?a=b%20c");

  url = parseWebSocketUrl("http://127.0.0.1:8080/ws");
  ASSERT_TRUE(url);
  EXPECT_FALSE(url->tls);
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, "8080");

  url = parseWebSocketUrl("ws://example.com");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->port, "80");
  EXPECT_EQ(url->target, "/");

  url = parseWebSocketUrl("WSS://[::1]:9443?x=1");
  ASSERT_TRUE(url);
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, "9443");
  EXPECT_EQ(url->target, "/?x=1");
}

TEST(ParseWebSocketUrl, RejectsOtherSchemesAndMissingHosts) {
  EXPECT_EQ(parseWebSocketUrl("ftp://example.com/").error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(parseWebSocketUrl("example.com/ws"));
  EXPECT_FALSE(parseWebSocketUrl("https:///ws"));
  EXPECT_FALSE(parseWebSocketUrl("https://[::1/ws"));
}

}  // namespace
}  // namespace ecs::acs
