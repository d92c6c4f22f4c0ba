#include "agent/runtime/capabilities.h"

#include <sys/capability.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <type_traits>

namespace ecs::runtime {

namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::toupper(c); });
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::ranges::find(v, s) != v.end();
}

Result<std::vector<std::string>> normalizeAll(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& name : names) {
    auto normalized = normalizeCapability(name);
    if (!normalized) return fail(normalized.error());
    if (!contains(out, *normalized)) out.push_back(std::move(*normalized));
  }
  return out;
}

}  // namespace

Result<std::string> normalizeCapability(std::string_view name) {
  std::string canonical = upper(name);
  if (canonical == "ALL") return canonical;
  if (!canonical.starts_with("CAP_")) canonical.insert(0, "CAP_");
  // libcap only knows the "cap_" spelling; a numeric name would be accepted by it as a bit.
  cap_value_t value = 0;
  if (canonical.size() == 4 || std::isdigit(static_cast<unsigned char>(canonical[4])) ||
      cap_from_name(lower(canonical).c_str(), &value) != 0) {
    return fail(ErrorCode::kInvalidArgument, "unknown capability {:?}", std::string(name));
  }
  return canonical;
}

const std::vector<std::string>& allCapabilities() {
  static const std::vector<std::string> caps = [] {
    // As Docker: what this process holds (effective set), so that "all" never asks runc for a
    // capability the agent cannot grant; every known one if that cannot be read.
    std::unique_ptr<std::remove_pointer_t<cap_t>, decltype(&cap_free)> current(cap_get_proc(),
                                                                               &cap_free);
    std::vector<std::string> out;
    const int bits = cap_max_bits();
    for (int bit = 0; bit < bits; ++bit) {
      const auto value = static_cast<cap_value_t>(bit);
      std::unique_ptr<char, decltype(&cap_free)> name(cap_to_name(value), &cap_free);
      // libcap spells a bit it has no name for as a number; runc could not name it either.
      if (name == nullptr || std::isdigit(static_cast<unsigned char>(name.get()[0]))) continue;
      cap_flag_value_t held = CAP_SET;
      if (current != nullptr && cap_get_flag(current.get(), value, CAP_EFFECTIVE, &held) != 0) {
        held = CAP_SET;
      }
      if (held == CAP_SET) out.push_back(upper(name.get()));
    }
    return out;
  }();
  return caps;
}

Result<std::vector<std::string>> applyCapabilityChanges(const std::vector<std::string>& base,
                                                        const std::vector<std::string>& add,
                                                        const std::vector<std::string>& drop,
                                                        bool privileged) {
  if (privileged) return allCapabilities();
  auto adds = normalizeAll(add);
  if (!adds) return fail(adds.error().wrap("capabilities.add"));
  for (const auto& cap : *adds) {
    if (cap != "ALL" && !contains(allCapabilities(), cap)) {
      return fail(ErrorCode::kInvalidArgument,
                  "capabilities.add: {} is not available to the agent on this host", cap);
    }
  }
  auto drops = normalizeAll(drop);
  if (!drops) return fail(drops.error().wrap("capabilities.drop"));

  std::vector<std::string> caps;
  auto push = [&](const std::string& cap) {
    if (cap != "ALL" && !contains(caps, cap)) caps.push_back(cap);
  };
  if (contains(*adds, "ALL")) {
    for (const auto& cap : allCapabilities()) {
      if (!contains(*drops, cap)) push(cap);
    }
    return caps;
  }
  if (!contains(*drops, "ALL")) {
    for (const auto& cap : base) {
      if (!contains(*drops, cap)) push(cap);
    }
  }
  for (const auto& cap : *adds) push(cap);
  return caps;
}

}  // namespace ecs::runtime
