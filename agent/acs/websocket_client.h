// A websocket client connection for the control-plane sessions: ws:// over TCP or wss:// over TLS
// (OpenSSL, peer verified against the system trust store, SNI set to the URL's host), through a
// CONNECT tunnel when the environment names a proxy for the URL (agent/aws/proxy.h), with the
// caller's handshake headers sent as given — a SigV4-signed upgrade must go out exactly as signed.
//
// Every operation is a coroutine on the executor the connection was made with; callers keep to
// one read and one write in flight at a time, as Beast requires.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/common/result.h"

namespace ecs::acs {

// A ws/wss (or http/https, taken as ws/wss) URL split for the dialer.
struct WebSocketUrl {
  bool tls = false;
  std::string host;    // without brackets for IPv6
  std::string port;    // "80"/"443" when the URL names none
  std::string target;  // path and query as sent, "/ws?a=b"
};

// kInvalidArgument for another scheme or no host.
Result<WebSocketUrl> parseWebSocketUrl(std::string_view url);

struct WebSocketOptions {
  std::chrono::milliseconds connect_timeout{30000};  // TCP connect, TLS and upgrade, each
  std::chrono::milliseconds close_timeout{5000};     // waiting for the peer's close frame
  std::size_t max_message_bytes = 16 * 1024 * 1024;  // a larger inbound message is an error
};

// Why an upgrade failed: the HTTP status and body when the server answered (0 and empty when it
// did not), and the error.
struct WebSocketConnectError {
  int status = 0;
  std::string body;
  Error error;
};

class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;
  // The next whole message (text or binary) into `out`.
  virtual boost::asio::awaitable<boost::beast::error_code> read(std::string& out) = 0;
  // One text frame.
  virtual boost::asio::awaitable<boost::beast::error_code> write(std::string text) = 0;
  // Sends a close frame and waits (up to close_timeout) for the peer's.
  virtual boost::asio::awaitable<boost::beast::error_code> close(std::uint16_t code,
                                                                 std::string reason) = 0;
  // Drops the TCP connection at once; pending operations complete with an error.
  virtual void abort() = 0;
  // The close frame the peer sent, after a read ended with websocket::error::closed.
  virtual boost::beast::websocket::close_reason closeReason() const = 0;
};

using WebSocketHeaders = std::vector<std::pair<std::string, std::string>>;

// Lets the caller give up on a connection attempt in flight: abort() (on the connection's
// executor) makes connectWebSocket fail at once.
class WebSocketDialAbort {
 public:
  void abort() {
    aborted_ = true;
    if (hook_) hook_();
  }
  bool aborted() const { return aborted_; }
  void setHook(std::function<void()> hook) { hook_ = std::move(hook); }

 private:
  bool aborted_ = false;
  std::function<void()> hook_;
};

// Dials, upgrades with GET `url.target` and `headers` (Host is `host_header`), and returns the
// open connection.
boost::asio::awaitable<std::expected<std::shared_ptr<WebSocketConnection>, WebSocketConnectError>>
connectWebSocket(boost::asio::any_io_executor executor, WebSocketUrl url, std::string host_header,
                 WebSocketHeaders headers, WebSocketOptions options,
                 std::shared_ptr<WebSocketDialAbort> abort = nullptr);

}  // namespace ecs::acs
