#include "agent/acs/acs_session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include "agent/acs/session_loop.h"
#include "agent/aws/sigv4.h"
#include "agent/common/text.h"

namespace ecs::acs {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

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

// The ACS session on the shared connection loop. All members are touched only on the strand.
class AcsSessionState : public SessionLoop {
 public:
  AcsSessionState(asio::io_context& io, AcsSessionOptions options, AcsHandler& handler)
      : SessionLoop(io, settingsFor(options)), options_(std::move(options)), handler_(handler) {}

  // Queues a frame for the current connection (from any thread).
  void post(std::string frame) {
    asio::post(strand(), [self = self(), frame = std::move(frame)]() mutable {
      self->send(std::move(frame));
    });
  }

 private:
  static SessionLoopSettings settingsFor(const AcsSessionOptions& options) {
    auto settings = sessionLoopSettings("ACS", options);
    settings.inactive_wait = options.inactive_instance_wait;
    return settings;
  }

  std::shared_ptr<AcsSessionState> self() {
    return std::static_pointer_cast<AcsSessionState>(shared_from_this());
  }

  std::string query() override { return acsQuery(options_, send_credentials_); }

  void onConnected() override {
    send_credentials_ = false;
    handler_.onConnected();
  }

  bool refusedAsInactive(const WebSocketConnectError& error) override {
    if (error.body.find("InactiveInstanceException") == std::string::npos) return false;
    handler_.onInactiveInstance();
    return true;
  }

  void onMessage(const std::string& text) override { dispatch(text); }

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
      handler_.onTaskManifest(std::move(manifest), AcsReply(self()));
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
    handler_.onPayload(std::move(payload), AcsReply(self()));
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
    handler_.onCredentials(std::move(out), AcsReply(self()));
  }

  void reply(std::string_view type, json::object message) {
    send(json::serialize(json::object{{"type", type}, {"message", std::move(message)}}));
  }

  AcsSessionOptions options_;
  AcsHandler& handler_;
  bool send_credentials_ = true;  // only on the first connection
};

namespace {

void sendFrame(const std::weak_ptr<AcsSessionState>& weak, std::string_view type,
               json::object message) {
  if (auto session = weak.lock()) {
    session->post(json::serialize(json::object{{"type", type}, {"message", std::move(message)}}));
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
