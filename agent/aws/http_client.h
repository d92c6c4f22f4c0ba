// HttpClient: HTTP/1.1 (Boost.Beast, TLS through OpenSSL) for everything the agent says to the
// outside — registries, IMDS, and the AWS APIs (ECS, STS, S3, SSM ...), which sign an HttpRequest's
// method, URL, headers and body before it is sent. What goes out is exactly the request's method,
// target and headers, plus Host (as SigV4 signs it), Content-Length and the client's User-Agent:
// no Accept, Expect or Content-Type of the client's own.
//
// A request gives up at its own timeouts (connect, total, inactivity), at its deadline, or as soon
// as its cancellation check says so; a 2xx body can stream into a sink instead of memory. Redirects
// are returned, never followed: what the next hop may see (credentials) is the caller's decision.
// Connections are kept alive between requests to one origin. The proxy the environment names
// applies (agent/aws/proxy.h): plain http goes to it in absolute form, https through a CONNECT
// tunnel.
#pragma once

#include <chrono>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/aws/url.h"
#include "agent/common/result.h"

namespace ecs::aws {

// Header fields in the order they were added; names compare case-insensitively.
class HttpHeaders {
 public:
  using Field = std::pair<std::string, std::string>;

  void add(std::string name, std::string value);  // another field, even if the name is there
  void set(std::string name, std::string value);  // replaces every field of that name
  void remove(std::string_view name);
  bool contains(std::string_view name) const;
  std::string get(std::string_view name) const;  // the first field's value; empty if none
  std::vector<std::string> getAll(std::string_view name) const;

  const std::vector<Field>& fields() const { return fields_; }
  bool empty() const { return fields_.empty(); }
  void clear() { fields_.clear(); }

 private:
  std::vector<Field> fields_;
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;       // of the final response (not of a 100 Continue before it)
  std::string body;          // empty when a sink took it
  std::string redirect_url;  // a 3xx's Location, made absolute; empty otherwise
};

// Receives a 2xx body as it arrives, in place of HttpResponse::body. `head` is the response being
// received (status and headers, no body): a sink can tell a 206 from a 200. An error aborts the
// transfer and comes back from perform() as HttpFailure::kSink with the sink's own Error.
using BodySink = std::function<Result<void>(const HttpResponse& head, std::string_view chunk)>;

struct HttpRequest {
  using Clock = std::chrono::steady_clock;

  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  // Sent with its Content-Length; POST, PUT and PATCH always carry one (possibly 0).
  std::string body;

  std::chrono::milliseconds connect_timeout{30'000};  // capped by what `timeout` leaves
  std::chrono::milliseconds timeout{0};               // the whole exchange; 0: none
  // Aborts an exchange when no byte moves for this long (connecting aside); 0: never.
  std::chrono::seconds inactivity_timeout{0};
  Clock::time_point deadline = Clock::time_point::max();  // HttpFailure::kDeadline past it
  // Asked before the exchange and often during it (about ten times a second, even while the peer
  // is silent); true aborts with HttpFailure::kCancelled. Called on the performing thread.
  std::function<bool()> cancelled;

  BodySink sink;  // null: 2xx bodies are kept in HttpResponse::body
  // Largest body kept in memory. A 2xx body over it is HttpFailure::kTooLarge; other bodies (error
  // pages) are cut to it, since their start explains them.
  size_t max_body = 1 << 20;
};

// Why an exchange ended without an HTTP response.
enum class HttpFailure {
  kConnect,    // name resolution, TCP connect or TLS handshake failed
  kBroken,     // the connection dropped mid-exchange, or the peer sent nothing
  kTimedOut,   // the connect, total or inactivity timeout ran out
  kDeadline,   // the request's deadline passed (before or during the exchange)
  kCancelled,  // the request's cancellation check said stop
  kTooLarge,   // a 2xx body over max_body with no sink
  kSink,       // the sink refused a chunk
  kOther,
};

struct HttpError {
  HttpFailure failure = HttpFailure::kOther;
  // What happened, without the URL (a pre-signed URL must not reach a log through it): the
  // network's words (with the system's for a refused connection), the sink's Error unchanged.
  // Code: kUnavailable but for kTooLarge (kFailedPrecondition) and kSink (the sink's).
  Error cause;
  std::string method;
  std::string url;

  // The cause with "<method> <url>: " in front, for callers with nothing better to name the peer.
  Error asError() const;
};

template <typename T>
using HttpResult = std::expected<T, HttpError>;

struct HttpClientOptions {
  std::string user_agent;  // empty: no User-Agent header unless a request sets one
  // Whether the environment's proxy settings apply. IMDS turns this off: it is link-local, and
  // its tokens and credentials must never pass through a proxy.
  bool use_proxy = true;
  std::string protocols = "http,https";  // schemes allowed, comma-separated
  size_t max_idle_handles = 16;          // idle connections kept open for the next request
};

// Thread-safe: one client serves any number of threads at once.
class HttpClient {
 public:
  explicit HttpClient(HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One exchange: request out, response in. Any HTTP status is a response; an error means there
  // was none (or the sink refused it).
  HttpResult<HttpResponse> perform(const HttpRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecs::aws
