#include "agent/acs/acs_session.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/json.hpp>
#include <deque>
#include <future>
#include <mutex>
#include <random>

#include "agent/acs/control_session.h"
#include "agent/acs/websocket_client.h"
#include "agent/aws/sigv4.h"
#include "agent/common/text.h"

namespace ecs::acs {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

std::vector<TaskIdentifier> taskIdentifiers(const json::object& object, std::string_view key) {
  std::vector<TaskIdentifier> out;
  const auto* list = object.if_contains(key);
  if (list == nullptr || !list->is_array()) return out;
  for (const auto& item : list->get_array()) {
    if (!item.is_object()) continue;
    const auto& task = item.get_object();
    out.push_back({frameString(task, "taskArn"), frameString(task, "taskClusterArn"),
                   frameString(task, "desiredStatus")});
  }
  return out;
}

json::array identifiersJson(const std::vector<TaskIdentifier>& tasks) {
  json::array out;
  for (const auto& task : tasks) {
    out.push_back(json::object{{"taskArn", task.task_arn},
                               {"taskClusterArn", task.task_cluster_arn},
                               {"desiredStatus", task.desired_status}});
  }
  return out;
}

constexpr std::string_view kExceptionTypes[] = {
    "ServerException",          "BadRequestException",   "InvalidClusterException",
    "InvalidInstanceException", "AccessDeniedException", "InactiveInstanceException"};

bool isException(std::string_view type) {
  for (auto known : kExceptionTypes) {
    if (type == known) return true;
  }
  return false;
}

}  // namespace

std::string acsQuery(const AcsSessionOptions& options, bool send_credentials) {
  aws::QueryParameters query{{"agentHash", options.agent_hash},
                             {"agentVersion", options.agent_version},
                             {"clusterArn", options.cluster},
                             {"containerInstanceArn", options.container_instance_arn},
                             {"protocolVersion", "2"},
                             {"sendCredentials", send_credentials ? "true" : "false"},
                             {"seqNum", "1"}};
  if (!options.docker_version.empty()) query.emplace_back("dockerVersion", options.docker_version);
  return aws::encodeQuery(query);
}

// Everything the session's coroutines share; it lives as long as any of them runs. All members
// but the atomics are touched only on the strand.
class AcsSessionState : public std::enable_shared_from_this<AcsSessionState> {
 public:
  AcsSessionState(asio::io_context& io, AcsSessionOptions options, AcsHandler& handler)
      : strand_(asio::make_strand(io)),
        options_(std::move(options)),
        handler_(handler),
        wait_timer_(strand_),
        heartbeat_timer_(strand_),
        age_timer_(strand_),
        random_(std::random_device{}()),
        backoff_(options_.backoff_initial, options_.backoff_max, options_.backoff_multiplier,
                 options_.backoff_jitter) {}

  void start() {
    asio::co_spawn(strand_, run(shared_from_this()),
                   [self = shared_from_this()](std::exception_ptr error) {
                     if (error) {
                       try {
                         std::rethrow_exception(error);
                       } catch (const std::exception& e) {
                         spdlog::error("ACS session ended: {}", e.what());
                       }
                     }
                     self->finished_.set_value();
                   });
    started_ = true;
  }

  void stop(bool wait) {
    if (!started_) return;
    asio::post(strand_, [self = shared_from_this()] { self->requestStop(); });
    if (wait) {
      auto budget = options_.close_timeout + 2s;
      if (finished_future_.wait_for(budget) != std::future_status::ready) {
        spdlog::warn("ACS session did not stop within {} ms", budget.count());
      }
    }
  }

  bool onStrand() const { return strand_.running_in_this_thread(); }

  // Queues a frame for the current connection (from any thread).
  void send(std::string frame) {
    asio::post(strand_, [self = shared_from_this(), frame = std::move(frame)]() mutable {
      if (!self->conn_) {
        spdlog::debug("ACS: not connected, dropping a reply");
        return;
      }
      self->queue_.push_back(std::move(frame));
      if (!self->writing_) {
        self->writing_ = true;
        asio::co_spawn(self->strand_, self->writeLoop(self, self->conn_), asio::detached);
      }
    });
  }

  std::atomic<int> connections{0};
  std::atomic<bool> connected{false};

 private:
  enum class Outcome { kClean, kFailed, kInactive, kStopped };

  void requestStop() {
    stopping_ = true;
    wait_timer_.cancel();
    heartbeat_timer_.cancel();
    age_timer_.cancel();
    if (dial_abort_) dial_abort_->abort();
    if (conn_ && !closing_) {
      closing_ = true;
      asio::co_spawn(strand_, closeLoop(shared_from_this(), conn_, 1000, "agent stopping"),
                     asio::detached);
    }
  }

  static asio::awaitable<void> closeLoop(std::shared_ptr<AcsSessionState> self,
                                         std::shared_ptr<WebSocketConnection> conn,
                                         std::uint16_t code, std::string reason) {
    auto ec = co_await conn->close(code, reason);
    if (ec) conn->abort();
    (void)self;
  }

  static asio::awaitable<void> writeLoop(std::shared_ptr<AcsSessionState> self,
                                         std::shared_ptr<WebSocketConnection> conn) {
    while (!self->queue_.empty() && self->conn_ == conn) {
      std::string frame = std::move(self->queue_.front());
      self->queue_.pop_front();
      auto ec = co_await conn->write(std::move(frame));
      if (ec) {
        spdlog::warn("ACS: write failed: {}", ec.message());
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

  Millis jitter(Millis base, Millis spread) { return jittered(base, spread, random_); }

  static asio::awaitable<void> run(std::shared_ptr<AcsSessionState> self) {
    self->backoff_.reset();
    while (!self->stopping_) {
      Outcome outcome = co_await self->connectOnce();
      if (self->stopping_ || outcome == Outcome::kStopped) break;
      Millis delay{0};
      if (outcome == Outcome::kClean) {
        self->backoff_.reset();
      } else if (outcome == Outcome::kInactive) {
        delay = self->options_.inactive_instance_wait;
        spdlog::warn("ACS: the container instance is inactive; trying again in {} ms",
                     delay.count());
      } else {
        delay = self->backoff_.next(self->random_);
        spdlog::info("ACS: reconnecting in {} ms", delay.count());
      }
      if (delay.count() > 0) {
        self->wait_timer_.expires_after(delay);
        co_await self->wait_timer_.async_wait(kAwait);
      }
    }
    spdlog::info("ACS session stopped");
  }

  asio::awaitable<Outcome> connectOnce() {
    dial_abort_ = std::make_shared<WebSocketDialAbort>();
    // Built apart from the co_await: GCC 12 destroys a braced temporary argument of a coroutine
    // call twice.
    SessionDial dial{.name = "ACS",
                     .endpoint = options_.endpoint,
                     .credentials = options_.credentials,
                     .query = acsQuery(options_, send_credentials_),
                     .region = options_.region,
                     .websocket = {.connect_timeout = options_.connect_timeout,
                                   .close_timeout = options_.close_timeout,
                                   .max_message_bytes = options_.max_message_bytes}};
    auto dialed = co_await dialSession(strand_, std::move(dial), dial_abort_);
    dial_abort_.reset();
    if (stopping_) {
      if (dialed) dialed->conn->abort();
      co_return Outcome::kStopped;
    }
    if (!dialed) {
      if (dialed.error().body.find("InactiveInstanceException") != std::string::npos) {
        handler_.onInactiveInstance();
        co_return Outcome::kInactive;
      }
      co_return Outcome::kFailed;
    }
    co_return co_await serve(dialed->conn);
  }

  void armHeartbeat(const std::shared_ptr<WebSocketConnection>& conn) {
    heartbeat_timer_.expires_after(jitter(options_.heartbeat_timeout, options_.heartbeat_jitter));
    heartbeat_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->conn_ != conn) return;
      spdlog::warn("ACS: no message within the heartbeat timeout; reconnecting");
      conn->abort();
    });
  }

  asio::awaitable<Outcome> serve(std::shared_ptr<WebSocketConnection> conn) {
    conn_ = conn;
    closing_ = false;
    expired_ = false;
    send_credentials_ = false;
    connected = true;
    ++connections;
    auto since = Clock::now();
    spdlog::info("ACS: connected");
    handler_.onConnected();
    armHeartbeat(conn);
    age_timer_.expires_after(jitter(options_.max_connection_age, options_.connection_age_jitter));
    age_timer_.async_wait([weak = weak_from_this(), conn](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self || self->conn_ != conn || self->closing_) return;
      spdlog::info("ACS: connection reached its maximum age; reconnecting");
      self->closing_ = true;
      self->expired_ = true;
      asio::co_spawn(self->strand_,
                     closeLoop(self, conn, 1000, "ConnectionExpired: Reconnect to continue"),
                     asio::detached);
    });

    boost::beast::error_code ec;
    for (;;) {
      std::string text;
      ec = co_await conn->read(text);
      if (ec) break;
      armHeartbeat(conn);
      // A handler's exception must not end the session: the next message may be fine.
      try {
        dispatch(text);
      } catch (const std::exception& e) {
        spdlog::error("ACS: handling a message failed: {}", e.what());
      }
    }
    heartbeat_timer_.cancel();
    age_timer_.cancel();
    conn_.reset();
    queue_.clear();
    connected = false;

    auto reset_after = options_.backoff_reset_after.value_or(options_.heartbeat_timeout);
    if (Clock::now() - since >= reset_after) backoff_.reset();
    if (stopping_) co_return Outcome::kStopped;
    if (expired_) co_return Outcome::kClean;
    // The server's close frame decides, even when the TCP teardown after it failed.
    if (auto reason = conn->closeReason();
        reason.code != boost::beast::websocket::close_code::none) {
      spdlog::info("ACS: connection closed ({} {})", reason.code,
                   std::string(reason.reason.data(), reason.reason.size()));
      if (isCleanCloseCode(reason.code)) co_return Outcome::kClean;
      co_return Outcome::kFailed;
    }
    spdlog::warn("ACS: connection lost: {}", ec.message());
    conn->abort();
    co_return Outcome::kFailed;
  }

  void dispatch(const std::string& text) {
    std::optional<AcsFrame> frame = parseAcsFrame(text);
    if (!frame) {
      spdlog::warn("ACS: dropping a frame that is not a JSON object ({} bytes)", text.size());
      return;
    }
    const json::object& envelope = frame->envelope;
    const std::string& type = frame->type;
    const json::object* message = &frame->message();
    if (type.empty()) {
      if (envelope.size() == 1 && envelope.begin()->value().is_string()) {
        spdlog::warn("ACS: {}: {}", text::clip(envelope.begin()->key()),
                     text::clip(envelope.begin()->value().get_string()));
      } else {
        spdlog::warn("ACS: dropping a frame without a type");
      }
      return;
    }
    if (type == "HeartbeatMessage") {
      reply("HeartbeatAckRequest", json::object{{"messageId", frameString(*message, "messageId")}});
    } else if (type == "PayloadMessage") {
      onPayload(*message);
    } else if (type == "IAMRoleCredentialsMessage") {
      onCredentials(*message);
    } else if (type == "TaskManifestMessage") {
      AcsTaskManifest manifest{frameString(*message, "messageId"),
                               frameString(*message, "clusterArn"),
                               frameString(*message, "containerInstanceArn"),
                               frameInteger(*message, "timeline"),
                               frameInteger(*message, "generatedAt"),
                               taskIdentifiers(*message, "tasks")};
      if (manifest.message_id.empty()) {
        spdlog::warn("ACS: dropping a TaskManifestMessage without messageId");
        return;
      }
      handler_.onTaskManifest(std::move(manifest), AcsReply(weak_from_this()));
    } else if (type == "TaskStopVerificationAck") {
      handler_.onStopVerificationAck({frameString(*message, "messageId"),
                                      frameInteger(*message, "generatedAt"),
                                      taskIdentifiers(*message, "stopTasks")});
    } else if (type == "StageUpdateMessage" || type == "PerformUpdateMessage") {
      spdlog::info("ACS: refusing {}: the package manager updates this agent", type);
      reply("NackRequest",
            json::object{{"cluster", frameString(*message, "clusterArn")},
                         {"containerInstance", frameString(*message, "containerInstanceArn")},
                         {"messageId", frameString(*message, "messageId")},
                         {"reason", "updates are managed by the package manager"}});
    } else if (type == "CloseMessage" || type == "ErrorMessage" || isException(type)) {
      spdlog::warn("ACS: {}: {}", type, text::clip(frameString(*message, "message")));
    } else {
      spdlog::info("ACS: dropping a {} (not handled by this agent)", text::clip(type));
    }
  }

  void onPayload(const json::object& message) {
    std::optional<AcsPayload> read = readPayloadMessage(message);
    if (!read) {
      spdlog::warn(
          "ACS: dropping a PayloadMessage without messageId, clusterArn or "
          "containerInstanceArn");
      return;
    }
    AcsPayload& payload = *read;
    for (std::size_t i = 0; i < payload.tasks.size(); ++i) {
      if (!payload.tasks[i].task) {
        spdlog::warn("ACS: payload {} task {} ({}): {}", payload.message_id, i,
                     payload.tasks[i].arn.value_or("no arn"),
                     payload.tasks[i].task.error().message);
      }
    }
    handler_.onPayload(std::move(payload), AcsReply(weak_from_this()));
  }

  void onCredentials(const json::object& message) {
    AcsCredentialsMessage out;
    out.message_id = frameString(message, "messageId");
    out.task_arn = frameString(message, "taskArn");
    out.task_cluster_arn = frameString(message, "taskClusterArn");
    std::string role_type = frameString(message, "roleType");
    const auto* creds = message.if_contains("roleCredentials");
    if (out.message_id.empty() || out.task_arn.empty() || role_type.empty() || creds == nullptr ||
        !creds->is_object() || frameString(creds->get_object(), "credentialsId").empty()) {
      spdlog::warn("ACS: dropping an incomplete IAMRoleCredentialsMessage");
      return;
    }
    const auto& c = creds->get_object();
    out.credentials = RoleCredentials{.credentials_id = frameString(c, "credentialsId"),
                                      .role_arn = frameString(c, "roleArn"),
                                      .access_key_id = frameString(c, "accessKeyId"),
                                      .secret_access_key = frameString(c, "secretAccessKey"),
                                      .session_token = frameString(c, "sessionToken"),
                                      .expiration = frameString(c, "expiration"),
                                      .role_type = role_type};
    handler_.onCredentials(std::move(out), AcsReply(weak_from_this()));
  }

  void reply(std::string_view type, json::object message) {
    send(json::serialize(json::object{{"type", type}, {"message", std::move(message)}}));
  }

  asio::strand<asio::io_context::executor_type> strand_;
  AcsSessionOptions options_;
  AcsHandler& handler_;
  asio::steady_timer wait_timer_, heartbeat_timer_, age_timer_;
  std::mt19937_64 random_;
  Backoff backoff_;
  bool stopping_ = false;
  bool closing_ = false;
  bool expired_ = false;  // we closed the connection at its maximum age
  bool send_credentials_ = true;
  bool writing_ = false;
  std::shared_ptr<WebSocketConnection> conn_;
  std::shared_ptr<WebSocketDialAbort> dial_abort_;  // the connection attempt in flight
  std::deque<std::string> queue_;
  bool started_ = false;
  std::promise<void> finished_;
  std::shared_future<void> finished_future_ = finished_.get_future().share();
};

namespace {

void sendFrame(const std::weak_ptr<AcsSessionState>& weak, std::string_view type,
               json::object message) {
  if (auto session = weak.lock()) {
    session->send(json::serialize(json::object{{"type", type}, {"message", std::move(message)}}));
  }
}

void sendCredentialsAck(const std::weak_ptr<AcsSessionState>& weak, const std::string& message_id,
                        const RoleCredentials& credentials) {
  sendFrame(weak, "IAMRoleCredentialsAckRequest",
            json::object{{"messageId", message_id},
                         {"expiration", credentials.expiration},
                         {"credentialsId", credentials.credentials_id}});
}

}  // namespace

bool AcsReply::ackPayload(const AcsPayload& payload) const {
  if (!payload.allTasksParsed()) return false;
  sendFrame(session_, "AckRequest",
            json::object{{"cluster", payload.cluster_arn},
                         {"containerInstance", payload.container_instance_arn},
                         {"messageId", payload.message_id}});
  for (const auto& task : payload.tasks) {
    if (task.task->role_credentials) {
      sendCredentialsAck(session_, payload.message_id, *task.task->role_credentials);
    }
    if (task.task->execution_role_credentials) {
      sendCredentialsAck(session_, payload.message_id, *task.task->execution_role_credentials);
    }
  }
  return true;
}

void AcsReply::ackCredentials(const AcsCredentialsMessage& message) const {
  sendCredentialsAck(session_, message.message_id, message.credentials);
}

void AcsReply::ackManifest(const AcsTaskManifest& manifest,
                           const std::vector<TaskIdentifier>& stop_candidates) const {
  sendFrame(session_, "AckRequest",
            json::object{{"cluster", manifest.cluster_arn},
                         {"containerInstance", manifest.container_instance_arn},
                         {"messageId", manifest.message_id}});
  if (!stop_candidates.empty()) {
    sendFrame(session_, "TaskStopVerificationMessage",
              json::object{{"messageId", manifest.message_id},
                           {"stopCandidates", identifiersJson(stop_candidates)}});
  }
}

AcsSession::AcsSession(asio::io_context& io, AcsSessionOptions options, AcsHandler& handler)
    : state_(std::make_shared<AcsSessionState>(io, std::move(options), handler)) {}

AcsSession::~AcsSession() {
  stop();
}

void AcsSession::start() {
  state_->start();
}

void AcsSession::stop() {
  state_->stop(!state_->onStrand());
}

int AcsSession::connections() const {
  return state_->connections.load();
}

bool AcsSession::connected() const {
  return state_->connected.load();
}

}  // namespace ecs::acs
