#include "agent/tcs/tcs_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <map>

#include "agent/acs/session_loop.h"
#include "agent/aws/sigv4.h"
#include "agent/common/text.h"
#include "agent/endpoints/endpoints_resource.h"

namespace ecs::tcs {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

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
  std::sort(headers.begin(), headers.end(), [](const auto& a, const auto& b) {
    return text::lowercase(a.first) < text::lowercase(b.first);
  });
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

// The TCS session on the shared connection loop, plus its publishing. All members but the
// atomics are touched only on the strand.
class TcsSessionState : public acs::SessionLoop {
 public:
  TcsSessionState(asio::io_context& io, TcsSessionOptions options,
                  const metadata::StatsSampler& sampler)
      : SessionLoop(io, settingsFor(options)),
        options_(std::move(options)),
        sampler_(sampler),
        publish_timer_(strand()) {
    if (options_.publish_interval <= Millis::zero()) options_.publish_interval = 20s;
  }

  void update(engine::TaskSnapshotPtr task) {
    if (!task) return;
    asio::post(strand(), [self = self(), task = std::move(task)] { self->applyUpdate(task); });
  }

  void setInstanceStatus(std::string type, InstanceStatusValue status, std::string reason) {
    auto now = std::chrono::system_clock::now();
    asio::post(strand(),
               [self = self(), type = std::move(type), status, reason = std::move(reason), now] {
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

  std::atomic<int> publishes{0};

 private:
  static acs::SessionLoopSettings settingsFor(const TcsSessionOptions& options) {
    auto settings = acs::sessionLoopSettings("TCS", options);
    settings.heartbeat_timeout_is_clean = true;
    return settings;
  }

  std::shared_ptr<TcsSessionState> self() {
    return std::static_pointer_cast<TcsSessionState>(shared_from_this());
  }

  std::string query() override { return tcsQuery(options_); }
  void onMessage(const std::string& text) override { dispatch(text); }
  void onStarted() override { asio::co_spawn(strand(), publishLoop(self()), asio::detached); }
  void onStopping() override { publish_timer_.cancel(); }
  // The first connection publishes at once; a reconnect does when a tick was missed.
  void onConnected() override {
    if (!last_publish_ || Clock::now() - *last_publish_ >= options_.publish_interval) publish();
  }

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

  // A publish every interval after the last one; a tick without a connection is skipped (the
  // samples wait for the next one, and onConnected() publishes when a tick was missed).
  static asio::awaitable<void> publishLoop(std::shared_ptr<TcsSessionState> self) {
    self->last_tick_ = Clock::now() - self->options_.publish_interval;
    while (!self->stopping()) {
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
      auto frame = signedFrame(connectionUrl(), envelope, options_.region, credentials, now);
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
      send(std::move(frames[i]), [failed, last, done](bool written) {
        if (*failed) return;
        if (!written) {
          *failed = true;
          if (done) done(false);
        } else if (last && done) {
          done(true);
        }
      });
    }
  }

  void publish() {
    if (stopping() || !open()) return;
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
    std::weak_ptr<TcsSessionState> weak = self();

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

  TcsSessionOptions options_;
  const metadata::StatsSampler& sampler_;
  asio::steady_timer publish_timer_;
  std::optional<Clock::time_point> last_publish_;
  Clock::time_point last_tick_;

  std::map<std::string, engine::TaskSnapshotPtr> tasks_;  // by ARN
  std::map<std::string, std::uint64_t> published_tick_;   // runtime id -> newest sample sent
  std::map<std::string, SeenHealth> health_;              // "<task arn>/<container name>"
  std::map<std::string, InstanceStatus> statuses_;        // by type
  std::uint64_t status_generation_ = 0, reported_generation_ = 0;
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
