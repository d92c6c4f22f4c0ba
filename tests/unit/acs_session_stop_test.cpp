// AcsSession::stop() while an upgrade hangs: a listener that never answers holds the connection
// attempt, and stop() must give it up rather than wait for the connect timeout.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <future>
#include <thread>

#include "agent/acs/acs_session.h"

namespace ecs::acs {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

class SilentHandler : public AcsHandler {
 public:
  void onPayload(AcsPayload, AcsReply) override {}
  void onCredentials(AcsCredentialsMessage, AcsReply) override {}
};

TEST(AcsSessionStop, AbandonsAnUpgradeInFlight) {
  // Connections queue in the backlog; nobody accepts or answers them.
  asio::io_context listener_io;
  asio::ip::tcp::acceptor listener(listener_io,
                                   asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = listener.local_endpoint().port();

  std::promise<void> asked;
  AcsSessionOptions options;
  options.cluster = "c";
  options.container_instance_arn = "arn:aws:ecs:us-west-2:123456789012:container-instance/c/1";
  options.agent_version = "1.0.0";
  options.agent_hash = "abc";
  options.region = "us-west-2";
  options.credentials = []() -> Result<aws::Credentials> {
    return aws::Credentials{.access_key_id = "AKID",
                            .secret_access_key = "secret",
                            .session_token = {},
                            .expiration = std::nullopt,
                            .source = "test"};
  };
  options.endpoint = [&, once = false]() mutable -> Result<std::string> {
    if (!once) asked.set_value();
    once = true;
    return fmt::format("http://127.0.0.1:{}", port);
  };
  options.connect_timeout = 60s;

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  SilentHandler handler;
  {
    AcsSession session(io, options, handler);
    session.start();
    ASSERT_EQ(asked.get_future().wait_for(10s), std::future_status::ready);
    auto start = std::chrono::steady_clock::now();
    session.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    EXPECT_EQ(session.connections(), 0);
    EXPECT_FALSE(session.connected());
  }
  work.reset();
  thread.join();
}

}  // namespace
}  // namespace ecs::acs
