// The endpoint server under abuse: connection caps per client address and in total, the refusal
// of what is over them, the backoff and log throttling after failed accept() calls — the logic on
// its own with a fake clock, and the real server over loopback sockets, with a real EMFILE.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "agent/endpoints/accept_throttle.h"
#include "agent/endpoints/connection_limiter.h"
#include "agent/endpoints/http_server.h"
#include "netns/allocation_file.h"
#include "tests/support/wait_for.h"

namespace {

using ecs::endpoints::AcceptBackoff;
using ecs::endpoints::ConnectionLimiter;
using ecs::endpoints::HttpServer;
using ecs::endpoints::HttpServerOptions;
using ecs::endpoints::LogThrottle;
using ecs::netns::UniqueFd;
using ecs::testing::waitFor;
using namespace std::chrono_literals;

TEST(EndpointsLogThrottle, FirstEventAtOnceThenOneLinePerIntervalWithTheCount) {
  LogThrottle throttle(10s);
  LogThrottle::Clock::time_point t0{};
  EXPECT_EQ(throttle.record(t0), 1u);
  for (int i = 1; i <= 999; ++i) EXPECT_FALSE(throttle.record(t0 + i * 9ms)) << i;
  EXPECT_EQ(throttle.pending(), 999u);
  EXPECT_EQ(throttle.record(t0 + 10s), 1000u);  // the 999 held back, and this one
  EXPECT_EQ(throttle.pending(), 0u);
  EXPECT_FALSE(throttle.record(t0 + 19s));
  EXPECT_EQ(throttle.record(t0 + 20s), 2u);
}

TEST(EndpointsAcceptBackoff, DoublesFromInitialToMaxAndResetsOnSuccess) {
  AcceptBackoff backoff(10ms, 1000ms);
  std::vector<long> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(backoff.failed().count());
  EXPECT_EQ(delays, (std::vector<long>{10, 20, 40, 80, 160, 320, 640, 1000, 1000}));
  backoff.succeeded();
  EXPECT_EQ(backoff.failed(), 10ms);
  EXPECT_EQ(backoff.failed(), 20ms);
}

TEST(EndpointsConnectionCap, ConfiguredCapLoweredToKeepTheFdReserve) {
  using ecs::endpoints::connectionCap;
  EXPECT_EQ(connectionCap(1024, 1 << 20, 512), 1024u);  // a raised limit: the configured cap
  EXPECT_EQ(connectionCap(1024, 1024, 512), 512u);      // the distribution default
  EXPECT_EQ(connectionCap(1024, 600, 512), 150u);       // not below a quarter of the limit
  EXPECT_EQ(connectionCap(1024, 0, 512), 1u);
}

TEST(EndpointsConnectionLimiter, CapsPerClientAndInTotalAndSlotsGiveTheirPlaceBack) {
  ConnectionLimiter limiter({.per_client = 2, .total = 3});
  auto a1 = limiter.admit("172.31.0.2");
  auto a2 = limiter.admit("172.31.0.2");
  ASSERT_TRUE(a1 && a2);
  EXPECT_FALSE(limiter.admit("172.31.0.2"));  // its own cap
  auto b1 = limiter.admit("172.31.0.3");
  ASSERT_TRUE(b1);
  EXPECT_FALSE(limiter.admit("172.31.0.4"));  // the total
  EXPECT_EQ(limiter.open(), 3u);
  EXPECT_EQ(limiter.openFrom("172.31.0.2"), 2u);
  EXPECT_EQ(limiter.clients(), 2u);

  a1.reset();
  EXPECT_EQ(limiter.openFrom("172.31.0.2"), 1u);
  auto c1 = limiter.admit("172.31.0.4");
  ASSERT_TRUE(c1);
  // A moved slot is given back once, by its new owner.
  auto moved = std::move(*c1);
  c1.reset();
  EXPECT_EQ(limiter.openFrom("172.31.0.4"), 1u);
  { auto gone = std::move(moved); }
  EXPECT_EQ(limiter.openFrom("172.31.0.4"), 0u);
  a2.reset();
  b1.reset();
  EXPECT_EQ(limiter.open(), 0u);
  EXPECT_EQ(limiter.clients(), 0u);  // no empty entries left behind
}

// --- the real server over loopback ---------------------------------------------------------------

// A blocking client connection to 127.0.0.1:port with 3 s receive and send timeouts; -1 if the
// connection could not be made (errno tells why).
UniqueFd connectTo(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  timeval timeout{3, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return UniqueFd();
  return fd;
}

// Sends one keep-alive GET and reads the answer's head: its status line, or "" if the server
// closed or reset the connection (or did not answer within the timeout: "timeout").
std::string get(const UniqueFd& fd) {
  const std::string request = "GET /ping HTTP/1.1\r\nHost: test\r\n\r\n";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) return "";
  std::string response;
  char buffer[4096];
  while (response.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return "timeout";
    if (n <= 0) return "";
    response.append(buffer, static_cast<size_t>(n));
  }
  return response.substr(0, response.find("\r\n"));
}

class EndpointsHttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions options) {
    auto server = HttpServer::start(std::move(options),
                                    [](const auto&, auto& response) { response.body = "pong"; });
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(*server);
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(EndpointsHttpServerTest, ConnectionsOverThePerClientCapAreResetAndOthersServed) {
  HttpServerOptions options;
  options.max_connections_per_client = 3;
  options.fd_reserve = 0;
  start(options);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connectTo(server_->port()));
    ASSERT_TRUE(held.back());
    EXPECT_EQ(get(held.back()), "HTTP/1.1 200 OK") << i;
  }
  // 50 more from the same address: each is reset at once, and only one line is logged.
  for (int i = 0; i < 50; ++i) {
    auto extra = connectTo(server_->port());
    ASSERT_TRUE(extra);
    EXPECT_EQ(get(extra), "") << i;
  }
  auto counters = server_->counters();
  EXPECT_EQ(counters.refused, 50u);
  EXPECT_EQ(counters.accepted, 3u);
  EXPECT_EQ(counters.open, 3u);
  EXPECT_EQ(counters.log_lines, 1u);
  // The held connections are still served, keep-alive.
  for (auto& fd : held) EXPECT_EQ(get(fd), "HTTP/1.1 200 OK");

  // Once one closes, its place is free again.
  held.pop_back();
  ASSERT_TRUE(waitFor([&] { return server_->counters().open == 2; }, 5s, "the close"));
  auto again = connectTo(server_->port());
  EXPECT_EQ(get(again), "HTTP/1.1 200 OK");
}

TEST_F(EndpointsHttpServerTest, TotalCapHoldsWhateverTheClient) {
  HttpServerOptions options;
  options.max_connections_per_client = 100;
  options.max_connections = 2;
  options.fd_reserve = 0;
  start(options);
  EXPECT_EQ(server_->counters().max_connections, 2u);
  auto a = connectTo(server_->port());
  auto b = connectTo(server_->port());
  EXPECT_EQ(get(a), "HTTP/1.1 200 OK");
  EXPECT_EQ(get(b), "HTTP/1.1 200 OK");
  auto c = connectTo(server_->port());
  EXPECT_EQ(get(c), "");
  EXPECT_EQ(server_->counters().refused, 1u);
}

TEST_F(EndpointsHttpServerTest, TotalCapKeepsTheFdReserveBelowTheLimit) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  HttpServerOptions options;
  options.max_connections = 1 << 30;
  options.fd_reserve = 100;
  start(options);
  EXPECT_EQ(server_->counters().max_connections,
            ecs::endpoints::connectionCap(1 << 30, limit.rlim_cur, 100));
  EXPECT_LT(server_->counters().max_connections, limit.rlim_cur);
}

TEST_F(EndpointsHttpServerTest, IdleConnectionsAreClosedAfterTheReadTimeout) {
  HttpServerOptions options;
  options.read_timeout = 200ms;
  options.fd_reserve = 0;
  start(options);
  auto idle = connectTo(server_->port());
  ASSERT_TRUE(idle);
  ASSERT_TRUE(waitFor([&] { return server_->counters().open == 1; }, 5s, "the accept"));
  ASSERT_TRUE(waitFor([&] { return server_->counters().open == 0; }, 5s, "the idle timeout"));
  char byte;
  EXPECT_EQ(recv(idle.get(), &byte, 1, 0), 0);  // closed by the server
}

// Lowers the soft RLIMIT_NOFILE for a test and fills every free descriptor below it with
// /dev/null, so that the process is exactly out of descriptors; restores both when destroyed.
class DescriptorExhaustion {
 public:
  DescriptorExhaustion() {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = std::min<rlim_t>(saved_.rlim_cur, 4096);
    setrlimit(RLIMIT_NOFILE, &lowered);
    while (true) {
      UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!fd) break;
      filler_.push_back(std::move(fd));
    }
    full_ = errno == EMFILE;
  }
  ~DescriptorExhaustion() {
    filler_.clear();
    setrlimit(RLIMIT_NOFILE, &saved_);
  }
  bool full() const { return full_; }
  void release(size_t n) {
    for (size_t i = 0; i < n && !filler_.empty(); ++i) filler_.pop_back();
  }

 private:
  rlimit saved_{};
  std::vector<UniqueFd> filler_;
  bool full_ = false;
};

TEST_F(EndpointsHttpServerTest, AcceptOutOfDescriptorsBacksOffAndLogsOnce) {
  HttpServerOptions options;
  options.fd_reserve = 0;
  options.accept_backoff_initial = 10ms;
  options.accept_backoff_max = 1000ms;
  options.log_interval = 10s;
  start(options);
  DescriptorExhaustion exhaustion;
  ASSERT_TRUE(exhaustion.full());
  // One descriptor for the client: its connection completes in the kernel's backlog, and the
  // server's accept() then has none left.
  exhaustion.release(1);
  auto client = connectTo(server_->port());
  ASSERT_TRUE(client) << std::strerror(errno);
  const auto connected = std::chrono::steady_clock::now();
  ASSERT_TRUE(waitFor([&] { return server_->counters().accept_errors >= 5; }, 5s,
                      "five failed accept() calls"));
  // Five failures are four waits apart: 10 + 20 + 40 + 80 ms. A server retrying at once would
  // have failed thousands of times by now.
  const auto elapsed = std::chrono::steady_clock::now() - connected;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LE(server_->counters().accept_errors, 7u);
  EXPECT_EQ(server_->counters().log_lines, 1u);
  EXPECT_EQ(server_->counters().accepted, 0u);

  // Descriptors free again: the waiting connection is taken and served.
  exhaustion.release(16);
  EXPECT_EQ(get(client), "HTTP/1.1 200 OK");
  EXPECT_EQ(server_->counters().accepted, 1u);
}

}  // namespace
