#include "agent/aws/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <system_error>

#include "agent/common/text.h"

namespace ecs::aws {
namespace {

using Clock = HttpRequest::Clock;

// Large reads mean fewer callbacks (and fewer content-store messages per layer) when streaming.
constexpr long kStreamingBufferBytes = 512L * 1024L;
constexpr std::chrono::milliseconds kDeadlineSlack{5};

// curl_global_init is not thread-safe and must run before any other libcurl call; a function-local
// static is initialised exactly once however many threads race to it.
void initialiseCurl() {
  static const CURLcode initialised = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)initialised;
}

struct CurlFree {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
using CurlHandle = std::unique_ptr<CURL, CurlFree>;

struct SlistFree {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistFree>;

// State shared with libcurl's callbacks during one exchange.
struct Transfer {
  const HttpRequest& request;
  HttpResponse& response;
  std::optional<HttpError> error;  // why a callback aborted the exchange

  void stop(HttpFailure failure, Error cause) {
    error = HttpError{failure, std::move(cause), request.method, request.url};
  }

  // The deadline or the cancellation check, if either says stop.
  std::optional<HttpFailure> stopRequested() const {
    if (Clock::now() >= request.deadline) return HttpFailure::kDeadline;
    if (request.cancelled && request.cancelled()) return HttpFailure::kCancelled;
    return std::nullopt;
  }
};

Error stopCause(HttpFailure failure) {
  return Error{ErrorCode::kUnavailable,
               failure == HttpFailure::kDeadline ? "deadline passed" : "cancelled"};
}

size_t onHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::string_view line = text::trimLine(std::string_view(data, size * count));
  HttpResponse& response = transfer->response;
  if (line.starts_with("HTTP/")) {
    // A new response starts (after a 100 Continue): forget the last one.
    response.headers.clear();
    size_t space = line.find(' ');
    response.status = space == std::string_view::npos
                          ? 0
                          : std::atol(std::string(line.substr(space + 1)).c_str());
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    response.headers.add(std::string(text::trimLine(line.substr(0, colon))),
                         std::string(text::trimLine(line.substr(colon + 1))));
  }
  return size * count;
}

size_t onBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const HttpRequest& request = transfer->request;
  HttpResponse& response = transfer->response;
  std::string_view chunk(data, size * count);
  const bool success = response.status / 100 == 2;

  if (success && request.sink) {
    if (Result<void> written = request.sink(response, chunk); !written) {
      transfer->stop(HttpFailure::kSink, written.error());
      return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
    return chunk.size();
  }
  if (response.body.size() + chunk.size() > request.max_body) {
    if (success) {
      transfer->stop(HttpFailure::kTooLarge,
                     Error{ErrorCode::kFailedPrecondition,
                           fmt::format("response body larger than {} bytes", request.max_body)});
      return 0;
    }
    chunk = chunk.substr(0, request.max_body - std::min(request.max_body, response.body.size()));
  }
  response.body.append(chunk);
  return size * count;
}

int onProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<Transfer*>(user);
  if (auto failure = transfer->stopRequested()) {
    transfer->stop(*failure, stopCause(*failure));
    return 1;  // aborts the transfer (CURLE_ABORTED_BY_CALLBACK)
  }
  return 0;
}

HttpFailure classify(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
      return HttpFailure::kConnect;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      return HttpFailure::kBroken;
    case CURLE_OPERATION_TIMEDOUT:
      return HttpFailure::kTimedOut;
    default:
      return HttpFailure::kOther;
  }
}

bool sendsBody(const HttpRequest& request) {
  return !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
         request.method == "PATCH";
}

Slist headerList(const HttpRequest& request) {
  Slist list;
  auto append = [&](const std::string& line) {
    list.reset(curl_slist_append(list.release(), line.c_str()));
  };
  for (const auto& [name, value] : request.headers.fields()) {
    // "Name;" is libcurl's way of sending a header with an empty value.
    append(value.empty() ? name + ";" : name + ": " + value);
  }
  // A bare "Name:" removes a header libcurl would add by itself: no Expect: 100-continue round
  // trip before large bodies, no form Content-Type the caller did not ask for.
  if (!request.headers.contains("Expect")) append("Expect:");
  if (sendsBody(request) && !request.headers.contains("Content-Type")) append("Content-Type:");
  return list;
}

}  // namespace

void HttpHeaders::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HttpHeaders::set(std::string name, std::string value) {
  remove(name);
  add(std::move(name), std::move(value));
}

void HttpHeaders::remove(std::string_view name) {
  std::erase_if(fields_,
                [&](const Field& field) { return text::equalsIgnoreCase(field.first, name); });
}

bool HttpHeaders::contains(std::string_view name) const {
  return std::ranges::any_of(
      fields_, [&](const Field& field) { return text::equalsIgnoreCase(field.first, name); });
}

std::string HttpHeaders::get(std::string_view name) const {
  for (const auto& [key, value] : fields_) {
    if (text::equalsIgnoreCase(key, name)) return value;
  }
  return {};
}

std::vector<std::string> HttpHeaders::getAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [key, value] : fields_) {
    if (text::equalsIgnoreCase(key, name)) out.push_back(value);
  }
  return out;
}

Error HttpError::asError() const {
  return cause.wrap(fmt::format("{} {}", method, url));
}

struct HttpClient::Impl {
  HttpClientOptions options;
  std::mutex mutex;
  std::vector<CurlHandle> idle;  // guarded by mutex

  // Reusing easy handles keeps their connections (and TLS sessions) alive between requests.
  CurlHandle acquire() {
    {
      std::lock_guard lock(mutex);
      if (!idle.empty()) {
        CurlHandle handle = std::move(idle.back());
        idle.pop_back();
        return handle;
      }
    }
    return CurlHandle(curl_easy_init());
  }

  void release(CurlHandle handle) {
    curl_easy_reset(handle.get());  // options go, live connections stay
    std::lock_guard lock(mutex);
    if (idle.size() < options.max_idle_handles) idle.push_back(std::move(handle));
  }

  HttpResult<HttpResponse> perform(const HttpRequest& request);
};

HttpResult<HttpResponse> HttpClient::Impl::perform(const HttpRequest& request) {
  HttpResponse response;
  Transfer transfer{request, response, std::nullopt};
  if (auto failure = transfer.stopRequested()) {
    return std::unexpected(HttpError{*failure, stopCause(*failure), request.method, request.url});
  }
  CurlHandle handle = acquire();
  if (!handle) {
    return std::unexpected(HttpError{HttpFailure::kOther,
                                     Error{ErrorCode::kInternal, "curl_easy_init failed"},
                                     request.method, request.url});
  }
  CURL* h = handle.get();
  Slist headers = headerList(request);

  // The deadline is a total timeout too, so that libcurl's own timer ends an exchange stuck where
  // no callback runs (name resolution). A few milliseconds more, because libcurl's millisecond
  // clock may fire a hair early, and a timeout that fires at the deadline should read as such.
  std::chrono::milliseconds total = request.timeout;
  if (request.deadline != Clock::time_point::max()) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(request.deadline - Clock::now()) +
                kDeadlineSlack;
    if (total.count() <= 0 || left < total) total = left;
  }
  std::chrono::milliseconds connect = request.connect_timeout;
  if (total.count() > 0 && (connect.count() <= 0 || total < connect)) connect = total;

  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (sendsBody(request)) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
  }
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // many threads; no SIGALRM for DNS timeouts
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, options.protocols.c_str());
  if (!options.use_proxy) curl_easy_setopt(h, CURLOPT_PROXY, "");
  if (!options.user_agent.empty()) {
    curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());
  }
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  if (connect.count() > 0) {
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect.count()));
  }
  if (total.count() > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(total.count()));
  if (request.inactivity_timeout.count() > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(request.inactivity_timeout.count()));
  }
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (request.sink) curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kStreamingBufferBytes);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  if (request.cancelled || request.deadline != Clock::time_point::max()) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, onProgress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &transfer);
  }
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);

  const CURLcode code = curl_easy_perform(h);
  long os_errno = 0;
  curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
  if (char* location = nullptr;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location) {
    response.redirect_url = location;
  }
  release(std::move(handle));

  if (transfer.error) return std::unexpected(std::move(*transfer.error));
  if (code == CURLE_OK) return response;

  HttpFailure failure = classify(code);
  if (failure == HttpFailure::kTimedOut && Clock::now() >= request.deadline) {
    return std::unexpected(HttpError{HttpFailure::kDeadline, stopCause(HttpFailure::kDeadline),
                                     request.method, request.url});
  }
  std::string detail = error_buffer[0] != 0 ? error_buffer : curl_easy_strerror(code);
  // libcurl says "Couldn't connect to server"; the errno says why ("Connection refused").
  // (Only then: a reused handle keeps the errno of an earlier connect.)
  if (code == CURLE_COULDNT_CONNECT && os_errno != 0) {
    detail +=
        " (" + std::error_code(static_cast<int>(os_errno), std::generic_category()).message() + ")";
  }
  return std::unexpected(HttpError{failure, Error{ErrorCode::kUnavailable, std::move(detail)},
                                   request.method, request.url});
}

HttpClient::HttpClient(HttpClientOptions options) : impl_(std::make_unique<Impl>()) {
  initialiseCurl();
  impl_->options = std::move(options);
}

HttpClient::~HttpClient() = default;

HttpResult<HttpResponse> HttpClient::perform(const HttpRequest& request) {
  return impl_->perform(request);
}

std::string urlOrigin(const std::string& url) {
  initialiseCurl();
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), curl_url_cleanup);
  if (!parsed || curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  std::string origin;
  for (auto [part, separator] : {std::pair{CURLUPART_SCHEME, "://"}, std::pair{CURLUPART_HOST, ":"},
                                 std::pair{CURLUPART_PORT, ""}}) {
    char* value = nullptr;
    if (curl_url_get(parsed.get(), part, &value, CURLU_DEFAULT_PORT) != CURLUE_OK) return {};
    for (const char* c = value; *c != 0; ++c) origin += text::toLower(*c);
    origin += separator;
    curl_free(value);
  }
  return origin;
}

}  // namespace ecs::aws
