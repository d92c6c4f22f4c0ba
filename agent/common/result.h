// Result<T>: a value or an Error whose message a person can act on.
// Errors carry context as they bubble up ("pull 127.0.0.1:5000/app:1: fetch manifest: 401 ...");
// no exceptions cross module boundaries.
#pragma once

#include <fmt/format.h>

#include <expected>
#include <string>
#include <utility>

namespace ecs {

// Broad kinds of failure, so callers can branch without parsing messages.
enum class ErrorCode {
  kUnknown,
  kInvalidArgument,  // bad input from a user or a task definition
  kNotFound,         // image, manifest, container, blob ... does not exist
  kUnauthorized,     // registry refused our credentials (or we had none)
  kUnavailable,      // peer unreachable, connection dropped, timed out
  kDataLoss,         // digest mismatch, truncated content
  kAlreadyExists,
  kFailedPrecondition,
  kInternal,
};

struct Error {
  ErrorCode code = ErrorCode::kUnknown;
  std::string message;

  // Returns a copy whose message is prefixed with `context: `.
  Error wrap(std::string_view context) const {
    return Error{code, fmt::format("{}: {}", context, message)};
  }
};

template <typename T>
using Result = std::expected<T, Error>;

// An error value, for `return fail(...)` in functions returning Result<T>.
template <typename... Args>
std::unexpected<Error> fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return std::unexpected(Error{code, fmt::format(format, std::forward<Args>(args)...)});
}

inline std::unexpected<Error> fail(Error error) {
  return std::unexpected(std::move(error));
}

}  // namespace ecs
