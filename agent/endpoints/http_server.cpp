#include "agent/endpoints/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

#include "agent/common/fd_limit.h"
#include "agent/endpoints/accept_throttle.h"
#include "agent/endpoints/connection_limiter.h"

namespace ecs::endpoints {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// The peer's IP address, no port; "" if the peer is already gone.
std::string peerAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return {};
  auto address = endpoint.address();
  // A v4-mapped peer on a dual-stack socket is reported as the IPv4 address it is.
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address.to_string();
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::string remote, ConnectionLimiter::Slot slot,
          const HttpServerOptions& options, const HttpHandler& handler)
      : stream_(std::move(socket)),
        options_(options),
        handler_(handler),
        remote_(std::move(remote)),
        slot_(std::move(slot)) {
    boost::system::error_code ec;
    stream_.socket().set_option(tcp::no_delay(true), ec);
  }

  void run() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options_.header_limit));
    parser_->body_limit(options_.body_limit);
    stream_.expires_after(options_.read_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      return close();
    }
    if (ec == http::error::header_limit) return reject(431, "Request Header Fields Too Large");
    if (ec == http::error::body_limit) return reject(413, "Request Entity Too Large");
    if (ec) return reject(400, "Bad Request");

    auto& req = parser_->get();
    HttpRequest request;
    auto method = req.method_string();
    auto target = req.target();
    request.method = std::string_view(method.data(), method.size());
    request.target = std::string_view(target.data(), target.size());
    request.body = req.body();
    request.remote_address = remote_;
    request.header = [&req](std::string_view name) -> std::string_view {
      auto it = req.find(name);
      if (it == req.end()) return {};
      auto v = it->value();
      return std::string_view(v.data(), v.size());
    };
    HttpResponse response;
    handler_(request, response);

    res_ = {};
    res_.version(req.version());
    res_.result(static_cast<unsigned>(response.status));
    res_.set(http::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) res_.set(name, value);
    res_.body() = std::move(response.body);
    res_.keep_alive(req.keep_alive());
    res_.prepare_payload();
    write(!req.keep_alive());
  }

  // Answers a request that could not be read, then closes: the stream is out of sync.
  void reject(unsigned status, std::string_view reason) {
    res_ = {};
    res_.version(11);
    res_.result(status);
    res_.set(http::field::content_type, "text/plain; charset=utf-8");
    res_.set(http::field::connection, "close");
    res_.body() = std::string(reason);
    res_.prepare_payload();
    write(true, /*drain=*/true);
  }

  void write(bool close_after, bool drain = false) {
    stream_.expires_after(options_.write_timeout);
    http::async_write(
        stream_, res_,
        [self = shared_from_this(), close_after, drain](beast::error_code ec, size_t) {
          if (!ec && drain) return self->drainThenClose();
          if (ec || close_after) return self->close();
          self->read();
        });
  }

  // After refusing a request whose bytes we did not read: closing with unread data makes the
  // kernel send a reset, which can destroy the response before the client reads it. Like Go's
  // server, stop sending and discard what the client still sends, for a short while.
  void drainThenClose() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::milliseconds(500));
    drain_buffer_.resize(16 * 1024);
    stream_.async_read_some(asio::buffer(drain_buffer_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->close();
                              self->drainThenClose();
                            });
  }

  void close() {
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::string remote_;
  ConnectionLimiter::Slot slot_;  // given back when the session ends
  std::vector<char> drain_buffer_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions o, HttpHandler h) : options(std::move(o)), handler(std::move(h)) {}

  const HttpServerOptions options;
  const HttpHandler handler;
  // Before the io_contexts: the sessions they destroy give their slots back to it.
  std::optional<ConnectionLimiter> limiter;
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> retry_timer;  // the backoff after a failed accept()
  std::vector<std::thread> threads;
  size_t next = 0;
  uint16_t port = 0;
  bool stopped = false;

  // The accepting thread's own (ios[0]'s): no lock.
  AcceptBackoff backoff{options.accept_backoff_initial, options.accept_backoff_max};
  LogThrottle accept_errors_log{options.log_interval};
  LogThrottle refusals_log{options.log_interval};

  std::atomic<uint64_t> accepted{0}, refused{0}, accept_errors{0}, log_lines{0};

  void accept() {
    auto& target = *ios[next++ % ios.size()];
    acceptor->async_accept(target, [this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
      // The client gave up before we took its connection: nothing to back off from.
      if (ec == asio::error::connection_aborted) return accept();
      if (ec) return acceptFailed(ec);
      backoff.succeeded();
      admit(std::move(socket));
      accept();
    });
  }

  // Out of descriptors (EMFILE, ENFILE), buffers or memory: the next accept() would fail the same
  // way at once, so wait, and keep serving the connections already open meanwhile.
  void acceptFailed(const boost::system::error_code& ec) {
    ++accept_errors;
    auto delay = backoff.failed();
    if (auto count = accept_errors_log.record(LogThrottle::Clock::now())) {
      ++log_lines;
      spdlog::warn("{} server: accept: {} ({} failure(s) since the last report); retrying in {} ms",
                   options.name, ec.message(), *count, delay.count());
    }
    retry_timer->expires_after(delay);
    retry_timer->async_wait([this](boost::system::error_code wait_ec) {
      if (wait_ec || !acceptor->is_open()) return;
      accept();
    });
  }

  void admit(tcp::socket socket) {
    std::string client = peerAddress(socket);
    auto slot = limiter->admit(client);
    if (!slot) return refuse(std::move(socket), client);
    ++accepted;
    std::make_shared<Session>(std::move(socket), std::move(client), std::move(*slot), options,
                              handler)
        ->run();
  }

  // Over a cap: reset at once (SO_LINGER 0), the cheapest answer, leaving no TIME_WAIT behind.
  void refuse(tcp::socket socket, const std::string& client) {
    ++refused;
    boost::system::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
    if (auto count = refusals_log.record(LogThrottle::Clock::now())) {
      ++log_lines;
      const auto& limits = limiter->limits();
      spdlog::warn(
          "{} server: refused {} connection(s) over the caps ({} per client address, {} in all) "
          "since the last report; the latest from {}",
          options.name, *count, limits.per_client, limits.total, client);
    }
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      HttpHandler handler) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  int threads = std::max(1, impl->options.threads);
  for (int i = 0; i < threads; ++i) {
    impl->ios.push_back(std::make_unique<asio::io_context>(1));
    impl->guards.push_back(asio::make_work_guard(*impl->ios.back()));
  }
  ConnectionLimits limits{impl->options.max_connections_per_client, impl->options.max_connections};
  if (auto fds = fdLimit()) {
    limits.total = connectionCap(limits.total, fds->soft, impl->options.fd_reserve);
  }
  impl->limiter.emplace(limits);
  try {
    auto address = asio::ip::make_address(impl->options.address);
    tcp::endpoint endpoint(address, impl->options.port);
    impl->acceptor.emplace(*impl->ios[0]);
    impl->acceptor->open(endpoint.protocol());
    impl->acceptor->set_option(asio::socket_base::reuse_address(true));
    impl->acceptor->bind(endpoint);
    impl->acceptor->listen(asio::socket_base::max_listen_connections);
    impl->port = impl->acceptor->local_endpoint().port();
    impl->retry_timer.emplace(*impl->ios[0]);
  } catch (const boost::system::system_error& e) {
    return fail(ErrorCode::kUnavailable, "{} server: listen on {}:{}: {}", impl->options.name,
                impl->options.address, impl->options.port, e.code().message());
  }
  impl->accept();
  for (auto& io : impl->ios) {
    impl->threads.emplace_back([io = io.get()] { io->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  stop();
}

uint16_t HttpServer::port() const {
  return impl_->port;
}

HttpServerCounters HttpServer::counters() const {
  HttpServerCounters c;
  c.accepted = impl_->accepted;
  c.refused = impl_->refused;
  c.accept_errors = impl_->accept_errors;
  c.log_lines = impl_->log_lines;
  if (impl_->limiter) {
    c.open = impl_->limiter->open();
    c.max_connections = impl_->limiter->limits().total;
  }
  return c;
}

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->guards.clear();
  for (auto& io : impl_->ios) io->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Destroying the io_contexts destroys the pending handlers and with them every session.
  impl_->acceptor.reset();
  impl_->retry_timer.reset();
  impl_->ios.clear();
}

}  // namespace ecs::endpoints
