#include "agent/acs/acs_frame.h"

#include <utility>

namespace ecs::acs {

namespace json = boost::json;

bool AcsPayload::allTasksParsed() const {
  for (const auto& task : tasks) {
    if (!task.task) return false;
  }
  return true;
}

const json::object& AcsFrame::message() const {
  static const json::object kEmpty;
  const json::value* message = envelope.if_contains("message");
  return message && message->is_object() ? message->get_object() : kEmpty;
}

std::optional<AcsFrame> parseAcsFrame(std::string_view text) {
  boost::system::error_code ec;
  json::value document = json::parse(text, ec);
  if (ec || !document.is_object()) return std::nullopt;
  AcsFrame frame;
  frame.envelope = std::move(document.get_object());
  frame.type = frameString(frame.envelope, "type");
  return frame;
}

std::optional<AcsPayload> readPayloadMessage(const json::object& message) {
  AcsPayload payload;
  payload.message_id = frameString(message, "messageId");
  payload.cluster_arn = frameString(message, "clusterArn");
  payload.container_instance_arn = frameString(message, "containerInstanceArn");
  payload.seq_num = frameInteger(message, "seqNum");
  payload.generated_at = frameInteger(message, "generatedAt");
  if (payload.message_id.empty() || payload.cluster_arn.empty() ||
      payload.container_instance_arn.empty()) {
    return std::nullopt;
  }
  if (const auto* tasks = message.if_contains("tasks"); tasks && tasks->is_array()) {
    for (const auto& task : tasks->get_array()) {
      payload.tasks.push_back({acsTaskArn(task), parseAcsTask(task), json::serialize(task)});
    }
  }
  return payload;
}

std::string frameString(const json::object& object, std::string_view key) {
  if (const auto* value = object.if_contains(key); value && value->is_string()) {
    return std::string(value->get_string());
  }
  return {};
}

std::int64_t frameInteger(const json::object& object, std::string_view key) {
  if (const auto* value = object.if_contains(key)) {
    if (value->is_int64()) return value->get_int64();
    if (value->is_uint64()) return static_cast<std::int64_t>(value->get_uint64());
    if (value->is_double()) return static_cast<std::int64_t>(value->get_double());
  }
  return 0;
}

}  // namespace ecs::acs
