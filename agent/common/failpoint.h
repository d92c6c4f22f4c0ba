// Failure points for crash tests, in the manner of etcd's failpoints: a named place in the agent
// where a test can make the process die as if killed with -9, to check that a restart recovers
// from that exact moment.
//
// Armed only when the build sets ECS_FAILPOINTS (the test builds do; a packaged agent should be
// built with -DECS_FAILPOINTS=OFF, where failpoint() returns at once and reads nothing).
// The environment variable ECS_FAILPOINT names the point to die at ("payload-stored"), or the
// n-th time it is passed ("payload-stored:2"). Read once, at the first point passed.
#pragma once

#include <string_view>

namespace ecs {

void failpoint(std::string_view name);

}  // namespace ecs
