#include "agent/common/json_reader.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "agent/common/text.h"

namespace ecs::json {
namespace {

// Line and column (1-based, columns counted in characters) of a byte offset.
std::pair<size_t, size_t> lineAndColumn(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1;
  size_t column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++column;  // UTF-8 continuation bytes do not start a character
    }
  }
  return {line, column};
}

// What follows the error position on its line, for the message: `near '"port": 80'`.
std::string excerptAt(std::string_view text, size_t offset) {
  if (offset >= text.size()) return "at the end of the input";
  std::string_view rest = text.substr(offset);
  rest = rest.substr(0, std::min(rest.find('\n'), size_t{24}));
  std::string printable;
  for (char c : rest) {
    printable += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  }
  return fmt::format("near '{}'", printable);
}

}  // namespace

Result<Value> parse(std::string_view text, Excerpt excerpt) {
  boost::json::stream_parser parser;
  boost::system::error_code ec;
  size_t consumed = parser.write(text.data(), text.size(), ec);
  if (!ec) {
    parser.finish(ec);
    consumed = text.size();
  }
  if (ec) {
    auto [line, column] = lineAndColumn(text, consumed);
    if (excerpt == Excerpt::kHide) {
      return fail(ErrorCode::kInvalidArgument, "malformed JSON at line {}, column {}: {}", line,
                  column, ec.message());
    }
    return fail(ErrorCode::kInvalidArgument, "malformed JSON at line {}, column {}: {} ({})", line,
                column, ec.message(), excerptAt(text, consumed));
  }
  return parser.release();
}

std::string describe(const Value& value) {
  switch (value.kind()) {
    case boost::json::kind::string:
      return "a string";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return "an integer";
    case boost::json::kind::double_:
      return "a number";
    case boost::json::kind::bool_:
      return "a boolean";
    case boost::json::kind::object:
      return "an object";
    case boost::json::kind::array:
      return "an array";
    case boost::json::kind::null:
      return "null";
  }
  return "something else";
}

std::string joinProblems(const std::vector<std::string>& problems) {
  constexpr size_t kMaxShown = 50;
  std::string out;
  for (size_t i = 0; i < problems.size() && i < kMaxShown; ++i) {
    if (!out.empty()) out += "; ";
    out += problems[i];
  }
  if (problems.size() > kMaxShown) {
    out += fmt::format("; and {} more", problems.size() - kMaxShown);
  }
  return out;
}

std::string childPath(const std::string& parent, std::string_view key) {
  return parent.empty() ? text::clip(key) : fmt::format("{}.{}", parent, text::clip(key));
}

std::string indexPath(const std::string& parent, size_t index) {
  return fmt::format("{}[{}]", parent, index);
}

void Reader::error(const std::string& path, std::string_view message) {
  errors_.push_back(fmt::format("{}: {}", path, message));
}

void Reader::typeError(const std::string& path, std::string_view expected, const Value& got) {
  error(path, fmt::format("expected {}, got {}", expected, describe(got)));
}

void refuseNul(Reader& reader, const Value& value, const std::string& path) {
  auto hasNul = [](std::string_view text) { return text.find('\0') != std::string_view::npos; };
  std::vector<std::pair<const Value*, std::string>> pending{{&value, path}};
  while (!pending.empty()) {
    auto [next, at] = std::move(pending.back());
    pending.pop_back();
    if (const boost::json::string* string = next->if_string()) {
      if (hasNul(*string)) reader.error(at, "contains a NUL character");
    } else if (const Array* array = next->if_array()) {
      for (size_t i = array->size(); i-- > 0;) pending.emplace_back(&(*array)[i], indexPath(at, i));
    } else if (const Object* object = next->if_object()) {
      for (auto member = object->rbegin(); member != object->rend(); ++member) {
        std::string member_path = childPath(at, member->key());
        if (hasNul(member->key())) {
          reader.error(member_path, "the member name contains a NUL character");
        }
        pending.emplace_back(&member->value(), std::move(member_path));
      }
    }
  }
}

bool readString(Reader& reader, const Value& value, const std::string& path, std::string& out) {
  const boost::json::string* string = value.if_string();
  if (!string) {
    reader.typeError(path, "a string", value);
    return false;
  }
  out.assign(string->data(), string->size());
  return true;
}

bool readBool(Reader& reader, const Value& value, const std::string& path, bool& out) {
  if (!value.is_bool()) {
    reader.typeError(path, "a boolean", value);
    return false;
  }
  out = value.get_bool();
  return true;
}

bool readInt64(Reader& reader, const Value& value, const std::string& path, int64_t& out) {
  if (value.is_int64()) {
    out = value.get_int64();
    return true;
  }
  if (value.is_uint64()) {
    reader.error(path, fmt::format("{} is out of range", value.get_uint64()));
    return false;
  }
  if (value.is_double()) {
    double number = value.get_double();
    // A whole number written with a fraction or exponent ("512.0", "1e3") is still an integer.
    if (number >= -9.0e18 && number <= 9.0e18 &&
        number == static_cast<double>(static_cast<int64_t>(number))) {
      out = static_cast<int64_t>(number);
      return true;
    }
    reader.error(path, fmt::format("expected an integer, got {}", boost::json::serialize(value)));
    return false;
  }
  reader.typeError(path, "an integer", value);
  return false;
}

bool readInt(Reader& reader, const Value& value, const std::string& path, int& out) {
  int64_t wide = 0;
  if (!readInt64(reader, value, path, wide)) return false;
  if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
    reader.error(path, fmt::format("{} is out of range", wide));
    return false;
  }
  out = static_cast<int>(wide);
  return true;
}

bool readDouble(Reader& reader, const Value& value, const std::string& path, double& out) {
  if (value.is_double()) {
    out = value.get_double();
    return true;
  }
  if (value.is_int64()) {
    out = static_cast<double>(value.get_int64());
    return true;
  }
  if (value.is_uint64()) {
    out = static_cast<double>(value.get_uint64());
    return true;
  }
  reader.typeError(path, "a number", value);
  return false;
}

void Fields::unsupported(std::string_view key) const {
  const Value* value = find(key);
  if (!value) return;
  if (value->is_array() && value->as_array().empty()) return;
  if (value->is_object() && value->as_object().empty()) return;
  if (value->is_bool() && !value->as_bool()) return;
  reader_.unsupported(path(key));
}

}  // namespace ecs::json
