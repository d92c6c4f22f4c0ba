#include "agent/common/base64.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace ecs {
namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::optional<std::string> decodeBase64(std::string_view in) {
  std::string clean;
  std::copy_if(in.begin(), in.end(), std::back_inserter(clean),
               [](char c) { return c != '\r' && c != '\n'; });
  if (clean.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < clean.size(); i += 4) {
    uint32_t group = 0;
    int padding = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = clean[i + j];
      if (c == '=') {
        // Padding only in the last two places of the last group.
        if (i + 4 != clean.size() || j < 2) return std::nullopt;
        ++padding;
        group <<= 6;
        continue;
      }
      if (padding > 0) return std::nullopt;  // data after '='
      size_t value = kBase64Alphabet.find(c);
      if (value == std::string_view::npos) return std::nullopt;
      group = (group << 6) | static_cast<uint32_t>(value);
    }
    out += static_cast<char>((group >> 16) & 0xff);
    if (padding < 2) out += static_cast<char>((group >> 8) & 0xff);
    if (padding < 1) out += static_cast<char>(group & 0xff);
  }
  return out;
}

std::string encodeBase64(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t group = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) group |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) group |= static_cast<uint8_t>(in[i + 2]);
    out += kBase64Alphabet[(group >> 18) & 0x3f];
    out += kBase64Alphabet[(group >> 12) & 0x3f];
    out += i + 1 < in.size() ? kBase64Alphabet[(group >> 6) & 0x3f] : '=';
    out += i + 2 < in.size() ? kBase64Alphabet[group & 0x3f] : '=';
  }
  return out;
}

}  // namespace ecs
