// HttpServer: a small HTTP/1.1 server on Boost.Beast for the agent's endpoints — keep-alive,
// bounded request size (431 for headers, 413 for bodies over the limit, 400 for malformed
// requests), 5 s read and write timeouts like the real agent's Go servers.
//
// It runs on io_contexts and threads of its own rather than the engine's loop: the credentials
// and metadata endpoints must answer tens of thousands of requests a second without waiting
// behind engine work, and engine work must not wait behind them. Each thread owns one io_context
// and the connections accepted onto it, so a connection never needs a lock or a strand.
// Handlers run on those threads and must not block: they read in-memory state only.
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
};

class HttpServer {
 public:
  // Binds and starts serving. Errors: the address is invalid or the port in use.
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Stops accepting, closes every connection and joins the threads. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::endpoints
