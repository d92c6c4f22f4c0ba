// Text helpers for wire formats: ASCII-only (locale-independent) character tests and case
// mapping, and `clip` for putting untrusted text into messages.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace ecs::text {

inline bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
inline bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline char toLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
inline char toUpper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

inline std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), toLower);
  return out;
}

// %XX escapes decoded, a '%' without two hex digits after it kept as it is (grpc-message, proxy
// userinfo); with `plus_is_space`, '+' is a space, as a server reads a query component.
inline std::string percentDecode(std::string_view text, bool plus_is_space = false) {
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (plus_is_space && text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 &&
               hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

inline std::string uppercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), toUpper);
  return out;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return toLower(x) == toLower(y);
         });
}

// Without leading and trailing spaces and tabs.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Without leading spaces and tabs and trailing spaces, tabs, CR and LF: a header line as read.
inline std::string_view trimLine(std::string_view s) {
  s = trim(s);
  while (!s.empty() &&
         (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The longest value a message quotes: a hostile document must not make huge error messages.
inline constexpr size_t kMaxQuoted = 200;

// `s` as it may appear in a message: control characters written as escapes (\n, \0, \x1b, ...) so a
// quoted value cannot break a log line or a reason apart, and at most kMaxQuoted characters of that
// (never splitting a UTF-8 character) followed by "..." when cut.
inline std::string clip(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    char escape[5] = {'\\', 0, 0, 0, 0};
    std::string_view piece(&s[i], 1);
    if (c == '\n' || c == '\r' || c == '\t' || c == '\0') {
      escape[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : '0';
      piece = std::string_view(escape, 2);
    } else if (c < 0x20 || c == 0x7f) {
      escape[1] = 'x';
      escape[2] = kHex[c >> 4];
      escape[3] = kHex[c & 0xf];
      piece = std::string_view(escape, 4);
    }
    if (out.size() + piece.size() > kMaxQuoted) break;
    out += piece;
  }
  if (i == s.size()) return out;
  // Bytes from 0x80 up are copied one for one, so a cut character is the output's tail.
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) {
    --i;
    out.pop_back();
  }
  return out + "...";
}

}  // namespace ecs::text
