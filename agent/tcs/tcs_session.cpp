#include "agent/tcs/tcs_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <deque>
#include <future>
#include <map>
#include <random>

#include "agent/acs/control_session.h"
#include "agent/acs/websocket_client.h"
#include "agent/aws/sigv4.h"
#include "agent/endpoints/endpoints_resource.h"

namespace ecs::tcs {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using acs::WebSocketConnection;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

bool isAck(std::string_view type) {
  return type == "AckPublishMetric" || type == "AckPublishHealth" ||
         type == "AckPublishInstanceStatus";
}

bool isException(std::string_view type) {
  return type == "ServerException" || type == "BadRequestException" ||
         type == "ResourceValidationException" || type == "InvalidParameterException";
}

bool publishable(const engine::ContainerSnapshot& c) {
  return c.known == engine::ContainerStatus::kRunning && !c.runtime_id.empty();
}

// The snapshot has no flag for "has a health check": a container without one never leaves
// UNKNOWN and is never checked.
bool hasHealthCheck(const engine::ContainerSnapshot& c) {
  return c.health != engine::HealthStatus::kUnknown || c.health_checked_at.has_value();
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

std::string tcsQuery(const TcsSessionOptions& options) {
  aws::QueryParameters query{{"agentHash", options.agent_hash},
                             {"agentVersion", options.agent_version},
                             {"cluster", options.cluster},
                             {"containerInstance", options.container_instance_arn}};
  if (!options.docker_version.empty()) query.emplace_back("dockerVersion", options.docker_version);
  return aws::encodeQuery(query);
}

Result<std::string> signedFrame(const std::string& http_url, const std::string& envelope,
                                const std::string& region, const aws::Credentials& credentials,
                                std::chrono::system_clock::time_point now) {
  aws::SigV4Request request{
      .method = "GET", .url = http_url, .headers = {}, .payload_sha256 = aws::sha256Hex(envelope)};
  auto signature = aws::signV4(request, {.service = "ecs", .region = region}, credentials, now);
  if (!signature) return fail(signature.error().wrap("sign a TCS frame"));
  std::vector<std::pair<std::string, std::string>> headers(signature->headers.fields().begin(),
                                                           signature->headers.fields().end());
  headers.emplace_back("Host", aws::hostHeader(http_url));
  std::sort(headers.begin(), headers.end(),
            [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
  std::string frame;
  frame.reserve(envelope.size() + 512);
  for (const auto& [name, value] : headers) {
    frame += name;
    frame += ": ";
    frame += value;
    frame += "\r\n";
  }
  frame += "\r\n";
  frame += envelope;
  return frame;
}

// Everything the session's coroutines share; it lives as long as any of them runs. All members
// but the atomics are touched only on the strand.
class TcsSessionState : public std::enable_shared_from_this<TcsSessionState> {
 public:
  TcsSessionState(asio::io_context& io, TcsSessionOptions options,
                  const metadata::StatsSampler& sampler)
      : strand_(asio::make_strand(io)),
        options_(std::move(options)),
        sampler_(sampler),
        wait_timer_(strand_),
        heartbeat_timer_(strand_),
        age_timer_(strand_),
        publish_timer_(strand_),
        random_(std::random_device{}()),
        backoff_(options_.backoff_initial, options_.backoff_max, options_.backoff_multiplier,
                 options_.backoff_jitter) {
    if (options_.publish_interval <= Millis::zero()) options_.publish_interval = 20s;
  }

  void start() {
    if (started_) return;
    started_ = true;
    asio::co_spawn(strand_, run(shared_from_this()),
                   [self = shared_from_this()](std::exception_ptr error) {
                     if (error) {
                       try {
                         std::rethrow_exception(error);
                       } catch (const std::exception& e) {
                         spdlog::error("TCS session ended: {}", e.what());
                       }
                     }
                     self->finished_.set_value();
                   });
    asio::co_spawn(strand_, publishLoop(shared_from_this()), asio::detached);
  }

  void stop(bool wait) {
    if (!started_) return;
    asio::post(strand_, [self = shared_from_this()] { self->requestStop(); });
    if (wait) {
      auto budget = options_.close_timeout + 2s;
      if (finished_future_.wait_for(budget) != std::future_status::ready) {
        spdlog::warn("TCS session did not stop within {} ms", budget.count());
      }
    }
  }

  bool onStrand() const { return strand_.running_in_this_thread(); }

  void update(engine::TaskSnapshotPtr task) {
    if (!task) return;
    asio::post(strand_,
               [self = shared_from_this(), task = std::move(task)] { self->applyUpdate(task); });
  }

  void setInstanceStatus(std::string type, InstanceStatusValue status, std::string reason) {
    auto now = std::chrono::system_clock::now();
    asio::post(strand_, [self = shared_from_this(), type = std::move(type), status,
                         reason = std::move(reason), now] {
      auto [it, fresh] = self->statuses_.try_emplace(type);
      auto& s = it->second;
      if (fresh || s.status != status || s.reason != reason) {
        s.type = type;
        if (fresh || s.status != status) s.last_status_change = now;
        s.status = status;
        s.reason = reason;
        ++self->status_generation_;
      }
      s.last_updated = now;
    });
  }

  std::atomic<int> connections{0};
  std::atomic<bool> connected{false};
  std::atomic<int> publishes{0};

 private:
  enum class Outcome { kClean, kFailed, kStopped };

  struct Outbound {
    std::string frame;
    std::function<void(bool written)> done;  // may be empty
  };

  void applyUpdate(const engine::TaskSnapshotPtr& task) {
    if (task->removed) {
      tasks_.erase(task->arn);
      for (const auto& c : task->containers) {
        published_tick_.erase(c.runtime_id);
        health_.erase(task->arn + "/" + c.name);
      }
      return;
    }
    tasks_[task->arn] = task;
    for (const auto& c : task->containers) {
      if (!hasHealthCheck(c)) continue;
      auto& seen = health_[task->arn + "/" + c.name];
      if (!seen.since || seen.status != c.health) {
        seen.status = c.health;
        seen.since = c.health_checked_at.value_or(std::chrono::system_clock::now());
      }
    }
  }

  void requestStop() {
    stopping_ = true;
    wait_timer_.cancel();
    heartbeat_timer_.cancel();
    age_timer_.cancel();
    publish_timer_.cancel();
    if (dial_abort_) dial_abort_->abort();
    if (conn_ && !closing_) {
      closing_ = true;
      asio::co_spawn(strand_, closeLoop(shared_from_this(), conn_, 1000, "agent stopping"),
                     asio::detached);
    }
  }

  static asio::awaitable<void> closeLoop(std::shared_ptr<TcsSessionState> self,
                                         std::shared_ptr<WebSocketConnection> conn,
                                         std::uint16_t code, std::string reason) {
    auto ec = co_await conn->close(code, reason);
    if (ec) conn->abort();
    (void)self;
  }

  // Queues frames for the current connection; `done` of each runs once it was written or
  // dropped.
  void send(Outbound out) {
    if (!conn_) {
      if (out.done) out.done(false);
      return;
    }
    queue_.push_back(std::move(out));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(strand_, writeLoop(shared_from_this(), conn_), asio::detached);
    }
  }

  static asio::awaitable<void> writeLoop(std::shared_ptr<TcsSessionState> self,
                                         std::shared_ptr<WebSocketConnection> conn) {
    while (!self->queue_.empty() && self->conn_ == conn) {
      Outbound out = std::move(self->queue_.front());
      self->queue_.pop_front();
      auto ec = co_await conn->write(std::move(out.frame));
      if (out.done) out.done(!ec);
      if (ec) {
        spdlog::warn("TCS: write failed: {}", ec.message());
        conn->abort();
        break;
      }
    }
    self->writing_ = false;
    if (self->conn_ && self->conn_ != conn && !self->queue_.empty()) {
      self->writing_ = true;
      asio::co_spawn(self->strand_, writeLoop(self, self->conn_), asio::detached);
    }
  }

  void dropQueue() {
    auto dropped = std::move(queue_);
    queue_.clear();
    for (auto& out : dropped) {
      if (out.done) out.done(false);
    }
  }

  Millis jitter(Millis base, Millis spread) { return acs::jittered(base, spread, random_); }

  static asio::awaitable<void> run(std::shared_ptr<TcsSessionState> self) {
    self->backoff_.reset();
    while (!self->stopping_) {
      Outcome outcome = co_await self->connectOnce();
      if (self->stopping_ || outcome == Outcome::kStopped) break;
      Millis delay{0};
      if (outcome == Outcome::kClean) {
        self->backoff_.reset();
      } else {
        delay = self->backoff_.next(self->random_);
        spdlog::info("TCS: reconnecting in {} ms", delay.count());
      }
      if (delay.count() > 0) {
        self->wait_timer_.expires_after(delay);
        co_await self->wait_timer_.async_wait(kAwait);
      }
    }
    spdlog::info("TCS session stopped");
  }

  // A publish every interval after the last one; a tick without a connection is skipped (the
  // samples wait for the next one, and serve() publishes when a tick was missed).
  static asio::awaitable<void> publishLoop(std::shared_ptr<TcsSessionState> self) {
    self->last_tick_ = Clock::now() - self->options_.publish_interval;
    while (!self->stopping_) {
      auto due = std::max(self->last_tick_, self->last_publish_.value_or(Clock::time_point{})) +
                 self->options_.publish_interval;
      if (Clock::now() >= due) {
        self->last_tick_ = Clock::now();
        self->publish();
        continue;
      }
      self->publish_timer_.expires_at(due);
      co_await self->publish_timer_.async_wait(kAwait);
    }
  }

  asio::awaitable<Outcome> connectOnce() {
    dial_abort_ = std::make_shared<acs::WebSocketDialAbort>();
    // Built apart from the co_await: GCC 12 destroys a braced temporary argument of a coroutine
    // call twice.
    acs::SessionDial dial{.name = "TCS",
                          .endpoint = options_.endpoint,
                          .credentials = options_.credentials,
                          .query = tcsQuery(options_),
                          .region = options_.region,
                          .websocket = {.connect_timeout = options_.connect_timeout,
                                        .close_timeout = options_.close_timeout,
                                        .max_message_bytes = options_.max_message_bytes}};
    auto dialed = co_await acs::dialSession(strand_, std::move(dial), dial_abort_);
    dial_abort_.reset();
    if (stopping_) {
      if (dialed) dialed->conn->abort();
      co_return Outcome::kStopped;
    }
    if (!dialed) co_return Outcome::kFailed;
    url_ = std::move(dialed->http_url);
    co_return co_await serve(dialed->conn);
  }

  void closeExpired(const std::shared_ptr<WebSocketConnection>& conn, std::string_view why) {
    if (conn_ != conn || closing_) return;
    spdlog::info("TCS: {}; reconnecting", why);
    closing_ = true;
    expired_ = true;
    asio::co_spawn(
        strand_,
        closeLoop(shared_from_this(), conn, 1000, "ConnectionExpired: Reconnect to continue"),
        asio::detached);
  }

  void armHeartbeat(const std::shared_ptr<WebSocketConnection>& conn) {
    heartbeat_timer_.expires_after(jitter(options_.heartbeat_timeout, options_.heartbeat_jitter));
    heartbeat_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->closeExpired(conn, "no message within the heartbeat timeout");
    });
  }

  asio::awaitable<Outcome> serve(std::shared_ptr<WebSocketConnection> conn) {
    conn_ = conn;
    closing_ = false;
    expired_ = false;
    connected = true;
    ++connections;
    auto since = Clock::now();
    spdlog::info("TCS: connected");
    armHeartbeat(conn);
    age_timer_.expires_after(jitter(options_.max_connection_age, options_.connection_age_jitter));
    age_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) return;
      self->closeExpired(conn, "connection reached its maximum age");
    });
    // The first connection publishes at once; a reconnect does when a tick was missed.
    if (!last_publish_ || Clock::now() - *last_publish_ >= options_.publish_interval) publish();

    boost::beast::error_code ec;
    for (;;) {
      std::string text;
      ec = co_await conn->read(text);
      if (ec) break;
      armHeartbeat(conn);
      try {
        dispatch(text);
      } catch (const std::exception& e) {
        spdlog::error("TCS: handling a message failed: {}", e.what());
      }
    }
    heartbeat_timer_.cancel();
    age_timer_.cancel();
    conn_.reset();
    dropQueue();
    connected = false;

    auto reset_after = options_.backoff_reset_after.value_or(options_.heartbeat_timeout);
    if (Clock::now() - since >= reset_after) backoff_.reset();
    if (stopping_) co_return Outcome::kStopped;
    if (expired_) co_return Outcome::kClean;
    if (auto reason = conn->closeReason();
        reason.code != boost::beast::websocket::close_code::none) {
      spdlog::info("TCS: connection closed ({} {})", reason.code,
                   std::string(reason.reason.data(), reason.reason.size()));
      if (acs::isCleanCloseCode(reason.code)) co_return Outcome::kClean;
      co_return Outcome::kFailed;
    }
    spdlog::warn("TCS: connection lost: {}", ec.message());
    conn->abort();
    co_return Outcome::kFailed;
  }

  void dispatch(const std::string& text) {
    boost::system::error_code ec;
    json::value frame = json::parse(text, ec);
    if (ec || !frame.is_object()) {
      spdlog::warn("TCS: dropping a frame that is not a JSON object ({} bytes)", text.size());
      return;
    }
    const auto& envelope = frame.get_object();
    std::string type;
    if (const auto* t = envelope.if_contains("type"); t && t->is_string()) {
      type = std::string(t->get_string());
    }
    std::string detail;
    if (const auto* m = envelope.if_contains("message"); m && m->is_object()) {
      if (const auto* text_value = m->get_object().if_contains("message");
          text_value && text_value->is_string()) {
        detail = std::string(text_value->get_string());
      }
    }
    if (type == "HeartbeatMessage" || isAck(type)) {
      spdlog::debug("TCS: {}", type);
    } else if (isException(type)) {
      spdlog::warn("TCS: {}: {}", type, detail);
    } else if (type == "StopTelemetrySessionMessage") {
      spdlog::info("TCS: StopTelemetrySessionMessage: {}", detail);
    } else {
      spdlog::info("TCS: dropping a {} (not handled by this agent)",
                   type.empty() ? "frame without a type" : type);
    }
  }

  // --- publishing -------------------------------------------------------------------------------

  struct Built {
    std::vector<TaskMetric> metrics;
    std::map<std::string, std::uint64_t> ticks;  // runtime id -> newest sample included
    bool idle = true;
  };

  Built collectMetrics() {
    Built out;
    for (const auto& [arn, task] : tasks_) {
      TaskMetric metric{task->arn,
                        task->cluster.empty() ? options_.cluster : task->cluster,
                        task->family,
                        std::to_string(task->revision),
                        {}};
      for (const auto& c : task->containers) {
        if (!publishable(c)) continue;
        out.idle = false;
        auto it = published_tick_.find(c.runtime_id);
        auto sets = containerStatsSets(sampler_.usageSamples(c.runtime_id),
                                       it == published_tick_.end() ? 0 : it->second);
        if (!sets) continue;
        metric.containers.push_back({c.name, sets->cpu, sets->memory});
        out.ticks[c.runtime_id] = sets->last_tick;
      }
      if (!metric.containers.empty()) out.metrics.push_back(std::move(metric));
    }
    return out;
  }

  std::vector<TaskHealth> collectHealth() const {
    std::vector<TaskHealth> out;
    for (const auto& [arn, task] : tasks_) {
      TaskHealth health{task->arn,
                        task->cluster.empty() ? options_.cluster : task->cluster,
                        task->family,
                        std::to_string(task->revision),
                        {}};
      for (const auto& c : task->containers) {
        if (!publishable(c) || !hasHealthCheck(c)) continue;
        auto seen = health_.find(task->arn + "/" + c.name);
        auto since = seen != health_.end() && seen->second.since
                         ? *seen->second.since
                         : c.health_checked_at.value_or(std::chrono::system_clock::now());
        health.containers.push_back({c.name, c.health, since, c.health_output.substr(0, 255)});
      }
      if (!health.containers.empty()) out.push_back(std::move(health));
    }
    return out;
  }

  // Signs and queues `envelopes`; `done` runs after the last one was written (true) or once any
  // could not be (false).
  void sendAll(const aws::Credentials& credentials, const std::vector<std::string>& envelopes,
               std::function<void(bool)> done) {
    auto now = std::chrono::system_clock::now();
    std::vector<std::string> frames;
    for (const auto& envelope : envelopes) {
      auto frame = signedFrame(url_, envelope, options_.region, credentials, now);
      if (!frame) {
        spdlog::error("TCS: {}", frame.error().message);
        if (done) done(false);
        return;
      }
      frames.push_back(std::move(*frame));
    }
    auto failed = std::make_shared<bool>(false);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      bool last = i + 1 == frames.size();
      send({std::move(frames[i]), [failed, last, done](bool written) {
              if (*failed) return;
              if (!written) {
                *failed = true;
                if (done) done(false);
              } else if (last && done) {
                done(true);
              }
            }});
    }
  }

  void publish() {
    if (stopping_ || !conn_ || closing_) return;
    last_publish_ = Clock::now();
    publish_timer_.cancel();  // the loop counts the next interval from now
    auto credentials =
        options_.credentials
            ? options_.credentials()
            : Result<aws::Credentials>(fail(ErrorCode::kFailedPrecondition, "no credentials"));
    if (!credentials) {
      spdlog::warn("TCS: credentials for a publish: {}", credentials.error().message);
      return;
    }
    RequestIdentity identity{options_.cluster, options_.container_instance_arn};
    auto now = std::chrono::system_clock::now();
    std::weak_ptr<TcsSessionState> weak = weak_from_this();

    if (options_.metrics_enabled) {
      Built built = collectMetrics();
      if (built.idle || !built.metrics.empty()) {
        auto requests = metricsRequests(identity, endpoints::newUuid(), built.metrics, now,
                                        std::nullopt, options_.limits);
        sendAll(*credentials, requests, [weak, ticks = std::move(built.ticks)](bool ok) {
          auto self = weak.lock();
          if (!self || !ok) return;
          for (const auto& [id, tick] : ticks) {
            auto& mark = self->published_tick_[id];
            mark = std::max(mark, tick);
          }
          ++self->publishes;
        });
      }
    }
    if (options_.health_enabled) {
      auto health = collectHealth();
      if (!health.empty()) {
        sendAll(*credentials,
                healthRequests(identity, endpoints::newUuid(), health, now, options_.limits),
                nullptr);
      }
    }
    if (status_generation_ != reported_generation_ && !statuses_.empty()) {
      std::vector<InstanceStatus> statuses;
      for (const auto& [type, status] : statuses_) statuses.push_back(status);
      auto generation = status_generation_;
      sendAll(*credentials, {instanceStatusRequest(identity, endpoints::newUuid(), statuses, now)},
              [weak, generation](bool ok) {
                auto self = weak.lock();
                if (self && ok) {
                  self->reported_generation_ = std::max(self->reported_generation_, generation);
                }
              });
    }
  }

  struct SeenHealth {
    engine::HealthStatus status = engine::HealthStatus::kUnknown;
    std::optional<std::chrono::system_clock::time_point> since;
  };

  asio::strand<asio::io_context::executor_type> strand_;
  TcsSessionOptions options_;
  const metadata::StatsSampler& sampler_;
  asio::steady_timer wait_timer_, heartbeat_timer_, age_timer_, publish_timer_;
  std::mt19937_64 random_;
  acs::Backoff backoff_;
  bool stopping_ = false;
  bool closing_ = false;
  bool expired_ = false;  // we closed the connection (maximum age, heartbeat timeout)
  bool writing_ = false;
  std::string url_;  // the signed session URL (http/https form), for the frames' signatures
  std::shared_ptr<WebSocketConnection> conn_;
  std::shared_ptr<acs::WebSocketDialAbort> dial_abort_;
  std::deque<Outbound> queue_;
  std::optional<Clock::time_point> last_publish_;
  Clock::time_point last_tick_;

  std::map<std::string, engine::TaskSnapshotPtr> tasks_;  // by ARN
  std::map<std::string, std::uint64_t> published_tick_;   // runtime id -> newest sample sent
  std::map<std::string, SeenHealth> health_;              // "<task arn>/<container name>"
  std::map<std::string, InstanceStatus> statuses_;        // by type
  std::uint64_t status_generation_ = 0, reported_generation_ = 0;

  bool started_ = false;
  std::promise<void> finished_;
  std::shared_future<void> finished_future_ = finished_.get_future().share();
};

TcsSession::TcsSession(asio::io_context& io, TcsSessionOptions options,
                       const metadata::StatsSampler& sampler)
    : state_(std::make_shared<TcsSessionState>(io, std::move(options), sampler)) {}

TcsSession::~TcsSession() {
  stop();
}

void TcsSession::update(const engine::TaskSnapshotPtr& task) {
  state_->update(task);
}

void TcsSession::setInstanceStatus(const std::string& type, InstanceStatusValue status,
                                   const std::string& reason) {
  state_->setInstanceStatus(type, status, reason);
}

void TcsSession::start() {
  state_->start();
}

void TcsSession::stop() {
  state_->stop(!state_->onStrand());
}

int TcsSession::connections() const {
  return state_->connections.load();
}

bool TcsSession::connected() const {
  return state_->connected.load();
}

int TcsSession::publishes() const {
  return state_->publishes.load();
}

}  // namespace ecs::tcs
