#include "agent/endpoints/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

namespace ecs::endpoints {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler)
      : stream_(std::move(socket)), options_(options), handler_(handler) {
    boost::system::error_code ec;
    auto endpoint = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      auto address = endpoint.address();
      // A v4-mapped peer on a dual-stack socket is reported as the IPv4 address it is.
      if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
      }
      remote_ = address.to_string();
    }
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
  std::vector<char> drain_buffer_;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  size_t next = 0;
  uint16_t port = 0;
  bool stopped = false;

  void accept() {
    auto& target = *ios[next++ % ios.size()];
    acceptor->async_accept(target, [this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
      if (ec) {
        // Out of fds and the like: keep serving the connections we have and try again.
        spdlog::warn("{} server: accept: {}", options.name, ec.message());
      } else {
        std::make_shared<Session>(std::move(socket), options, handler)->run();
      }
      accept();
    });
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  int threads = std::max(1, impl->options.threads);
  for (int i = 0; i < threads; ++i) {
    impl->ios.push_back(std::make_unique<asio::io_context>(1));
    impl->guards.push_back(asio::make_work_guard(*impl->ios.back()));
  }
  try {
    auto address = asio::ip::make_address(impl->options.address);
    tcp::endpoint endpoint(address, impl->options.port);
    impl->acceptor.emplace(*impl->ios[0]);
    impl->acceptor->open(endpoint.protocol());
    impl->acceptor->set_option(asio::socket_base::reuse_address(true));
    impl->acceptor->bind(endpoint);
    impl->acceptor->listen(asio::socket_base::max_listen_connections);
    impl->port = impl->acceptor->local_endpoint().port();
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

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->guards.clear();
  for (auto& io : impl_->ios) io->stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Destroying the io_contexts destroys the pending handlers and with them every session.
  impl_->acceptor.reset();
  impl_->ios.clear();
}

}  // namespace ecs::endpoints
