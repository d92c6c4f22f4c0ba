#include "agent/acs/control_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/aws/sigv4.h"

namespace ecs::acs {

using Millis = std::chrono::milliseconds;

std::string sessionUrl(std::string endpoint, std::string_view query) {
  if (endpoint.empty() || endpoint.back() != '/') endpoint += '/';
  std::string url = endpoint + "ws?" + std::string(query);
  if (url.starts_with("wss://")) return "https://" + url.substr(6);
  if (url.starts_with("ws://")) return "http://" + url.substr(5);
  return url;
}

Result<WebSocketHeaders> signedUpgradeHeaders(const std::string& http_url,
                                              const std::string& region,
                                              const aws::Credentials& credentials,
                                              std::chrono::system_clock::time_point now) {
  aws::SigV4Request request{
      .method = "GET", .url = http_url, .headers = {}, .payload_sha256 = aws::sha256Hex("")};
  auto signature = aws::signV4(request, {.service = "ecs", .region = region}, credentials, now);
  if (!signature) return fail(signature.error());
  WebSocketHeaders headers;
  for (const auto& [name, value] : signature->headers.fields()) headers.emplace_back(name, value);
  return headers;
}

boost::asio::awaitable<std::expected<DialedSession, WebSocketConnectError>> dialSession(
    boost::asio::any_io_executor executor, SessionDial dial,
    std::shared_ptr<WebSocketDialAbort> abort) {
  auto failed = [](Error error) {
    return std::unexpected(
        WebSocketConnectError{.status = 0, .body = {}, .error = std::move(error)});
  };
  auto endpoint = dial.endpoint ? dial.endpoint()
                                : Result<std::string>(fail(ErrorCode::kFailedPrecondition,
                                                           "no {} endpoint source", dial.name));
  if (!endpoint) {
    spdlog::warn("{}: discover endpoint: {}", dial.name, endpoint.error().message);
    co_return failed(endpoint.error());
  }
  auto credentials =
      dial.credentials
          ? dial.credentials()
          : Result<aws::Credentials>(fail(ErrorCode::kFailedPrecondition, "no credentials"));
  if (!credentials) {
    spdlog::warn("{}: credentials: {}", dial.name, credentials.error().message);
    co_return failed(credentials.error());
  }
  std::string http_url = sessionUrl(*endpoint, dial.query);
  auto url = parseWebSocketUrl(http_url);
  if (!url) {
    spdlog::error("{}: endpoint {:?}: {}", dial.name, *endpoint, url.error().message);
    co_return failed(url.error());
  }
  auto headers =
      signedUpgradeHeaders(http_url, dial.region, *credentials, std::chrono::system_clock::now());
  if (!headers) {
    spdlog::error("{}: sign the upgrade: {}", dial.name, headers.error().message);
    co_return failed(headers.error());
  }
  auto conn = co_await connectWebSocket(executor, *url, aws::hostHeader(http_url),
                                        std::move(*headers), dial.websocket, std::move(abort));
  if (!conn) {
    const auto& why = conn.error();
    spdlog::warn("{}: connect: {}{}{}", dial.name, why.error.message, why.body.empty() ? "" : ": ",
                 why.body.substr(0, 512));
    co_return std::unexpected(conn.error());
  }
  co_return DialedSession{std::move(*conn), std::move(http_url)};
}

bool isCleanCloseCode(std::uint16_t code) {
  return code == 1000 || code == 1001 || code == 1006 || code == 1011;
}

Millis jittered(Millis base, Millis spread, std::mt19937_64& random) {
  if (spread.count() <= 0) return base;
  std::uniform_int_distribution<std::int64_t> pick(0, spread.count() - 1);
  return base + Millis(pick(random));
}

Millis Backoff::next(std::mt19937_64& random) {
  Millis delay = next_;
  double grown = static_cast<double>(next_.count()) * multiplier_;
  next_ = std::min(max_, Millis(static_cast<std::int64_t>(grown)));
  auto spread = Millis(static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter_));
  return jittered(delay, spread, random);
}

}  // namespace ecs::acs
