// Every value of a JSON document as a JSON Pointer ("" for the root, "/a/0/b" below it), in
// document order: what structural fuzz tests walk. Pointers, not value pointers, because
// replacing a container frees the values inside it.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <vector>

namespace ecs::testing {

inline void collectJsonPointers(const boost::json::value& value, const std::string& pointer,
                                std::vector<std::string>& out) {
  out.push_back(pointer);
  if (value.is_object()) {
    for (const auto& member : value.as_object()) {
      collectJsonPointers(member.value(), pointer + "/" + std::string(member.key()), out);
    }
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.as_array().size(); ++i) {
      collectJsonPointers(value.as_array()[i], pointer + "/" + std::to_string(i), out);
    }
  }
}

inline std::vector<std::string> jsonPointers(const boost::json::value& document) {
  std::vector<std::string> out;
  collectJsonPointers(document, "", out);
  return out;
}

}  // namespace ecs::testing
