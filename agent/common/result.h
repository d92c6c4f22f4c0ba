// Result<T>: a value or an Error whose message a person can act on.
// Errors carry context as they bubble up ("pull 127.0.0.1:5000/app:1: fetch manifest: 401 ...");
// no exceptions cross module boundaries.
#pragma once

#include <fmt/format.h>

#include <expected>
#include <functional>
#include <string>
#include <type_traits>
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

// std::expected<T, Error> that the compiler will not let a caller drop: a discarded Result is a
// warning. A caller that means to ignore one says so with `(void)` and a comment saying why.
// Everything std::expected offers works unchanged (construction from a value or from fail(...),
// `return {}` for Result<void>, operator bool, *, ->, value(), error(), value_or()); and_then and
// transform keep the result a Result.
template <typename T>
class [[nodiscard]] Result : public std::expected<T, Error> {
  using Base = std::expected<T, Error>;

 public:
  using Base::Base;
  Result() = default;
  // A plain std::expected (what a template written for it returns) becomes a Result.
  Result(Base base) : Base(std::move(base)) {}

  // `f(value)` when there is a value, which returns a Result<U>; the error otherwise.
  template <typename F>
  auto and_then(F&& f) & {
    return andThen(*this, std::forward<F>(f));
  }
  template <typename F>
  auto and_then(F&& f) const& {
    return andThen(*this, std::forward<F>(f));
  }
  template <typename F>
  auto and_then(F&& f) && {
    return andThen(std::move(*this), std::forward<F>(f));
  }

  // Result<U> holding `f(value)` when there is a value; the error otherwise.
  template <typename F>
  auto transform(F&& f) & {
    return transformWith(*this, std::forward<F>(f));
  }
  template <typename F>
  auto transform(F&& f) const& {
    return transformWith(*this, std::forward<F>(f));
  }
  template <typename F>
  auto transform(F&& f) && {
    return transformWith(std::move(*this), std::forward<F>(f));
  }

 private:
  // The callable's result for `self`'s value (or with no argument, for Result<void>).
  template <typename Self, typename F>
  static decltype(auto) invokeOn(Self&& self, F&& f) {
    if constexpr (std::is_void_v<T>) {
      return std::invoke(std::forward<F>(f));
    } else {
      return std::invoke(std::forward<F>(f), *std::forward<Self>(self));
    }
  }

  template <typename Self, typename F>
  static auto andThen(Self&& self, F&& f) {
    using Next =
        std::remove_cvref_t<decltype(invokeOn(std::forward<Self>(self), std::forward<F>(f)))>;
    if (!self) return Next(std::unexpected(std::forward<Self>(self).error()));
    return Next(invokeOn(std::forward<Self>(self), std::forward<F>(f)));
  }

  template <typename Self, typename F>
  static auto transformWith(Self&& self, F&& f) {
    using U = std::remove_cvref_t<decltype(invokeOn(std::forward<Self>(self), std::forward<F>(f)))>;
    if (!self) return Result<U>(std::unexpected(std::forward<Self>(self).error()));
    if constexpr (std::is_void_v<U>) {
      invokeOn(std::forward<Self>(self), std::forward<F>(f));
      return Result<U>();
    } else {
      return Result<U>(invokeOn(std::forward<Self>(self), std::forward<F>(f)));
    }
  }
};

// An error value, for `return fail(...)` in functions returning Result<T>.
template <typename... Args>
std::unexpected<Error> fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return std::unexpected(Error{code, fmt::format(format, std::forward<Args>(args)...)});
}

inline std::unexpected<Error> fail(Error error) {
  return std::unexpected(std::move(error));
}

}  // namespace ecs
