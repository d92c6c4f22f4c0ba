#include "agent/acs/websocket_client.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "agent/aws/proxy.h"
#include "agent/aws/tls_context.h"
#include "agent/aws/url.h"

namespace ecs::acs {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

template <typename Stream>
class Connection final : public WebSocketConnection {
 public:
  template <typename... Args>
  explicit Connection(WebSocketOptions options, Args&&... args)
      : options_(options), ws_(std::forward<Args>(args)...) {
    ws_.read_message_max(options_.max_message_bytes);
    ws_.text(true);
  }

  websocket::stream<Stream>& ws() { return ws_; }
  const WebSocketOptions& options() const { return options_; }

  asio::awaitable<beast::error_code> read(std::string& out) override {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws_.async_read(buffer, kAwait);
    (void)n;
    if (!ec) out = beast::buffers_to_string(buffer.data());
    co_return ec;
  }

  asio::awaitable<beast::error_code> write(std::string text) override {
    auto [ec, n] = co_await ws_.async_write(asio::buffer(text), kAwait);
    (void)n;
    co_return ec;
  }

  asio::awaitable<beast::error_code> close(std::uint16_t code, std::string reason) override {
    websocket::close_reason why(static_cast<websocket::close_code>(code), reason);
    auto [ec] = co_await ws_.async_close(why, kAwait);
    co_return ec;
  }

  void abort() override {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws_).close();
  }

  websocket::close_reason closeReason() const override { return ws_.reason(); }

 private:
  WebSocketOptions options_;
  websocket::stream<Stream> ws_;
};

using PlainConnection = Connection<beast::tcp_stream>;
using TlsConnection = Connection<beast::ssl_stream<beast::tcp_stream>>;

Error netError(std::string_view step, const beast::error_code& ec) {
  return Error{ErrorCode::kUnavailable, fmt::format("{}: {}", step, ec.message())};
}

}  // namespace

Result<WebSocketUrl> parseWebSocketUrl(std::string_view url) {
  WebSocketUrl out;
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument, "websocket URL has no scheme");
  }
  std::string scheme = lower(url.substr(0, scheme_end));
  if (scheme == "wss" || scheme == "https") {
    out.tls = true;
  } else if (scheme != "ws" && scheme != "http") {
    return fail(ErrorCode::kInvalidArgument,
                "websocket URL scheme {:?} is not ws, wss, http or https", scheme);
  }
  std::string_view rest = url.substr(scheme_end + 3);
  auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  out.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (out.target.front() == '?') out.target.insert(0, "/");
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "websocket URL has an unterminated IPv6 host");
    }
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      port = authority.substr(close + 2);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    out.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    out.host = std::string(authority);
  }
  if (out.host.empty()) return fail(ErrorCode::kInvalidArgument, "websocket URL has no host");
  out.port = port.empty() ? (out.tls ? "443" : "80") : std::string(port);
  return out;
}

asio::awaitable<std::expected<std::shared_ptr<WebSocketConnection>, WebSocketConnectError>>
connectWebSocket(asio::any_io_executor executor, WebSocketUrl url, std::string host_header,
                 WebSocketHeaders headers, WebSocketOptions options,
                 std::shared_ptr<WebSocketDialAbort> abort) {
  using Failure = std::unexpected<WebSocketConnectError>;
  const auto aborted = [] {
    return Failure({0, {}, Error{ErrorCode::kUnavailable, "connection attempt abandoned"}});
  };
  if (!abort) abort = std::make_shared<WebSocketDialAbort>();
  if (abort->aborted()) co_return aborted();
  // Through the proxy the environment names for this URL, if any: a CONNECT tunnel to the host.
  auto proxy = aws::proxyFor(url.tls ? "wss" : "ws", url.host);
  if (!proxy) co_return Failure({0, {}, proxy.error()});
  const std::string& dial_host = *proxy ? (*proxy)->host : url.host;
  const std::string& dial_port = *proxy ? (*proxy)->port : url.port;
  tcp::resolver resolver(executor);
  abort->setHook([&resolver] { resolver.cancel(); });
  auto [rec, endpoints] = co_await resolver.async_resolve(dial_host, dial_port, kAwait);
  abort->setHook(nullptr);
  if (abort->aborted()) co_return aborted();
  if (rec) co_return Failure({0, {}, netError(fmt::format("resolve {}", dial_host), rec)});

  auto dial = [&](auto& conn) -> asio::awaitable<std::optional<WebSocketConnectError>> {
    auto& ws = conn->ws();
    auto& lowest = beast::get_lowest_layer(ws);
    lowest.expires_after(options.connect_timeout);
    auto [cec, ep] = co_await lowest.async_connect(endpoints, kAwait);
    (void)ep;
    if (cec) {
      co_return WebSocketConnectError{
          0, {}, netError(fmt::format("connect {}:{}", dial_host, dial_port), cec)};
    }
    if (*proxy) {
      const std::string authority = aws::authority(url.host, url.port);
      http::request<http::empty_body> connect{http::verb::connect, authority, 11};
      connect.set(http::field::host, authority);
      if (!(*proxy)->authorization.empty()) {
        connect.set(http::field::proxy_authorization, (*proxy)->authorization);
      }
      auto [pwec, written] = co_await http::async_write(lowest, connect, kAwait);
      (void)written;
      beast::flat_buffer buffer;
      http::response_parser<http::empty_body> answer;
      answer.skip(true);  // a CONNECT's answer has no body: the tunnel follows
      if (!pwec) {
        auto [prec, read] = co_await http::async_read_header(lowest, buffer, answer, kAwait);
        (void)read;
        pwec = prec;
      }
      const std::string proxy_name = fmt::format("proxy {}:{}", dial_host, dial_port);
      if (pwec) co_return WebSocketConnectError{0, {}, netError(proxy_name, pwec)};
      if (answer.get().result_int() / 100 != 2 || buffer.size() != 0) {
        co_return WebSocketConnectError{
            static_cast<int>(answer.get().result_int()),
            {},
            Error{ErrorCode::kUnavailable,
                  fmt::format("{} refused the tunnel to {}: HTTP {}", proxy_name, authority,
                              answer.get().result_int())}};
      }
    }
    if constexpr (std::is_same_v<std::decay_t<decltype(*conn)>, TlsConnection>) {
      auto& tls = ws.next_layer();
      if (!SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str())) {
        co_return WebSocketConnectError{0, {}, Error{ErrorCode::kInternal, "TLS: cannot set SNI"}};
      }
      tls.set_verify_callback(asio::ssl::host_name_verification(url.host));
      auto [hec] = co_await tls.async_handshake(asio::ssl::stream_base::client, kAwait);
      if (hec) co_return WebSocketConnectError{0, {}, netError("TLS handshake", hec)};
    }
    lowest.expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = options.connect_timeout;
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws.set_option(timeouts);
    ws.set_option(websocket::stream_base::decorator(
        [headers = std::move(headers)](websocket::request_type& request) {
          for (const auto& [name, value] : headers) request.set(name, value);
        }));
    websocket::response_type response;
    auto [wec] = co_await ws.async_handshake(response, host_header, url.target, kAwait);
    if (wec) {
      co_return WebSocketConnectError{static_cast<int>(response.result_int()), response.body(),
                                      netError("websocket upgrade", wec)};
    }
    // From here on the close handshake is the only thing that can hang.
    timeouts.handshake_timeout = options.close_timeout;
    ws.set_option(timeouts);
    co_return std::nullopt;
  };

  auto upgrade = [&](auto& conn) -> asio::awaitable<std::optional<WebSocketConnectError>> {
    abort->setHook([weak = std::weak_ptr(conn)] {
      if (auto c = weak.lock()) c->abort();
    });
    auto result = co_await dial(conn);
    abort->setHook(nullptr);
    if (abort->aborted()) {
      conn->abort();
      co_return WebSocketConnectError{
          0, {}, Error{ErrorCode::kUnavailable, "connection attempt abandoned"}};
    }
    co_return result;
  };

  if (url.tls) {
    auto context = aws::sharedTlsClientContext();
    auto conn = std::make_shared<TlsConnection>(options, executor, *context);
    if (auto failure = co_await upgrade(conn)) co_return Failure(std::move(*failure));
    // The context must outlive the stream: keep it alongside.
    co_return std::shared_ptr<WebSocketConnection>(
        conn.get(), [conn, context](WebSocketConnection*) mutable { conn.reset(); });
  }
  auto conn = std::make_shared<PlainConnection>(options, executor);
  if (auto failure = co_await upgrade(conn)) co_return Failure(std::move(*failure));
  co_return std::shared_ptr<WebSocketConnection>(std::move(conn));
}

}  // namespace ecs::acs
