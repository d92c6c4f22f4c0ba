#include "agent/acs/session_loop.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket/error.hpp>

namespace ecs::acs {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

namespace {
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
}  // namespace

SessionLoop::SessionLoop(asio::io_context& io, SessionLoopSettings settings)
    : strand_(asio::make_strand(io)),
      settings_(std::move(settings)),
      wait_timer_(strand_),
      heartbeat_timer_(strand_),
      age_timer_(strand_),
      random_(std::random_device{}()),
      backoff_(settings_.backoff_initial, settings_.backoff_max, settings_.backoff_multiplier,
               settings_.backoff_jitter) {}

void SessionLoop::start() {
  if (started_) return;
  started_ = true;
  asio::co_spawn(strand_, run(shared_from_this()),
                 [self = shared_from_this()](std::exception_ptr error) {
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("{} session ended: {}", self->settings_.name, e.what());
                     }
                   }
                   self->finished_.set_value();
                 });
  onStarted();
}

void SessionLoop::stop(bool wait) {
  if (!started_) return;
  asio::post(strand_, [self = shared_from_this()] { self->requestStop(); });
  if (wait) {
    auto budget = settings_.websocket.close_timeout + 2s;
    if (finished_future_.wait_for(budget) != std::future_status::ready) {
      spdlog::warn("{} session did not stop within {} ms", settings_.name, budget.count());
    }
  }
}

void SessionLoop::requestStop() {
  stopping_ = true;
  wait_timer_.cancel();
  heartbeat_timer_.cancel();
  age_timer_.cancel();
  onStopping();
  if (dial_abort_) dial_abort_->abort();
  if (conn_ && !closing_) {
    closing_ = true;
    asio::co_spawn(strand_, closeLoop(shared_from_this(), conn_, 1000, "agent stopping"),
                   asio::detached);
  }
}

asio::awaitable<void> SessionLoop::closeLoop(std::shared_ptr<SessionLoop> self,
                                             std::shared_ptr<WebSocketConnection> conn,
                                             std::uint16_t code, std::string reason) {
  auto ec = co_await conn->close(code, reason);
  if (ec) conn->abort();
  (void)self;
}

void SessionLoop::send(std::string frame, Done done) {
  if (!conn_) {
    if (done) {
      done(false);
    } else {
      spdlog::debug("{}: not connected, dropping a frame", settings_.name);
    }
    return;
  }
  queue_.push_back({std::move(frame), std::move(done)});
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(strand_, writeLoop(shared_from_this(), conn_), asio::detached);
  }
}

asio::awaitable<void> SessionLoop::writeLoop(std::shared_ptr<SessionLoop> self,
                                             std::shared_ptr<WebSocketConnection> conn) {
  while (!self->queue_.empty() && self->conn_ == conn) {
    Outbound out = std::move(self->queue_.front());
    self->queue_.pop_front();
    auto ec = co_await conn->write(std::move(out.frame));
    if (out.done) out.done(!ec);
    if (ec) {
      spdlog::warn("{}: write failed: {}", self->settings_.name, ec.message());
      conn->abort();
      break;
    }
  }
  self->writing_ = false;
  // Frames queued meanwhile for a newer connection go out on it.
  if (self->conn_ && self->conn_ != conn && !self->queue_.empty()) {
    self->writing_ = true;
    asio::co_spawn(self->strand_, writeLoop(self, self->conn_), asio::detached);
  }
}

void SessionLoop::dropQueue() {
  auto dropped = std::move(queue_);
  queue_.clear();
  for (auto& out : dropped) {
    if (out.done) out.done(false);
  }
}

Millis SessionLoop::jitter(Millis base, Millis spread) {
  return jittered(base, spread, random_);
}

asio::awaitable<void> SessionLoop::run(std::shared_ptr<SessionLoop> self) {
  const auto& name = self->settings_.name;
  self->backoff_.reset();
  while (!self->stopping_) {
    Outcome outcome = co_await self->connectOnce();
    if (self->stopping_ || outcome == Outcome::kStopped) break;
    Millis delay{0};
    if (outcome == Outcome::kClean) {
      self->backoff_.reset();
    } else if (outcome == Outcome::kInactive) {
      delay = self->settings_.inactive_wait;
      spdlog::warn("{}: the container instance is inactive; trying again in {} ms", name,
                   delay.count());
    } else {
      delay = self->backoff_.next(self->random_);
      spdlog::info("{}: reconnecting in {} ms", name, delay.count());
    }
    if (delay.count() > 0) {
      self->wait_timer_.expires_after(delay);
      co_await self->wait_timer_.async_wait(kAwait);
    }
  }
  spdlog::info("{} session stopped", name);
}

asio::awaitable<SessionLoop::Outcome> SessionLoop::connectOnce() {
  dial_abort_ = std::make_shared<WebSocketDialAbort>();
  // Built apart from the co_await: GCC 12 destroys a braced temporary argument of a coroutine
  // call twice.
  SessionDial dial{.name = settings_.name,
                   .endpoint = settings_.endpoint,
                   .credentials = settings_.credentials,
                   .query = query(),
                   .region = settings_.region,
                   .websocket = settings_.websocket};
  auto dialed = co_await dialSession(strand_, std::move(dial), dial_abort_);
  dial_abort_.reset();
  if (stopping_) {
    if (dialed) dialed->conn->abort();
    co_return Outcome::kStopped;
  }
  if (!dialed) co_return refusedAsInactive(dialed.error()) ? Outcome::kInactive : Outcome::kFailed;
  url_ = std::move(dialed->http_url);
  co_return co_await serve(dialed->conn);
}

void SessionLoop::closeExpired(const std::shared_ptr<WebSocketConnection>& conn,
                               std::string_view why) {
  if (conn_ != conn || closing_) return;
  spdlog::info("{}: {}; reconnecting", settings_.name, why);
  closing_ = true;
  expired_ = true;
  asio::co_spawn(
      strand_,
      closeLoop(shared_from_this(), conn, 1000, "ConnectionExpired: Reconnect to continue"),
      asio::detached);
}

void SessionLoop::armHeartbeat(const std::shared_ptr<WebSocketConnection>& conn) {
  heartbeat_timer_.expires_after(jitter(settings_.heartbeat_timeout, settings_.heartbeat_jitter));
  heartbeat_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    constexpr std::string_view kWhy = "no message within the heartbeat timeout";
    if (self->settings_.heartbeat_timeout_is_clean) {
      self->closeExpired(conn, kWhy);
    } else if (self->conn_ == conn) {
      spdlog::warn("{}: {}; reconnecting", self->settings_.name, kWhy);
      conn->abort();
    }
  });
}

asio::awaitable<SessionLoop::Outcome> SessionLoop::serve(
    std::shared_ptr<WebSocketConnection> conn) {
  const auto& name = settings_.name;
  conn_ = conn;
  closing_ = false;
  expired_ = false;
  connected = true;
  ++connections;
  auto since = Clock::now();
  spdlog::info("{}: connected", name);
  armHeartbeat(conn);
  age_timer_.expires_after(jitter(settings_.max_connection_age, settings_.connection_age_jitter));
  age_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self) return;
    self->closeExpired(conn, "connection reached its maximum age");
  });
  onConnected();

  boost::beast::error_code ec;
  for (;;) {
    std::string text;
    ec = co_await conn->read(text);
    if (ec) break;
    armHeartbeat(conn);
    // A handler's exception must not end the session: the next message may be fine.
    try {
      onMessage(text);
    } catch (const std::exception& e) {
      spdlog::error("{}: handling a message failed: {}", name, e.what());
    }
  }
  heartbeat_timer_.cancel();
  age_timer_.cancel();
  conn_.reset();
  dropQueue();
  connected = false;

  auto reset_after = settings_.backoff_reset_after.value_or(settings_.heartbeat_timeout);
  if (Clock::now() - since >= reset_after) backoff_.reset();
  if (stopping_) co_return Outcome::kStopped;
  if (expired_) co_return Outcome::kClean;
  // The server's close frame decides, even when the TCP teardown after it failed.
  if (auto reason = conn->closeReason(); reason.code != boost::beast::websocket::close_code::none) {
    spdlog::info("{}: connection closed ({} {})", name, reason.code,
                 std::string(reason.reason.data(), reason.reason.size()));
    if (isCleanCloseCode(reason.code)) co_return Outcome::kClean;
    co_return Outcome::kFailed;
  }
  spdlog::warn("{}: connection lost: {}", name, ec.message());
  conn->abort();
  co_return Outcome::kFailed;
}

}  // namespace ecs::acs
