// HttpServer: a small HTTP/1.1 server on Boost.Beast for the agent's endpoints — keep-alive,
// bounded request size (431 for headers, 413 for bodies over the limit, 400 for malformed
// requests), 5 s read and write timeouts like the real agent's Go servers.
//
// It runs on io_contexts and threads of its own rather than the engine's loop: the credentials
// and metadata endpoints must answer tens of thousands of requests a second without waiting
// behind engine work, and engine work must not wait behind them. Each thread owns one io_context
// and the connections accepted onto it, so a connection never needs a lock or a strand.
// Handlers run on those threads and must not block: they read in-memory state only.
//
// Under abuse (a task opening thousands of connections, a slow or idle client), it holds at most
// `max_connections_per_client` connections per client address and `max_connections` in total,
// the latter lowered to fit the descriptor limit less a reserve kept for the rest of the agent
// (connection_limiter.h). A connection over a cap is accepted and reset at once, with no log line
// of its own. A failing accept() (out of descriptors, buffers or memory) is retried after a
// backoff, not at once (accept_throttle.h). Each of those is logged at most once per
// `log_interval`, with a count of what happened since the last line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/result.h"

namespace ecs::endpoints {

struct HttpRequest {
  std::string_view method;  // "GET"
  std::string_view target;  // "/v2/credentials/abc?x=y" as sent
  std::string_view body;
  std::string_view remote_address;  // the peer's IP address, no port
  // Header lookup (case-insensitive); "" when absent.
  std::function<std::string_view(std::string_view)> header;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>>
      headers;  // extra headers (Retry-After, Location)
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponse&)>;

struct HttpServerOptions {
  std::string name = "http";  // for logs: "task endpoint", "introspection", "metrics"
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (tests); port() says which
  int threads = 1;
  size_t header_limit = 16 * 1024;  // request line + headers
  size_t body_limit = 64 * 1024;
  std::chrono::milliseconds read_timeout{5000};  // a whole request, and an idle keep-alive wait
  std::chrono::milliseconds write_timeout{5000};

  size_t max_connections_per_client = 64;
  size_t max_connections = 1024;
  // Descriptors left to the rest of the agent (stats sampler, containerd, ACS/TCS, state
  // database): max_connections is lowered to the RLIMIT_NOFILE soft limit (read at start) less
  // this many, but never below a quarter of the limit.
  size_t fd_reserve = 512;
  std::chrono::milliseconds accept_backoff_initial{10};  // doubling after each failed accept()
  std::chrono::milliseconds accept_backoff_max{1000};
  std::chrono::milliseconds log_interval{10000};  // accept failures, refusals: one line each
};

// What a server has done since it started (counters) and holds now (open).
struct HttpServerCounters {
  uint64_t accepted = 0;       // connections served
  uint64_t refused = 0;        // connections over a cap, reset at once
  uint64_t accept_errors = 0;  // failed accept() calls
  uint64_t log_lines = 0;      // accept-failure and refusal lines written
  size_t open = 0;             // connections open now
  size_t max_connections = 0;  // the total cap in effect
};

class HttpServer {
 public:
  // Binds and starts serving. Errors: the address is invalid or the port in use.
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  HttpServerCounters counters() const;  // thread-safe
  // Stops accepting, closes every connection and joins the threads. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::endpoints
