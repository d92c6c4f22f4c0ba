#include "netns/network_names.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace ecs::netns {
namespace {

// FNV-1a: stable across builds and hosts, so a restarted agent derives the same veth names.
uint32_t hash32(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return static_cast<uint32_t>(hash ^ (hash >> 32));
}

bool allDigits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

Result<void> validateTaskId(std::string_view task_id) {
  const bool ok = !task_id.empty() && task_id.size() <= 64 &&
                  std::all_of(task_id.begin(), task_id.end(), [](unsigned char c) {
                    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
                  });
  if (!ok) {
    return fail(ErrorCode::kInvalidArgument,
                "task ID '{}' cannot name network objects (want 1-64 of [A-Za-z0-9_.-])", task_id);
  }
  return {};
}

std::string containerNamespaceName(std::string_view task_id, int slot) {
  return fmt::format("{}{}-{}", kNamespacePrefix, task_id, slot);
}

std::string taskNamespaceName(std::string_view task_id) {
  return fmt::format("{}{}", kNamespacePrefix, task_id);
}

std::string vethName(std::string_view task_id, int slot) {
  return fmt::format("{}{:08x}{:03x}", kVethPrefix, hash32(task_id), slot & kMaxSlot);
}

std::string vethAlias(std::string_view task_id, int slot) {
  return fmt::format("{}{}/{}", kTaskTagPrefix, task_id, slot);
}

std::string taskTag(std::string_view task_id) {
  return fmt::format("{}{}", kTaskTagPrefix, task_id);
}

std::string bridgeTag(std::string_view bridge) {
  return fmt::format("ecs-bridge:{}", bridge);
}

std::optional<std::string> taskOfNamespace(std::string_view name) {
  if (!name.starts_with(kNamespacePrefix)) return std::nullopt;
  std::string_view rest = name.substr(kNamespacePrefix.size());
  const size_t dash = rest.rfind('-');
  if (dash != std::string_view::npos && dash > 0 && allDigits(rest.substr(dash + 1))) {
    rest = rest.substr(0, dash);
  }
  if (rest.empty()) return std::nullopt;
  return std::string(rest);
}

std::optional<std::string> taskOfVethAlias(std::string_view alias) {
  if (!alias.starts_with(kTaskTagPrefix)) return std::nullopt;
  std::string_view rest = alias.substr(kTaskTagPrefix.size());
  const size_t slash = rest.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  return std::string(rest.substr(0, slash));
}

}  // namespace ecs::netns
