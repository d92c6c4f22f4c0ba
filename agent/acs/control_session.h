// What the agent's two control-plane websocket sessions (ACS here, TCS in agent/tcs) share: the
// session URL and its SigV4-signed upgrade, which close codes count as a clean close, and the
// reconnect backoff with jitter. Pure helpers; each session keeps its own loop and timers.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "agent/acs/websocket_client.h"
#include "agent/aws/credentials.h"
#include "agent/common/result.h"

namespace ecs::acs {

// `endpoint` + "/" (when missing) + "ws?" + `query`, with ws:// and wss:// read as http:// and
// https://: the URL the service canonicalises, so the one that is signed (and then dialled).
std::string sessionUrl(std::string endpoint, std::string_view query);

// The upgrade's signature headers: a GET of `http_url` with no body, service "ecs".
Result<WebSocketHeaders> signedUpgradeHeaders(const std::string& http_url,
                                              const std::string& region,
                                              const aws::Credentials& credentials,
                                              std::chrono::system_clock::time_point now);

// A close frame with this code from the server means "reconnect at once": 1000, 1001, 1006, 1011.
bool isCleanCloseCode(std::uint16_t code);

// `base` plus a uniformly random [0, spread).
std::chrono::milliseconds jittered(std::chrono::milliseconds base, std::chrono::milliseconds spread,
                                   std::mt19937_64& random);

// Delays between failed connection attempts: initial, growing by `multiplier` up to `max`, each
// plus up to `jitter` × itself.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, double multiplier,
          double jitter)
      : initial_(initial), max_(max), multiplier_(multiplier), jitter_(jitter), next_(initial) {}

  std::chrono::milliseconds next(std::mt19937_64& random);
  void reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_, max_;
  double multiplier_, jitter_;
  std::chrono::milliseconds next_;
};

}  // namespace ecs::acs
