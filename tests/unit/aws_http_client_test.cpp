// HttpClient against a loopback HTTP server in this process: statuses, headers and bodies both
// ways, every way an exchange can end without a response (refused, silent, stalled, deadline,
// cancelled, a sink's refusal), and a large body streamed through a sink.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "agent/aws/http_client.h"
#include "tests/support/loopback_http_server.h"

namespace ecs::aws {
namespace {

using namespace std::chrono_literals;
using ecs::testing::httpResponse;
using ecs::testing::LoopbackConnection;
using ecs::testing::LoopbackHttpServer;
using ecs::testing::LoopbackRequest;
using Clock = std::chrono::steady_clock;

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Answers every request with `response`.
LoopbackHttpServer::Handler answer(std::string response) {
  return [response](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write(response);
  };
}

// Sends the head of a 200 with a 1000-byte body, ten bytes of it, then nothing until the client
// hangs up; `stalled` is set once the ten bytes are out.
LoopbackHttpServer::Handler stallMidBody(std::atomic<bool>* stalled = nullptr) {
  return [stalled](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
    if (stalled) *stalled = true;
    connection.waitForClientToHangUp();
  };
}

// A loopback port with nothing listening on it: bound (so no one else takes it) but not listening,
// so connecting is refused.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  }
  ~RefusingPort() { close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  const std::string& url() const { return url_; }

 private:
  int fd_ = -1;
  std::string url_;
};

HttpRequest get(std::string url) {
  HttpRequest request;
  request.url = std::move(url);
  return request;
}

TEST(HttpHeadersTest, NamesCompareCaseInsensitively) {
  HttpHeaders headers;
  headers.add("X-Amz-Date", "20260101T000000Z");
  headers.add("x-amz-meta", "one");
  headers.add("X-AMZ-META", "two");
  EXPECT_TRUE(headers.contains("x-amz-date"));
  EXPECT_EQ(headers.get("X-AMZ-DATE"), "20260101T000000Z");
  EXPECT_EQ(headers.getAll("X-Amz-Meta"), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(headers.get("Authorization"), "");

  headers.set("X-Amz-Meta", "three");  // replaces both
  EXPECT_EQ(headers.getAll("x-amz-meta"), (std::vector<std::string>{"three"}));
  headers.remove("X-AMZ-DATE");
  EXPECT_FALSE(headers.contains("X-Amz-Date"));
  ASSERT_EQ(headers.fields().size(), 1u);
  EXPECT_EQ(headers.fields()[0].first, "X-Amz-Meta");  // the spelling given is kept
}

TEST(HttpClientTest, ReturnsStatusHeadersAndBody) {
  LoopbackHttpServer server(answer(httpResponse(
      "201 Created", "Content-Type: text/plain\r\nX-Thing: one\r\nx-thing: two\r\n", "hello")));
  HttpClient client;
  auto response = client.perform(get(server.url("/a?b=c")));
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(response->body, "hello");
  EXPECT_EQ(response->headers.get("content-type"), "text/plain");
  EXPECT_EQ(response->headers.getAll("X-THING"), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(response->redirect_url, "");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].method, "GET");
  EXPECT_EQ(server.requests()[0].target, "/a?b=c");
}

TEST(HttpClientTest, SendsMethodHeadersAndBody) {
  LoopbackHttpServer server(answer(httpResponse("200 OK", "", "{}")));
  HttpClient client(HttpClientOptions{.user_agent = "ecs-node-agent/test"});
  HttpRequest request = get(server.url("/"));
  request.method = "POST";
  request.headers.add("Content-Type", "application/x-amz-json-1.1");
  request.headers.add("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters");
  // Large enough that some clients would ask for 100-continue first.
  request.body = "{\"padding\":\"" + std::string(2 << 20, 'x') + "\"}";
  auto response = client.perform(request);
  ASSERT_TRUE(response) << response.error().asError().message;
  ASSERT_EQ(server.requests().size(), 1u);
  const LoopbackRequest seen = server.requests()[0];
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.header("content-type"), "application/x-amz-json-1.1");
  EXPECT_EQ(seen.header("X-Amz-Target"), "AmazonEC2ContainerServiceV20141113.ListClusters");
  EXPECT_EQ(seen.header("User-Agent"), "ecs-node-agent/test");
  EXPECT_EQ(seen.header("Expect"), "");
  EXPECT_EQ(seen.body, request.body);
}

TEST(HttpClientTest, PutWithoutABodySendsAZeroLengthAndNoContentType) {
  LoopbackHttpServer server(answer(httpResponse("200 OK", "", "token")));
  HttpClient client;
  HttpRequest request = get(server.url("/latest/api/token"));
  request.method = "PUT";
  request.headers.add("X-aws-ec2-metadata-token-ttl-seconds", "21600");
  auto response = client.perform(request);
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->body, "token");
  const LoopbackRequest seen = server.requests().at(0);
  EXPECT_EQ(seen.method, "PUT");
  EXPECT_EQ(seen.header("Content-Length"), "0");
  EXPECT_FALSE(contains(seen.head, "Content-Type")) << seen.head;
  EXPECT_EQ(seen.header("x-aws-ec2-metadata-token-ttl-seconds"), "21600");
}

TEST(HttpClientTest, ErrorBodiesAreCutAndLargeSuccessfulOnesRefused) {
  const std::string big(10'000, 'e');
  LoopbackHttpServer server([&](const LoopbackRequest& request, LoopbackConnection& connection) {
    connection.write(request.target == "/error" ? httpResponse("500 Internal Server Error", "", big)
                                                : httpResponse("200 OK", "", big));
  });
  HttpClient client;
  HttpRequest request = get(server.url("/error"));
  request.max_body = 1000;
  auto error_page = client.perform(request);
  ASSERT_TRUE(error_page) << error_page.error().asError().message;
  EXPECT_EQ(error_page->status, 500);
  EXPECT_EQ(error_page->body, big.substr(0, 1000));

  request.url = server.url("/ok");
  auto too_large = client.perform(request);
  ASSERT_FALSE(too_large);
  EXPECT_EQ(too_large.error().failure, HttpFailure::kTooLarge);
  EXPECT_EQ(too_large.error().cause.code, ErrorCode::kFailedPrecondition);
}

TEST(HttpClientTest, RedirectsAreReturnedNotFollowed) {
  LoopbackHttpServer server(
      answer(httpResponse("307 Temporary Redirect", "Location: /elsewhere?x=1\r\n", "")));
  HttpClient client;
  auto response = client.perform(get(server.url("/here")));
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->status, 307);
  EXPECT_EQ(response->redirect_url, server.url("/elsewhere?x=1"));
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(HttpClientTest, RefusedConnectionNamesTheUrlAndTheErrno) {
  RefusingPort port;
  HttpClient client;
  auto response = client.perform(get(port.url()));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kConnect);
  EXPECT_EQ(response.error().cause.code, ErrorCode::kUnavailable);
  EXPECT_TRUE(contains(response.error().cause.message, "Connection refused"))
      << response.error().cause.message;
  EXPECT_FALSE(contains(response.error().cause.message, port.url()))
      << "the cause must not carry the URL";
  const Error error = response.error().asError();
  EXPECT_TRUE(error.message.starts_with("GET " + port.url() + ": ")) << error.message;
}

TEST(HttpClientTest, SilentPeerTimesOut) {
  LoopbackHttpServer silent(nullptr);  // connections wait in the backlog, never answered
  HttpClient client;
  HttpRequest request = get(silent.url("/"));
  request.timeout = 300ms;
  const auto start = Clock::now();
  auto response = client.perform(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kTimedOut) << response.error().asError().message;
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(HttpClientTest, StalledBodyHitsTheInactivityTimeout) {
  LoopbackHttpServer server([](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    connection.waitForClientToHangUp();
  });
  HttpClient client;
  HttpRequest request = get(server.url("/"));
  request.inactivity_timeout = 1s;
  const auto start = Clock::now();
  auto response = client.perform(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kTimedOut) << response.error().asError().message;
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(HttpClientTest, DeadlineStopsAStalledTransfer) {
  LoopbackHttpServer server(stallMidBody());
  HttpClient client;
  HttpRequest request = get(server.url("/"));
  request.deadline = Clock::now() + 300ms;
  auto response = client.perform(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kDeadline) << response.error().asError().message;
  EXPECT_EQ(response.error().cause.message, "deadline passed");
  EXPECT_LT(Clock::now() - request.deadline, 2s);
}

TEST(HttpClientTest, PassedDeadlineOrCancellationSendsNothing) {
  LoopbackHttpServer server(answer(httpResponse("200 OK", "", "")));
  HttpClient client;
  HttpRequest late = get(server.url("/"));
  late.deadline = Clock::now() - 1ms;
  auto response = client.perform(late);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kDeadline);

  HttpRequest cancelled = get(server.url("/"));
  cancelled.cancelled = [] { return true; };
  response = client.perform(cancelled);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kCancelled);
  EXPECT_EQ(response.error().cause.message, "cancelled");
  EXPECT_TRUE(server.requests().empty());
}

TEST(HttpClientTest, CancellationStopsAStalledTransfer) {
  std::atomic<bool> stalled{false};
  LoopbackHttpServer server(stallMidBody(&stalled));
  HttpClient client;
  HttpRequest request = get(server.url("/"));
  request.cancelled = [&] { return stalled.load(); };
  const auto start = Clock::now();
  auto response = client.perform(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kCancelled)
      << response.error().asError().message;
  EXPECT_TRUE(stalled);
  EXPECT_LT(Clock::now() - start, 3s);
}

TEST(HttpClientTest, StreamsALargeBodyThroughTheSink) {
  constexpr size_t kChunk = 1 << 20;
  constexpr size_t kChunks = 64;
  // Byte i of the body is i * 7 mod 251, so a dropped, repeated or reordered chunk shows.
  auto byteAt = [](size_t i) { return static_cast<char>((i * 7) % 251); };
  LoopbackHttpServer server([&](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kChunk * kChunks) +
                     "\r\nConnection: close\r\n\r\n");
    std::string chunk(kChunk, '\0');
    for (size_t c = 0; c < kChunks; ++c) {
      for (size_t i = 0; i < kChunk; ++i) chunk[i] = byteAt(c * kChunk + i);
      if (!connection.write(chunk)) return;
    }
  });
  HttpClient client;
  HttpRequest request = get(server.url("/blob"));
  size_t received = 0;
  size_t calls = 0;
  bool in_order = true;
  request.sink = [&](const HttpResponse& head, std::string_view data) -> Result<void> {
    EXPECT_EQ(head.status, 200);
    for (char c : data) in_order = in_order && c == byteAt(received++);
    ++calls;
    return {};
  };
  auto response = client.perform(request);
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body.empty()) << "a sink's body must not also be kept in memory";
  EXPECT_EQ(received, kChunk * kChunks);
  EXPECT_TRUE(in_order);
  EXPECT_GT(calls, 1u);
}

TEST(HttpClientTest, SinkSeesTheHeadAndOnlySuccessfulBodies) {
  LoopbackHttpServer server([](const LoopbackRequest& request, LoopbackConnection& connection) {
    connection.write(
        request.target == "/partial"
            ? httpResponse("206 Partial Content", "Content-Range: bytes 1-4/5\r\n", "ello")
            : httpResponse("404 Not Found", "", "{\"errors\":[]}"));
  });
  HttpClient client;
  std::string sunk;
  HttpRequest request = get(server.url("/partial"));
  request.sink = [&](const HttpResponse& head, std::string_view data) -> Result<void> {
    EXPECT_EQ(head.status, 206);
    EXPECT_EQ(head.headers.get("content-range"), "bytes 1-4/5");
    sunk.append(data);
    return {};
  };
  auto partial = client.perform(request);
  ASSERT_TRUE(partial) << partial.error().asError().message;
  EXPECT_EQ(sunk, "ello");

  sunk.clear();
  request.url = server.url("/missing");
  auto missing = client.perform(request);
  ASSERT_TRUE(missing) << missing.error().asError().message;
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "{\"errors\":[]}");
  EXPECT_EQ(sunk, "");
}

TEST(HttpClientTest, SinkErrorAbortsWithTheSinksOwnError) {
  LoopbackHttpServer server(answer(httpResponse("200 OK", "", std::string(100'000, 'b'))));
  HttpClient client;
  HttpRequest request = get(server.url("/"));
  request.sink = [](const HttpResponse&, std::string_view) -> Result<void> {
    return fail(ErrorCode::kInternal, "disk full (test)");
  };
  auto response = client.perform(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kSink);
  EXPECT_EQ(response.error().cause.code, ErrorCode::kInternal);
  EXPECT_EQ(response.error().cause.message, "disk full (test)");
}

TEST(HttpClientTest, ManyThreadsShareOneClient) {
  LoopbackHttpServer server([](const LoopbackRequest& request, LoopbackConnection& connection) {
    connection.write(httpResponse("200 OK", "", request.target));
  });
  HttpClient client(HttpClientOptions{.max_idle_handles = 2});
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const std::string target = "/" + std::to_string(t) + "/" + std::to_string(i);
        auto response = client.perform(get(server.url(target)));
        if (response && response->status == 200 && response->body == target) ++good;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(good, 8 * 20);
}

TEST(HttpClientTest, UrlOrigin) {
  EXPECT_EQ(urlOrigin("HTTP://Registry.Example.COM/v2/"), "http://registry.example.com:80");
  EXPECT_EQ(urlOrigin("https://s3.amazonaws.com/bucket/key?X-Amz-Signature=abc"),
            "https://s3.amazonaws.com:443");
  EXPECT_EQ(urlOrigin("http://127.0.0.1:5000/v2/app/blobs/sha256:00"), "http://127.0.0.1:5000");
  EXPECT_EQ(urlOrigin("not a url"), "");
}

}  // namespace
}  // namespace ecs::aws
