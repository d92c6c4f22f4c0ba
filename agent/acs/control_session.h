// What the agent's two control-plane websocket sessions (ACS here, TCS in agent/tcs) share: the
// session URL and its SigV4-signed upgrade, one dial from endpoint lookup to open connection,
// which close codes count as a clean close, and the reconnect backoff with jitter. Each session
// runs on SessionLoop (session_loop.h), the connection loop they share.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
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

// One connection attempt of a session, everything asked anew each time.
struct SessionDial {
  std::string name;  // "ACS", "TCS": what log lines name
  std::function<Result<std::string>()> endpoint;
  std::function<Result<aws::Credentials>()> credentials;
  std::string query;   // the session's query, sorted and encoded as signed
  std::string region;  // signing region
  WebSocketOptions websocket;
};

struct DialedSession {
  std::shared_ptr<WebSocketConnection> conn;
  std::string http_url;  // the URL as signed (http/https form)
};

// Asks for the endpoint and the credentials, signs the upgrade and dials; every failure is logged
// under dial.name and returned (status and body set when the server answered the upgrade).
// `abort` lets a stop give up the attempt.
boost::asio::awaitable<std::expected<DialedSession, WebSocketConnectError>> dialSession(
    boost::asio::any_io_executor executor, SessionDial dial,
    std::shared_ptr<WebSocketDialAbort> abort);

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
