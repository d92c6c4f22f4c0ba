#include "agent/aws/http_client.h"

#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/aws/proxy.h"
#include "agent/aws/tls_context.h"
#include "agent/common/text.h"

namespace ecs::aws {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = HttpRequest::Clock;
using boost::system::error_code;

// Large reads mean fewer sink calls (and fewer content-store messages per layer) when streaming.
constexpr size_t kStreamingBufferBytes = 512 * 1024;
constexpr size_t kBufferBytes = 16 * 1024;
constexpr size_t kMaxHeaderBytes = 64 * 1024;
// How often a waiting exchange asks its cancellation check.
constexpr std::chrono::milliseconds kPollInterval{100};

bool sendsBody(const HttpRequest& request) {
  return !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
         request.method == "PATCH";
}

// Where a request goes: straight to its host, or through a proxy.
struct Route {
  bool tls = false;
  std::string host;  // the URL's, without IPv6 brackets
  std::string port;
  std::string target;       // origin form ("/path?query"), or absolute through an HTTP proxy
  std::string host_header;  // as SigV4 signs it
  bool proxied = false;
  std::string proxy_host, proxy_port;
  std::string proxy_authorization;  // "Basic ..." when the proxy URL carries credentials

  // Connections to one key are interchangeable.
  std::string key() const {
    return (tls ? "https://" : "http://") + host + ":" + port +
           (proxied ? " via " + proxy_host + ":" + proxy_port : "");
  }
  const std::string& dialHost() const { return proxied ? proxy_host : host; }
  const std::string& dialPort() const { return proxied ? proxy_port : port; }
};

// The route of a URL: straight to its host, or through the proxy the environment names for it
// (agent/aws/proxy.h).
Result<Route> routeOf(const std::string& url, const HttpClientOptions& options) {
  std::optional<UrlParts> parts = splitUrl(url);
  if (!parts) return fail(ErrorCode::kInvalidArgument, "malformed URL");
  if (parts->scheme != "http" && parts->scheme != "https") {
    return fail(ErrorCode::kInvalidArgument, "scheme {} not supported", parts->scheme);
  }
  bool allowed = false;
  for (std::string_view rest = options.protocols; !rest.empty();) {
    const size_t comma = rest.find(',');
    if (text::trim(rest.substr(0, comma)) == parts->scheme) allowed = true;
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (!allowed) {
    return fail(ErrorCode::kInvalidArgument, "scheme {} not allowed for this client",
                parts->scheme);
  }
  Route route;
  route.tls = parts->scheme == "https";
  route.host = withoutBrackets(parts->host);
  route.port = connectPort(*parts);
  route.target =
      (parts->path.empty() ? "/" : parts->path) + (parts->query.empty() ? "" : "?" + parts->query);
  route.host_header = hostHeader(url);
  if (!options.use_proxy) return route;
  Result<std::optional<Proxy>> proxy = proxyFor(parts->scheme, route.host);
  if (!proxy) return fail(proxy.error());
  if (!*proxy) return route;
  route.proxied = true;
  route.proxy_host = (*proxy)->host;
  route.proxy_port = (*proxy)->port;
  route.proxy_authorization = (*proxy)->authorization;
  if (!route.tls) route.target = "http://" + route.host_header + route.target;
  return route;
}

// One TCP connection, plain or TLS, with its own io_context: whichever thread performs an exchange
// on it runs it, and it can wait in the idle pool between exchanges.
struct Connection {
  asio::io_context io{1};
  std::optional<tcp::socket> plain;
  std::optional<asio::ssl::stream<tcp::socket>> secure;
  boost::beast::flat_buffer buffer;  // bytes read past the last response (none, normally)
  std::string key;
  bool reused = false;

  Connection() { plain.emplace(io); }
  tcp::socket& socket() { return secure ? secure->next_layer() : *plain; }

  template <typename Operation>
  void withStream(Operation&& operation) {
    if (secure) {
      operation(*secure);
    } else {
      operation(*plain);
    }
  }

  // An idle connection the peer has closed (or written to unasked) is no use.
  bool looksAlive() {
    pollfd fd{socket().native_handle(), POLLIN, 0};
    return buffer.size() == 0 && ::poll(&fd, 1, 0) == 0;
  }
};

// Name resolution on a thread of its own, so that a stuck resolver cannot hold the exchange past
// its timeouts: the thread is left to finish alone, and its answer dropped.
class Resolution {
 public:
  Resolution(const std::string& host, const std::string& port) : state_(std::make_shared<State>()) {
    std::thread([state = state_, host, port] {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int status = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
      std::vector<tcp::endpoint> endpoints;
      for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        tcp::endpoint endpoint;
        std::memcpy(endpoint.data(), a->ai_addr, a->ai_addrlen);
        endpoint.resize(a->ai_addrlen);
        endpoints.push_back(endpoint);
      }
      if (found != nullptr) ::freeaddrinfo(found);
      std::lock_guard lock(state->mutex);
      state->status = status;
      state->endpoints = std::move(endpoints);
      state->done = true;
      state->ready.notify_all();
    }).detach();
  }

  // Waits until `until`; the result, or nullopt if not there yet.
  std::optional<Result<std::vector<tcp::endpoint>>> waitUntil(Clock::time_point until) {
    std::unique_lock lock(state_->mutex);
    if (!state_->ready.wait_until(lock, until, [&] { return state_->done; })) return std::nullopt;
    if (state_->status != 0) {
      return Result<std::vector<tcp::endpoint>>(
          fail(ErrorCode::kUnavailable, "{}", gai_strerror(state_->status)));
    }
    return Result<std::vector<tcp::endpoint>>(state_->endpoints);
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable ready;
    bool done = false;
    int status = 0;
    std::vector<tcp::endpoint> endpoints;
  };
  std::shared_ptr<State> state_;
};

// What stopped an exchange early, as an HttpError.
struct Stop {
  HttpFailure failure;
  Error cause;
};

bool brokenConnection(const error_code& ec) {
  return ec == asio::error::eof || ec == http::error::end_of_stream ||
         ec == http::error::partial_message || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::ssl::error::stream_truncated ||
         ec == asio::error::connection_aborted;
}

// One request and its response over one connection.
class Exchange {
 public:
  Exchange(const HttpRequest& request, const HttpClientOptions& options, const Route& route,
           Clock::time_point total_end)
      : request_(request), options_(options), route_(route), total_end_(total_end) {}

  // The connection's TCP (and TLS, and proxy tunnel) set up, all within the connect timeout.
  std::optional<Stop> connect(Connection& c, asio::ssl::context* tls) {
    const Clock::time_point connect_end =
        request_.connect_timeout.count() > 0
            ? std::min(Clock::now() + request_.connect_timeout, total_end_)
            : total_end_;
    const std::string& host = route_.dialHost();
    const std::string& port = route_.dialPort();
    std::vector<tcp::endpoint> endpoints;
    error_code parse_error;
    const auto address = asio::ip::make_address(host, parse_error);
    if (!parse_error) {
      endpoints.emplace_back(address, static_cast<unsigned short>(std::atoi(port.c_str())));
    } else {
      Resolution resolution(host, port);
      while (true) {
        const Clock::time_point now = Clock::now();
        if (auto stop = limitReached(now, connect_end, "resolving the host timed out")) return stop;
        auto found = resolution.waitUntil(
            std::min({now + kPollInterval, connect_end, total_end_, request_.deadline}));
        if (!found) continue;
        if (!*found) {
          return Stop{HttpFailure::kConnect,
                      Error{ErrorCode::kUnavailable,
                            fmt::format("could not resolve {}: {}", host, found->error().message)}};
        }
        endpoints = std::move(**found);
        break;
      }
    }

    error_code ec;
    if (auto stop = await(c, ec, connect_end, "connecting timed out", [&](auto handler) {
          asio::async_connect(c.socket(), endpoints, handler);
        })) {
      return stop;
    }
    if (ec) {
      return Stop{HttpFailure::kConnect,
                  Error{ErrorCode::kUnavailable, fmt::format("failed to connect to {} port {}: {}",
                                                             host, port, ec.message())}};
    }
    c.socket().set_option(asio::socket_base::keep_alive(true), ec);
    c.socket().set_option(tcp::no_delay(true), ec);

    if (route_.proxied && route_.tls) {
      if (auto stop = tunnel(c, connect_end)) return stop;
    }
    if (route_.tls) {
      if (auto stop = handshake(c, *tls, connect_end)) return stop;
    }
    return std::nullopt;
  }

  // Sends the request and reads the response into `response` (or through the sink). Sets
  // `keep` when the connection may serve another exchange.
  std::optional<Stop> run(Connection& c, HttpResponse& response, bool& keep, bool& got_some) {
    http::request<http::string_body> message;
    if (const http::verb verb = http::string_to_verb(request_.method);
        verb != http::verb::unknown) {
      message.method(verb);
    } else {
      message.method_string(request_.method);
    }
    message.target(route_.target);
    message.version(11);
    if (!request_.headers.contains("Host")) message.set(http::field::host, route_.host_header);
    if (!options_.user_agent.empty() && !request_.headers.contains("User-Agent")) {
      message.set(http::field::user_agent, options_.user_agent);
    }
    if (route_.proxied && !route_.tls && !route_.proxy_authorization.empty()) {
      message.set(http::field::proxy_authorization, route_.proxy_authorization);
    }
    for (const auto& [name, value] : request_.headers.fields()) message.insert(name, value);
    if (sendsBody(request_)) {
      message.body() = request_.body;
      message.content_length(request_.body.size());
    }

    error_code ec;
    if (auto stop = await(c, ec, inactivityEnd(), "sending timed out", [&](auto handler) {
          c.withStream([&](auto& stream) { http::async_write(stream, message, handler); });
        })) {
      return stop;
    }
    if (ec) return broken("sending the request", ec);

    // Informational responses (100 Continue, 103 Early Hints) come before the real one.
    std::optional<http::response_parser<http::buffer_body>> parser;
    do {
      parser.emplace();
      parser->header_limit(kMaxHeaderBytes);
      parser->body_limit(boost::none);
      if (request_.method == "HEAD") parser->skip(true);
      auto stop =
          await(c, ec, inactivityEnd(), "waiting for the response timed out", [&](auto handler) {
            c.withStream(
                [&](auto& stream) { http::async_read_header(stream, c.buffer, *parser, handler); });
          });
      got_some = got_some || parser->got_some();
      if (stop) return stop;
      if (ec) return broken("reading the response", ec);
    } while (parser->get().result_int() / 100 == 1 && parser->get().result_int() != 101);

    const auto& head = parser->get();
    response.status = static_cast<long>(head.result_int());
    for (const auto& field : head) {
      response.headers.add(std::string(field.name_string()), std::string(field.value()));
    }
    if (response.status / 100 == 3) {
      if (std::string location = response.headers.get("Location"); !location.empty()) {
        response.redirect_url = resolveUrl(request_.url, location);
      }
    }

    const bool success = response.status / 100 == 2;
    const bool streaming = success && request_.sink;
    std::string chunk(streaming ? kStreamingBufferBytes : kBufferBytes, '\0');
    size_t filled = 0;
    bool complete = true;
    // What is in `chunk` goes to the sink or the body. A sink gets whole chunks (fewer, larger
    // content-store writes) but for the last.
    auto deliver = [&]() -> std::optional<Stop> {
      const std::string_view data(chunk.data(), filled);
      filled = 0;
      if (streaming) {
        if (Result<void> written = request_.sink(response, data); !written) {
          return Stop{HttpFailure::kSink, written.error()};
        }
      } else if (response.body.size() + data.size() > request_.max_body) {
        if (success) {
          return Stop{HttpFailure::kTooLarge,
                      Error{ErrorCode::kFailedPrecondition,
                            fmt::format("response body larger than {} bytes", request_.max_body)}};
        }
        // An error page's start explains it; the rest is not worth reading.
        response.body.append(data.substr(0, request_.max_body - response.body.size()));
        complete = false;
      } else {
        response.body.append(data);
      }
      return std::nullopt;
    };
    while (complete && !parser->is_done()) {
      parser->get().body().data = chunk.data() + filled;
      parser->get().body().size = chunk.size() - filled;
      if (auto stop = await(c, ec, inactivityEnd(), "the body stopped arriving", [&](auto handler) {
            c.withStream(
                [&](auto& stream) { http::async_read_some(stream, c.buffer, *parser, handler); });
          })) {
        return stop;
      }
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return broken("reading the body", ec);
      filled = chunk.size() - parser->get().body().size;
      if (filled == chunk.size() || (parser->is_done() && filled > 0)) {
        if (auto stop = deliver()) return stop;
      }
    }
    keep = complete && parser->keep_alive() && c.buffer.size() == 0;
    return std::nullopt;
  }

 private:
  // The deadline, the cancellation check and the total timeout, then the phase's own limit.
  std::optional<Stop> limitReached(Clock::time_point now, Clock::time_point phase_end,
                                   std::string_view phase_message) const {
    if (now >= request_.deadline) {
      return Stop{HttpFailure::kDeadline, Error{ErrorCode::kUnavailable, "deadline passed"}};
    }
    if (request_.cancelled && request_.cancelled()) {
      return Stop{HttpFailure::kCancelled, Error{ErrorCode::kUnavailable, "cancelled"}};
    }
    if (now >= total_end_) {
      return Stop{HttpFailure::kTimedOut,
                  Error{ErrorCode::kUnavailable,
                        fmt::format("Operation timed out after {} ms", request_.timeout.count())}};
    }
    if (now >= phase_end) {
      return Stop{HttpFailure::kTimedOut,
                  Error{ErrorCode::kUnavailable, std::string(phase_message)}};
    }
    return std::nullopt;
  }

  // Starts one asynchronous operation with `start(handler)` and waits for it as wait() does; the
  // operation's own error lands in `ec`.
  template <typename Start>
  std::optional<Stop> await(Connection& c, error_code& ec, Clock::time_point phase_end,
                            std::string_view phase_message, Start start) {
    bool done = false;
    c.io.restart();
    start([&](const error_code& e, auto&&...) {
      ec = e;
      done = true;
    });
    return wait(c, done, phase_end, phase_message);
  }

  // Runs the connection's operations until `done`, or until a limit: then the socket is closed,
  // the aborted operation allowed to finish, and the limit returned.
  std::optional<Stop> wait(Connection& c, const bool& done, Clock::time_point phase_end,
                           std::string_view phase_message) {
    while (!done) {
      const Clock::time_point now = Clock::now();
      if (auto stop = limitReached(now, phase_end, phase_message)) {
        error_code ignored;
        c.socket().close(ignored);
        while (!done && c.io.run_one() != 0) {
        }
        return stop;
      }
      c.io.run_one_until(std::min({now + kPollInterval, phase_end, total_end_, request_.deadline}));
    }
    return std::nullopt;
  }

  Clock::time_point inactivityEnd() const {
    return request_.inactivity_timeout.count() > 0 ? Clock::now() + request_.inactivity_timeout
                                                   : Clock::time_point::max();
  }

  Stop broken(std::string_view doing, const error_code& ec) const {
    if (ec == http::error::end_of_stream) {
      return Stop{
          HttpFailure::kBroken,
          Error{ErrorCode::kUnavailable, "the server closed the connection without answering"}};
    }
    return Stop{brokenConnection(ec) ? HttpFailure::kBroken : HttpFailure::kOther,
                Error{ErrorCode::kUnavailable, fmt::format("{}: {}", doing, ec.message())}};
  }

  // CONNECT host:port through the proxy, for TLS end to end.
  std::optional<Stop> tunnel(Connection& c, Clock::time_point connect_end) {
    http::request<http::empty_body> connect{http::verb::connect,
                                            authority(route_.host, route_.port), 11};
    connect.set(http::field::host, connect.target());
    if (!route_.proxy_authorization.empty()) {
      connect.set(http::field::proxy_authorization, route_.proxy_authorization);
    }
    constexpr std::string_view kTimedOut = "connecting through the proxy timed out";
    error_code ec;
    if (auto stop = await(c, ec, connect_end, kTimedOut,
                          [&](auto handler) { http::async_write(*c.plain, connect, handler); })) {
      return stop;
    }
    http::response_parser<http::empty_body> answer;
    answer.skip(true);  // a CONNECT's answer has no body: the tunnel follows
    if (!ec) {
      if (auto stop = await(c, ec, connect_end, kTimedOut, [&](auto handler) {
            http::async_read_header(*c.plain, c.buffer, answer, handler);
          })) {
        return stop;
      }
    }
    if (ec) {
      return Stop{HttpFailure::kConnect,
                  Error{ErrorCode::kUnavailable, fmt::format("proxy {}:{}: {}", route_.proxy_host,
                                                             route_.proxy_port, ec.message())}};
    }
    if (answer.get().result_int() / 100 != 2) {
      return Stop{HttpFailure::kConnect,
                  Error{ErrorCode::kUnavailable,
                        fmt::format("proxy {}:{} refused the tunnel: HTTP {}", route_.proxy_host,
                                    route_.proxy_port, answer.get().result_int())}};
    }
    return std::nullopt;
  }

  // TLS with the peer's certificate verified against the trust store, for the URL's host name.
  std::optional<Stop> handshake(Connection& c, asio::ssl::context& tls,
                                Clock::time_point connect_end) {
    tcp::socket socket = std::move(*c.plain);
    c.plain.reset();
    c.secure.emplace(std::move(socket), tls);
    error_code parse_error;
    asio::ip::make_address(route_.host, parse_error);
    if (parse_error) SSL_set_tlsext_host_name(c.secure->native_handle(), route_.host.c_str());
    c.secure->set_verify_mode(asio::ssl::verify_peer);
    // OpenSSL's own check of the name (or address) against the certificate: a mismatch fails the
    // handshake with a verify result that says so.
    SSL_set1_host(c.secure->native_handle(), route_.host.c_str());
    error_code ec;
    if (auto stop = await(c, ec, connect_end, "the TLS handshake timed out", [&](auto handler) {
          c.secure->async_handshake(asio::ssl::stream_base::client, handler);
        })) {
      return stop;
    }
    if (ec) {
      std::string detail = ec.message();
      if (const long verify = SSL_get_verify_result(c.secure->native_handle());
          verify != X509_V_OK) {
        detail += fmt::format(" ({})", X509_verify_cert_error_string(verify));
      }
      return Stop{HttpFailure::kConnect,
                  Error{ErrorCode::kUnavailable,
                        fmt::format("TLS handshake with {}: {}", route_.host, detail)}};
    }
    return std::nullopt;
  }

  const HttpRequest& request_;
  const HttpClientOptions& options_;
  const Route& route_;
  const Clock::time_point total_end_;
};

}  // namespace

void HttpHeaders::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HttpHeaders::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

void HttpHeaders::remove(std::string_view name) {
  std::erase_if(fields_,
                [&](const Field& field) { return text::equalsIgnoreCase(field.first, name); });
}

bool HttpHeaders::contains(std::string_view name) const {
  return std::ranges::any_of(
      fields_, [&](const Field& field) { return text::equalsIgnoreCase(field.first, name); });
}

std::string HttpHeaders::get(std::string_view name) const {
  for (const auto& [key, value] : fields_) {
    if (text::equalsIgnoreCase(key, name)) return value;
  }
  return {};
}

std::vector<std::string> HttpHeaders::getAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [key, value] : fields_) {
    if (text::equalsIgnoreCase(key, name)) out.push_back(value);
  }
  return out;
}

Error HttpError::asError() const {
  return cause.wrap(fmt::format("{} {}", method, url));
}

struct HttpClient::Impl {
  HttpClientOptions options;
  std::mutex mutex;
  std::vector<std::unique_ptr<Connection>> idle;  // guarded by mutex; oldest first
  std::shared_ptr<asio::ssl::context> tls;        // guarded by mutex; taken on first https

  // The process's shared TLS context, taken on first use.
  asio::ssl::context* tlsContext() {
    std::lock_guard lock(mutex);
    if (!tls) tls = sharedTlsClientContext();
    return tls.get();
  }

  // An idle connection for the key that still looks open, else a new one.
  std::unique_ptr<Connection> acquire(const std::string& key) {
    std::unique_ptr<Connection> found;
    {
      std::lock_guard lock(mutex);
      for (auto it = idle.rbegin(); it != idle.rend(); ++it) {
        if ((*it)->key == key) {
          found = std::move(*it);
          idle.erase(std::next(it).base());
          break;
        }
      }
    }
    if (found && found->looksAlive()) {
      found->reused = true;
      return found;
    }
    auto fresh = std::make_unique<Connection>();
    fresh->key = key;
    return fresh;
  }

  void release(std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex);
    idle.push_back(std::move(connection));
    if (idle.size() > options.max_idle_handles) idle.erase(idle.begin());
  }

  HttpResult<HttpResponse> perform(const HttpRequest& request);
};

HttpResult<HttpResponse> HttpClient::Impl::perform(const HttpRequest& request) {
  auto failed = [&](HttpFailure failure, Error cause) {
    return std::unexpected(HttpError{failure, std::move(cause), request.method, request.url});
  };
  if (Clock::now() >= request.deadline) {
    return failed(HttpFailure::kDeadline, Error{ErrorCode::kUnavailable, "deadline passed"});
  }
  if (request.cancelled && request.cancelled()) {
    return failed(HttpFailure::kCancelled, Error{ErrorCode::kUnavailable, "cancelled"});
  }
  Result<Route> route = routeOf(request.url, options);
  if (!route) return failed(HttpFailure::kOther, route.error());
  asio::ssl::context* tls_context = route->tls ? tlsContext() : nullptr;
  const Clock::time_point total_end =
      request.timeout.count() > 0 ? Clock::now() + request.timeout : Clock::time_point::max();

  // A kept-alive connection the server closed meanwhile fails before any answer: then the request
  // goes once more, on a new connection (as curl does).
  while (true) {
    std::unique_ptr<Connection> connection = acquire(route->key());
    Exchange exchange(request, options, *route, total_end);
    if (!connection->reused) {
      if (auto stop = exchange.connect(*connection, tls_context)) {
        return failed(stop->failure, std::move(stop->cause));
      }
    }
    HttpResponse response;
    bool keep = false;
    bool got_some = false;
    if (auto stop = exchange.run(*connection, response, keep, got_some)) {
      if (stop->failure == HttpFailure::kBroken && connection->reused && !got_some) continue;
      return failed(stop->failure, std::move(stop->cause));
    }
    if (keep) release(std::move(connection));
    return response;
  }
}

HttpClient::HttpClient(HttpClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

HttpClient::~HttpClient() = default;

HttpResult<HttpResponse> HttpClient::perform(const HttpRequest& request) {
  return impl_->perform(request);
}

}  // namespace ecs::aws
