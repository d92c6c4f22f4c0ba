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

// `s` itself when short; else its first kMaxQuoted bytes (never splitting a UTF-8 character)
// followed by "...".
inline std::string clip(std::string_view s) {
  if (s.size() <= kMaxQuoted) return std::string(s);
  size_t end = kMaxQuoted;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end)) + "...";
}

}  // namespace ecs::text
