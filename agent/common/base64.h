// Standard base64 (RFC 4648 alphabet, padded): Basic authorization headers and Docker's
// `auth` fields.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ecs {

std::string encodeBase64(std::string_view in);

// Strict padded base64, as Go's base64.StdEncoding decodes it (which the real agent uses);
// line breaks are ignored as Go does. nullopt when malformed.
std::optional<std::string> decodeBase64(std::string_view in);

}  // namespace ecs
