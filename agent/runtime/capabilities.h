// Linux capability names as runc expects them ("CAP_NET_ADMIN"), validated against libcap, and
// Docker's rules for turning a container's cap-add / cap-drop lists into its capability set.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::runtime {

// "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all give "CAP_NET_ADMIN"; "ALL" (any case) stays
// "ALL". kInvalidArgument `unknown capability "X"` for a name libcap does not know.
Result<std::string> normalizeCapability(std::string_view name);

// Every capability libcap and the kernel know and this process holds (Docker's "all", which is
// what the daemon holds), in bit order ("CAP_CHOWN", ...).
const std::vector<std::string>& allCapabilities();

// Docker's TweakCapabilities: privileged gets every capability; otherwise "ALL" in `add` starts
// from every capability, "ALL" in `drop` starts from none, and else `base` minus `drop`, then
// plus `add`. Names are normalised first; the result holds no duplicates. Adding a capability
// this process does not hold is kInvalidArgument (runc could not grant it).
Result<std::vector<std::string>> applyCapabilityChanges(const std::vector<std::string>& base,
                                                        const std::vector<std::string>& add,
                                                        const std::vector<std::string>& drop,
                                                        bool privileged);

}  // namespace ecs::runtime
