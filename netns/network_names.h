// Names of the kernel objects a task's network is made of. Every one is recognisable as the
// agent's and maps back to its task, so a restarted agent can sweep what dead tasks left:
//   namespaces   ecs-<taskId>-<n> (bridge: one per container), ecs-<taskId> (awsvpc: the task's)
//   host veths   ecsv<8 hex of a hash of the task ID><3 hex slot> (IFNAMSIZ allows 15), with the
//                alias "ecs-task:<taskId>/<n>" so `ip link` shows the owner
//   iptables     comment tags ecs-task:<taskId>, ecs-bridge:<bridge>, ecs-base; chains ECS-*
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"

namespace ecs::netns {

inline constexpr std::string_view kNamespacePrefix = "ecs-";
inline constexpr std::string_view kVethPrefix = "ecsv";
inline constexpr std::string_view kTaskTagPrefix = "ecs-task:";
inline constexpr std::string_view kBaseTag = "ecs-base";
inline constexpr int kMaxSlot = 0xfff;

// Task IDs become parts of file names, link aliases and rule comments: letters, digits, '-',
// '_' and '.', at most 64 characters (ECS's are 32 hex digits).
Result<void> validateTaskId(std::string_view task_id);

std::string containerNamespaceName(std::string_view task_id, int slot);  // ecs-<id>-<n>
std::string taskNamespaceName(std::string_view task_id);                 // ecs-<id>
std::string vethName(std::string_view task_id, int slot);                // ecsv<hash8><slot3>
std::string vethAlias(std::string_view task_id, int slot);               // ecs-task:<id>/<n>
std::string taskTag(std::string_view task_id);                           // ecs-task:<id>
std::string bridgeTag(std::string_view bridge);                          // ecs-bridge:<name>

// The task a namespace name or veth alias belongs to; nullopt when it is not one of ours.
// "ecs-<id>-<digits>" is read as a container namespace of <id>.
std::optional<std::string> taskOfNamespace(std::string_view name);
std::optional<std::string> taskOfVethAlias(std::string_view alias);

}  // namespace ecs::netns
