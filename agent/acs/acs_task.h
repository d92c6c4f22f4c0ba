// AcsTask: one task of an ACS PayloadMessage (the model's `Task` shape), read at the edge into
// the engine's TaskSpec plus the credentials the payload carries for it.
//
// The wire shape differs from a task definition's: `environment` is a map; task `cpu` is a
// number of vCPUs; `version` is the revision as a string; volumes name their `type`; and
// much of a container (health check, log configuration, ulimits, user, memory reservation,
// sysctls, ...) travels in `dockerConfig.config` / `dockerConfig.hostConfig`, JSON strings in
// the Docker Engine API's shape, which are parsed and mapped to the same typed fields.
// Container `overrides` (an object or a JSON string) may replace `command`.
//
// Problems are kInvalidArgument with every problem joined by "; ", each naming its JSON path
// ("containers[1].dockerConfig.hostConfig.Ulimits[0].Soft: expected an integer, got a string").
// Validation problems (agent/engine/task_definition.h) name the task-definition field a value
// maps to ("containers[0] (name \"web\").healthCheck.interval: ..."). Messages quote at most
// text::kMaxQuoted characters of a value and never a credential or the text of a malformed JSON
// document. ECS features this agent cannot run make a RUNNING task fail validation
// ("containers[0].firelensConfiguration: not supported by this agent").
//
// A task the cluster wants STOPPED is only read, not validated: the cluster may send just its
// arn and desired status.
#pragma once

#include <boost/json/fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"
#include "agent/engine/task_spec.h"

namespace ecs::acs {

inline constexpr std::string_view kRoleTypeTaskApplication = "TaskApplication";
inline constexpr std::string_view kRoleTypeTaskExecution = "TaskExecution";

// An IAMRoleCredentials of the payload. The secret fields must not reach logs or messages.
struct RoleCredentials {
  std::string credentials_id;
  std::string role_arn;
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
  std::string expiration;  // as sent, e.g. "2016-03-25T06:17:19.318+0000"
  std::string role_type;   // kRoleTypeTaskApplication | kRoleTypeTaskExecution
};

struct AcsTask {
  // The definition's task_role_arn / execution_role_arn come from the credentials' roleArn;
  // role_credentials_id / execution_role_credentials_id are their credentialsId.
  engine::TaskSpec spec;
  std::optional<RoleCredentials> role_credentials;            // `roleCredentials`
  std::optional<RoleCredentials> execution_role_credentials;  // `executionRoleCredentials`
};

// One element of PayloadMessage.tasks.
Result<AcsTask> parseAcsTask(const boost::json::value& task);

// The same from the task's JSON text; malformed JSON names the line and column only.
Result<AcsTask> parseAcsTask(std::string_view json);

// The task's `arn` when it has one, even if the task does not parse: a payload's unreadable
// task is still reported to the cluster as stopped, by its arn.
std::optional<std::string> acsTaskArn(const boost::json::value& task);

}  // namespace ecs::acs
