// The small public helpers of task_definition.h. Reading the JSON is in
// task_definition_parse.cpp, validation in task_definition_validate.cpp.
#include "agent/engine/task_definition.h"

#include <sys/capability.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <utility>

#include "agent/common/json_reader.h"
#include "agent/common/text.h"

namespace ecs::engine {
namespace {

using text::clip;
using text::isAlpha;
using text::isDigit;

// Parses "<digits>[.<digits>]" into value * scale, exactly; nullopt when the text is not such a
// number, the product is not whole, or it does not fit an int.
std::optional<int> scaledDecimal(std::string_view number, int64_t scale) {
  size_t dot = number.find('.');
  std::string_view whole = number.substr(0, dot);
  std::string_view fraction = dot == std::string_view::npos ? "" : number.substr(dot + 1);
  if (whole.empty() && fraction.empty()) return std::nullopt;
  if (dot != std::string_view::npos && fraction.empty()) return std::nullopt;
  if (!std::all_of(whole.begin(), whole.end(), isDigit) ||
      !std::all_of(fraction.begin(), fraction.end(), isDigit)) {
    return std::nullopt;
  }
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  if (whole.size() > 10 || fraction.size() > 9) return std::nullopt;
  int64_t whole_value = 0;
  for (char c : whole) whole_value = whole_value * 10 + (c - '0');
  int64_t fraction_value = 0;
  int64_t denominator = 1;
  for (char c : fraction) {
    fraction_value = fraction_value * 10 + (c - '0');
    denominator *= 10;
  }
  int64_t numerator = fraction_value * scale;
  if (numerator % denominator != 0) return std::nullopt;
  int64_t result = whole_value * scale + numerator / denominator;
  if (result > std::numeric_limits<int>::max()) return std::nullopt;
  return static_cast<int>(result);
}

// Splits "<number><spaces><unit>" into its two parts.
std::pair<std::string_view, std::string_view> splitUnit(std::string_view size) {
  size_t end = 0;
  while (end < size.size() && (isDigit(size[end]) || size[end] == '.')) ++end;
  return {size.substr(0, end), text::trim(size.substr(end))};
}

}  // namespace

const ContainerDefinition* TaskDefinition::container(std::string_view name) const {
  for (const auto& c : container_definitions) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Result<PortRange> parsePortRange(std::string_view range) {
  size_t dash = range.find('-');
  auto number = [](std::string_view digits) -> std::optional<int> {
    if (digits.empty() || digits.size() > 5 ||
        !std::all_of(digits.begin(), digits.end(), isDigit)) {
      return std::nullopt;
    }
    int value = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return value;
  };
  if (dash == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is not a port range like \"8000-8010\"",
                clip(range));
  }
  auto first = number(range.substr(0, dash));
  auto last = number(range.substr(dash + 1));
  if (!first || !last) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is not a port range like \"8000-8010\"",
                clip(range));
  }
  if (*first < 1 || *last > 65535) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is outside 1..65535", clip(range));
  }
  if (*first >= *last) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\": the first port must be below the last",
                clip(range));
  }
  return PortRange{*first, *last};
}

Result<int> parseTaskCpu(std::string_view cpu) {
  auto [number, unit] = splitUnit(text::trim(cpu));
  std::optional<int> units;
  if (unit.empty()) {
    if (number.find('.') == std::string_view::npos) units = scaledDecimal(number, 1);
  } else if (text::equalsIgnoreCase(unit, "vcpu")) {
    units = scaledDecimal(number, 1024);
  }
  if (!units) {
    return fail(ErrorCode::kInvalidArgument,
                "\"{}\" is not a whole number of CPU units or a vCPU amount (e.g. \"256\" or "
                "\"0.25 vCPU\")",
                clip(cpu));
  }
  return *units;
}

Result<int> parseTaskMemory(std::string_view memory) {
  auto [number, unit] = splitUnit(text::trim(memory));
  std::optional<int> mib;
  if (unit.empty()) {
    if (number.find('.') == std::string_view::npos) mib = scaledDecimal(number, 1);
  } else if (text::equalsIgnoreCase(unit, "gb") || text::equalsIgnoreCase(unit, "gib")) {
    mib = scaledDecimal(number, 1024);
  } else if (text::equalsIgnoreCase(unit, "mb") || text::equalsIgnoreCase(unit, "mib")) {
    mib = scaledDecimal(number, 1);
  }
  if (!mib) {
    return fail(ErrorCode::kInvalidArgument,
                "\"{}\" is not a whole number of MiB or a GB amount (e.g. \"512\" or \"0.5 GB\")",
                clip(memory));
  }
  return *mib;
}

std::optional<std::string> canonicalCapabilityName(std::string_view name) {
  if (text::equalsIgnoreCase(name, "ALL")) return "ALL";
  std::string upper = text::uppercase(name);
  if (!upper.starts_with("CAP_")) upper = "CAP_" + upper;
  // libcap also takes numbers and comma lists; Docker only takes names.
  std::string_view bare = std::string_view(upper).substr(4);
  if (bare.empty() || !isAlpha(bare.front()) || !std::all_of(bare.begin(), bare.end(), [](char c) {
        return isAlpha(c) || isDigit(c) || c == '_';
      })) {
    return std::nullopt;
  }
  cap_value_t value = 0;
  if (cap_from_name(text::lowercase(upper).c_str(), &value) != 0) return std::nullopt;
  return upper;
}

Result<TaskDefinition> loadTaskDefinition(std::string_view json_text) {
  auto definition = parseTaskDefinition(json_text);
  if (!definition) return definition;
  std::vector<std::string> problems = validateTaskDefinition(*definition);
  if (!problems.empty()) {
    return fail(ErrorCode::kInvalidArgument, "{}", json::joinProblems(problems));
  }
  return definition;
}

}  // namespace ecs::engine
