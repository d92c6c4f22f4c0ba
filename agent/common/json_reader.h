// Reading JSON at the edge into typed structs, with path-precise, all-at-once errors.
//
// A `Reader` collects problems; `Fields` reads the members of one object into struct fields.
// A member of the wrong type is reported with its path ("containers[1].portMappings[0].
// containerPort: expected an integer, got a string") and reading goes on, so one pass reports
// every problem of a document. JSON null reads as absent, as the AWS APIs treat it; unknown
// members are ignored (forward compatibility).
//
//   bool readMountPoint(json::Reader& reader, const json::Value& value, const std::string& path,
//                       MountPoint& out) {
//     return json::readObject(reader, value, path, [&](const json::Fields& f) {
//       f.read("sourceVolume", out.source_volume);
//       f.read("readOnly", out.read_only);
//     });
//   }
//   ...
//   fields.read("mountPoints", container.mount_points, readMountPoint);
//
// Strings, booleans and numbers read by themselves; a struct needs its converter, a function
// `bool(Reader&, const Value&, const std::string& path, T&)`, which also serves std::optional<T>,
// std::vector<T> and std::map<std::string, T> of it. Not thread-safe; one Reader per document.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "agent/common/result.h"

namespace ecs::json {

using Value = boost::json::value;
using Object = boost::json::object;
using Array = boost::json::array;

// Whether a parse error quotes the text at the error: not for documents that may hold secrets.
enum class Excerpt { kShow, kHide };

// Parses a document. Malformed JSON is kInvalidArgument naming the line and column (1-based,
// columns in characters) and, with Excerpt::kShow, what follows there: "malformed JSON at line 7,
// column 5: syntax error (near '\"image\": \"busybox\"')".
Result<Value> parse(std::string_view text, Excerpt excerpt = Excerpt::kShow);

// "a string", "an integer", "an object", ... for "expected X, got Y".
std::string describe(const Value& value);

// Problems joined by "; ", at most 50 of them, so a hostile document cannot make a huge message.
std::string joinProblems(const std::vector<std::string>& problems);

// "parent.key" ("key" at the top; a long key clipped as text::clip does) and "parent[index]".
std::string childPath(const std::string& parent, std::string_view key);
std::string indexPath(const std::string& parent, size_t index);

// The problems found while reading one document.
class Reader {
 public:
  void error(const std::string& path, std::string_view message);
  void typeError(const std::string& path, std::string_view expected, const Value& got);
  // A member the format knows but the reader's user cannot honour (recorded, not an error).
  void unsupported(const std::string& path) { unsupported_.push_back(path); }

  bool ok() const { return errors_.empty(); }
  const std::vector<std::string>& errors() const { return errors_; }
  const std::vector<std::string>& unsupportedFields() const { return unsupported_; }

 private:
  std::vector<std::string> errors_;
  std::vector<std::string> unsupported_;
};

// Reports every string and member name under `value` (at `path`) that holds a NUL character:
// text that ends up in C strings (paths, argv, the environment, /etc/hosts) would be cut short
// there, so a document headed for the kernel refuses it before anything acts on it. Iterative,
// so any depth is safe.
void refuseNul(Reader& reader, const Value& value, const std::string& path);

// Scalars. Integers accept whole numbers written with a fraction or an exponent ("512.0",
// "1e3"); out-of-range values are errors, never wrapped.
bool readString(Reader& reader, const Value& value, const std::string& path, std::string& out);
bool readBool(Reader& reader, const Value& value, const std::string& path, bool& out);
bool readInt(Reader& reader, const Value& value, const std::string& path, int& out);
bool readInt64(Reader& reader, const Value& value, const std::string& path, int64_t& out);
bool readDouble(Reader& reader, const Value& value, const std::string& path, double& out);

namespace detail {

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <typename T>
struct IsVector : std::false_type {};
template <typename T, typename A>
struct IsVector<std::vector<T, A>> : std::true_type {};
template <typename T>
struct IsStringMap : std::false_type {};
template <typename T, typename C, typename A>
struct IsStringMap<std::map<std::string, T, C, A>> : std::true_type {};
template <typename>
inline constexpr bool kAlwaysFalse = false;

// The scalar converters as one overload set.
struct Scalars {
  bool operator()(Reader& r, const Value& v, const std::string& p, std::string& out) const {
    return readString(r, v, p, out);
  }
  bool operator()(Reader& r, const Value& v, const std::string& p, bool& out) const {
    return readBool(r, v, p, out);
  }
  bool operator()(Reader& r, const Value& v, const std::string& p, int& out) const {
    return readInt(r, v, p, out);
  }
  bool operator()(Reader& r, const Value& v, const std::string& p, int64_t& out) const {
    return readInt64(r, v, p, out);
  }
  bool operator()(Reader& r, const Value& v, const std::string& p, double& out) const {
    return readDouble(r, v, p, out);
  }
};

}  // namespace detail

// Reads `value` into `out` with `convert` (for T itself or, through std::optional, std::vector
// and std::map<std::string, ...>, for their elements). False when anything was reported; a
// container keeps the elements that read cleanly.
template <typename T, typename Convert>
bool readValue(Reader& reader, const Value& value, const std::string& path, T& out,
               Convert convert) {
  if constexpr (std::is_invocable_r_v<bool, Convert&, Reader&, const Value&, const std::string&,
                                      T&>) {
    return convert(reader, value, path, out);
  } else if constexpr (detail::IsOptional<T>::value) {
    typename T::value_type item{};
    if (!readValue(reader, value, path, item, convert)) return false;
    out = std::move(item);
    return true;
  } else if constexpr (detail::IsVector<T>::value) {
    const Array* array = value.if_array();
    if (!array) {
      reader.typeError(path, "an array", value);
      return false;
    }
    out.clear();
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i) {
      typename T::value_type item{};
      if (readValue(reader, (*array)[i], indexPath(path, i), item, convert)) {
        out.push_back(std::move(item));
      } else {
        ok = false;
      }
    }
    return ok;
  } else if constexpr (detail::IsStringMap<T>::value) {
    const Object* object = value.if_object();
    if (!object) {
      reader.typeError(path, "an object", value);
      return false;
    }
    out.clear();
    bool ok = true;
    for (const auto& [key, item_value] : *object) {
      typename T::mapped_type item{};
      if (readValue(reader, item_value, childPath(path, key), item, convert)) {
        out[std::string(key)] = std::move(item);
      } else {
        ok = false;
      }
    }
    return ok;
  } else {
    static_assert(detail::kAlwaysFalse<T>, "no converter reads this type");
  }
}

// Scalars and containers of scalars need no converter.
template <typename T>
bool readValue(Reader& reader, const Value& value, const std::string& path, T& out) {
  return readValue(reader, value, path, out, detail::Scalars{});
}

class Fields;

// Checks that `value` is an object and hands its members to `fill(const Fields&)`. False when
// it is not an object or `fill` reported anything.
template <typename Fill>
bool readObject(Reader& reader, const Value& value, const std::string& path, Fill&& fill);

// The members of one JSON object, with the object's path for messages.
class Fields {
 public:
  Fields(Reader& reader, const Object& object, std::string path)
      : reader_(reader), object_(object), path_(std::move(path)) {}

  // The member, or nullptr when absent or null.
  const Value* find(std::string_view key) const {
    const Value* value = object_.if_contains(key);
    return value && !value->is_null() ? value : nullptr;
  }
  std::string path(std::string_view key) const { return childPath(path_, key); }
  const std::string& path() const { return path_; }
  Reader& reader() const { return reader_; }

  // Absent (or null) members leave `out` as it is.
  template <typename T>
  void read(std::string_view key, T& out) const {
    if (const Value* value = find(key)) readValue(reader_, *value, path(key), out);
  }
  template <typename T, typename Convert>
  void read(std::string_view key, T& out, Convert convert) const {
    if (const Value* value = find(key)) readValue(reader_, *value, path(key), out, convert);
  }

  // Required members the structs cannot mark as missing by themselves.
  template <typename T>
  void require(std::string_view key, T& out) const {
    require(key, out, detail::Scalars{});
  }
  template <typename T, typename Convert>
  void require(std::string_view key, T& out, Convert convert) const {
    if (const Value* value = find(key)) {
      readValue(reader_, *value, path(key), out, convert);
    } else {
      reader_.error(path(key), "required");
    }
  }

  // A nested object whose members go to `fill`, for objects that are not structs of their own
  // (`capabilities: {add, drop}`). Nothing happens when absent.
  template <typename Fill>
  void object(std::string_view key, Fill&& fill) const {
    if (const Value* value = find(key)) readObject(reader_, *value, path(key), fill);
  }

  // A member the reader's user cannot honour: recorded when set to anything but null, false,
  // [] or {}.
  void unsupported(std::string_view key) const;

 private:
  Reader& reader_;
  const Object& object_;
  std::string path_;
};

template <typename Fill>
bool readObject(Reader& reader, const Value& value, const std::string& path, Fill&& fill) {
  const Object* object = value.if_object();
  if (!object) {
    reader.typeError(path, "an object", value);
    return false;
  }
  size_t errors_before = reader.errors().size();
  fill(Fields(reader, *object, path));
  return reader.errors().size() == errors_before;
}

}  // namespace ecs::json
