// Small HTTP helpers the endpoint handlers share: Go-compatible path cleaning (the real agent's
// gorilla/mux redirects "//" and ".." to the clean path), percent-decoding, query parameters,
// and Go's RFC3339Nano time format.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ecs::endpoints {

// gorilla/mux's cleanPath: path.Clean, keeping a trailing slash.
std::string cleanPath(std::string_view path);
// %XX decoding; nullopt for a malformed escape.
std::optional<std::string> percentDecode(std::string_view text);
// The decoded value of `name` in a query string ("a=1&b=2"); nullopt when absent.
std::optional<std::string> queryParam(std::string_view query, std::string_view name);
// Splits a request target into path and query.
std::pair<std::string_view, std::string_view> splitTarget(std::string_view target);
// Go's time.RFC3339Nano in UTC: "2026-01-02T03:04:05.123456789Z", trailing zeros trimmed.
std::string formatTimeRfc3339Nano(std::chrono::system_clock::time_point t);

}  // namespace ecs::endpoints
