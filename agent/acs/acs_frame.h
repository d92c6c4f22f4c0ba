// AcsFrame: one text frame from ACS read at the edge: its envelope ({"type": ..., "message":
// {...}}) and, for a PayloadMessage, the payload with each task read and validated by
// parseAcsTask. Nothing here acts on a frame: AcsSession hands what it reads to its handler.
// Malformed input is never an exception; a frame that is not a JSON object, or a payload
// without its identifiers, reads as nullopt.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/acs/acs_task.h"
#include "agent/common/result.h"

namespace ecs::acs {

// One element of PayloadMessage.tasks: its arn when it has one, and the task or why it could not
// be read.
struct PayloadTask {
  std::optional<std::string> arn;
  Result<AcsTask> task;
  std::string json;  // the task object as received (the state store keeps it)
};

struct AcsPayload {
  std::string message_id;
  std::string cluster_arn;
  std::string container_instance_arn;
  std::int64_t seq_num = 0;
  std::int64_t generated_at = 0;
  std::vector<PayloadTask> tasks;

  bool allTasksParsed() const;
};

struct AcsFrame {
  std::string type;  // empty when the envelope has none
  boost::json::object envelope;

  // The envelope's "message" object; an empty object when it has none.
  const boost::json::object& message() const;
};

// The frame's envelope; nullopt when the text is not a JSON object.
std::optional<AcsFrame> parseAcsFrame(std::string_view text);

// A PayloadMessage's `message`; nullopt without messageId, clusterArn or containerInstanceArn.
std::optional<AcsPayload> readPayloadMessage(const boost::json::object& message);

// A member of a frame's object as a string or an integer; "" or 0 when absent or of another type.
std::string frameString(const boost::json::object& object, std::string_view key);
std::int64_t frameInteger(const boost::json::object& object, std::string_view key);

}  // namespace ecs::acs
