// SessionLoop: the connection loop the agent's two control-plane websocket sessions share (ACS in
// agent/acs, TCS in agent/tcs). It dials (dialSession), serves one connection until it ends, and
// dials again until stop(): at once after a clean close (isCleanCloseCode, or our own close at the
// connection's maximum age), after the jittered backoff otherwise, after `inactive_wait` when the
// subclass says the refusal means an inactive instance. It drops a connection that hears nothing
// for the heartbeat timeout, writes queued frames in order, and on stop() gives up a dial in
// flight and closes an open connection with code 1000.
//
// A session derives from it and supplies the query it signs and what it does with a message;
// hooks tell it when a connection opens. Everything but the public atomics runs on the strand.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "agent/acs/control_session.h"
#include "agent/acs/websocket_client.h"

namespace ecs::acs {

// What a session's options say about its connections (AcsSessionOptions, TcsSessionOptions).
struct SessionLoopSettings {
  std::string name;  // "ACS", "TCS": what log lines name
  std::function<Result<std::string>()> endpoint;
  std::function<Result<aws::Credentials>()> credentials;
  std::string region;
  std::chrono::milliseconds heartbeat_timeout, heartbeat_jitter;
  std::chrono::milliseconds max_connection_age, connection_age_jitter;
  std::chrono::milliseconds backoff_initial, backoff_max;
  double backoff_multiplier = 2.0, backoff_jitter = 0.2;
  // Connected at least this long (default: the heartbeat timeout) resets the backoff.
  std::optional<std::chrono::milliseconds> backoff_reset_after;
  std::chrono::milliseconds inactive_wait{0};
  // A heartbeat timeout drops the connection and reconnects after the backoff (ACS), or closes it
  // and reconnects at once (TCS).
  bool heartbeat_timeout_is_clean = false;
  WebSocketOptions websocket;
};

// Builds the settings from a session's options struct (the fields share their names).
template <typename Options>
SessionLoopSettings sessionLoopSettings(std::string name, const Options& o) {
  return {.name = std::move(name),
          .endpoint = o.endpoint,
          .credentials = o.credentials,
          .region = o.region,
          .heartbeat_timeout = o.heartbeat_timeout,
          .heartbeat_jitter = o.heartbeat_jitter,
          .max_connection_age = o.max_connection_age,
          .connection_age_jitter = o.connection_age_jitter,
          .backoff_initial = o.backoff_initial,
          .backoff_max = o.backoff_max,
          .backoff_multiplier = o.backoff_multiplier,
          .backoff_jitter = o.backoff_jitter,
          .backoff_reset_after = o.backoff_reset_after,
          .websocket = {.connect_timeout = o.connect_timeout,
                        .close_timeout = o.close_timeout,
                        .max_message_bytes = o.max_message_bytes}};
}

class SessionLoop : public std::enable_shared_from_this<SessionLoop> {
 public:
  virtual ~SessionLoop() = default;

  // Starts the loop (once); the io_context must be running (or run later).
  void start();
  // Asks the loop to stop; with `wait`, blocks until it has (at most close_timeout + 2 s). Waiting
  // from the strand would never end: callers on it pass false.
  void stop(bool wait);
  bool onStrand() const { return strand_.running_in_this_thread(); }

  std::atomic<int> connections{0};  // connections made so far
  std::atomic<bool> connected{false};

 protected:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  using Done = std::function<void(bool written)>;

  SessionLoop(boost::asio::io_context& io, SessionLoopSettings settings);

  // The query to sign and send on the next connection attempt.
  virtual std::string query() = 0;
  // One text message from the current connection. An exception is logged; the session goes on.
  virtual void onMessage(const std::string& text) = 0;
  // A connection opened; its signed URL is connectionUrl().
  virtual void onConnected() {}
  // A refused upgrade: true when it means the instance is inactive (wait inactive_wait).
  virtual bool refusedAsInactive(const WebSocketConnectError&) { return false; }
  // start() ran the loop: other coroutines of the session start here.
  virtual void onStarted() {}
  // stop() asked: cancel the session's own timers.
  virtual void onStopping() {}

  // Queues a frame for the current connection (on the strand). `done` runs once it was written
  // (true) or dropped (false); without a connection it is dropped at once.
  void send(std::string frame, Done done = nullptr);
  // True while a connection is open and not being closed.
  bool open() const { return conn_ && !closing_; }
  bool stopping() const { return stopping_; }
  const std::string& connectionUrl() const { return url_; }
  Strand& strand() { return strand_; }
  const SessionLoopSettings& settings() const { return settings_; }

 private:
  enum class Outcome { kClean, kFailed, kInactive, kStopped };
  struct Outbound {
    std::string frame;
    Done done;  // may be empty
  };

  void requestStop();
  static boost::asio::awaitable<void> run(std::shared_ptr<SessionLoop> self);
  boost::asio::awaitable<Outcome> connectOnce();
  boost::asio::awaitable<Outcome> serve(std::shared_ptr<WebSocketConnection> conn);
  static boost::asio::awaitable<void> writeLoop(std::shared_ptr<SessionLoop> self,
                                                std::shared_ptr<WebSocketConnection> conn);
  static boost::asio::awaitable<void> closeLoop(std::shared_ptr<SessionLoop> self,
                                                std::shared_ptr<WebSocketConnection> conn,
                                                std::uint16_t code, std::string reason);
  // Closes `conn` (if still current) with 1000 "ConnectionExpired": a clean reconnect.
  void closeExpired(const std::shared_ptr<WebSocketConnection>& conn, std::string_view why);
  void armHeartbeat(const std::shared_ptr<WebSocketConnection>& conn);
  void dropQueue();
  std::chrono::milliseconds jitter(std::chrono::milliseconds base,
                                   std::chrono::milliseconds spread);

  Strand strand_;
  SessionLoopSettings settings_;
  boost::asio::steady_timer wait_timer_, heartbeat_timer_, age_timer_;
  std::mt19937_64 random_;
  Backoff backoff_;
  bool started_ = false;
  bool stopping_ = false;
  bool closing_ = false;
  bool expired_ = false;  // we closed the connection (maximum age, or a clean heartbeat timeout)
  bool writing_ = false;
  std::string url_;  // the signed URL of the current connection (http/https form)
  std::shared_ptr<WebSocketConnection> conn_;
  std::shared_ptr<WebSocketDialAbort> dial_abort_;  // the connection attempt in flight
  std::deque<Outbound> queue_;
  std::promise<void> finished_;
  std::shared_future<void> finished_future_ = finished_.get_future().share();
};

}  // namespace ecs::acs
