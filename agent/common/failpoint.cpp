#include "agent/common/failpoint.h"

#ifndef ECS_FAILPOINTS

namespace ecs {
void failpoint(std::string_view) {}
}  // namespace ecs

#else

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <mutex>
#include <string>

namespace ecs {

namespace {

struct Armed {
  std::string name;
  long at = 1;  // the pass that dies
  std::atomic<long> passes{0};
};

Armed* armed() {
  static Armed* point = []() -> Armed* {
    const char* spec = std::getenv("ECS_FAILPOINT");
    if (!spec || !*spec) return nullptr;
    auto* a = new Armed;
    std::string_view text(spec);
    auto colon = text.find(':');
    a->name = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      auto count = text.substr(colon + 1);
      std::from_chars(count.data(), count.data() + count.size(), a->at);
    }
    return a;
  }();
  return point;
}

}  // namespace

void failpoint(std::string_view name) {
  auto* point = armed();
  if (!point || point->name != name) return;
  if (++point->passes != point->at) return;
  spdlog::critical("failure point {}: dying now", name);
  spdlog::default_logger()->flush();
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace ecs

#endif
