#include "agent/common/byte_size.h"

#include <cmath>
#include <string>

#include "agent/common/text.h"

namespace ecs {

Result<uint64_t> parseByteSize(std::string_view text) {
  const auto invalid = [&] {
    return fail(ErrorCode::kInvalidArgument,
                "\"{}\" is not a size (a number with an optional unit k, m or g, such as 10m)",
                text.substr(0, 40));
  };
  std::string_view rest = text;
  size_t digits = 0;
  while (digits < rest.size() && text::isDigit(rest[digits])) ++digits;
  if (digits == 0) return invalid();
  size_t end = digits;
  if (end < rest.size() && rest[end] == '.') {
    size_t fraction = end + 1;
    while (fraction < rest.size() && text::isDigit(rest[fraction])) ++fraction;
    if (fraction == end + 1) return invalid();
    end = fraction;
  }
  // At most 30 characters of number: anything longer is out of range anyway.
  if (end > 30) return invalid();
  const double number = std::stod(std::string(rest.substr(0, end)));
  rest.remove_prefix(end);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  double scale = 1;
  if (!rest.empty()) {
    static constexpr std::string_view kUnits = "kmgtp";
    const auto unit = kUnits.find(text::toLower(rest.front()));
    if (unit != std::string_view::npos) {
      scale = std::pow(1024.0, static_cast<double>(unit + 1));
      rest.remove_prefix(1);
    }
  }
  if (!rest.empty() && text::toLower(rest.front()) == 'i') rest.remove_prefix(1);
  if (!rest.empty() && text::toLower(rest.front()) == 'b') rest.remove_prefix(1);
  if (!rest.empty()) return invalid();
  const double bytes = number * scale;
  if (!(bytes < 9.2e18)) return invalid();
  return static_cast<uint64_t>(bytes);
}

}  // namespace ecs
