// Sizes as Docker writes them ("10m", "1g", "512k"): for log file caps from the configuration and
// from task definitions' json-file options.
#pragma once

#include <cstdint>
#include <string_view>

#include "agent/common/result.h"

namespace ecs {

// A number (fractions allowed: "1.5g") with an optional unit k, m, g, t or p in either case,
// optionally followed by "i" and/or "b" ("kb", "MiB"), a space allowed before the unit. Units are
// binary multiples (k = 1024), as Docker's json-file `max-size` reads them; a bare number is
// bytes. Returns the size in bytes, truncated to a whole number; kInvalidArgument for anything
// else, and for sizes that do not fit in 63 bits.
Result<uint64_t> parseByteSize(std::string_view text);

}  // namespace ecs
