#include "agent/runtime/grpc_channel.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/message_lite.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>

#include "agent/common/text.h"

namespace ecs::runtime::internal {

// --- wire format ---------------------------------------------------------------------------------

std::string encodeGrpcTimeout(std::chrono::nanoseconds timeout) {
  struct Unit {
    int64_t nanos;
    char name;
  };
  static constexpr Unit kUnits[] = {{1, 'n'},
                                    {1'000, 'u'},
                                    {1'000'000, 'm'},
                                    {1'000'000'000, 'S'},
                                    {60'000'000'000, 'M'},
                                    {3'600'000'000'000, 'H'}};
  constexpr int64_t kMaxValue = 99'999'999;  // the header allows 8 digits
  const int64_t nanos = std::max<int64_t>(timeout.count(), 1);
  for (const auto& unit : kUnits) {
    const int64_t value = nanos / unit.nanos + (nanos % unit.nanos != 0);  // up: never shorter
    if (value <= kMaxValue) return fmt::format("{}{}", value, unit.name);
  }
  return fmt::format("{}H", kMaxValue);
}

GrpcCode parseGrpcStatus(std::string_view value) {
  int code = -1;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), code);
  if (ec != std::errc() || end != value.data() + value.size() || code < 0 || code > 16) {
    return GrpcCode::kUnknown;
  }
  return static_cast<GrpcCode>(code);
}

GrpcStatus statusFromHttp(int http_status) {
  GrpcCode code = GrpcCode::kUnknown;
  switch (http_status) {
    case 400:
      code = GrpcCode::kInternal;
      break;
    case 401:
      code = GrpcCode::kUnauthenticated;
      break;
    case 403:
      code = GrpcCode::kPermissionDenied;
      break;
    case 404:
      code = GrpcCode::kUnimplemented;
      break;
    case 429:
    case 502:
    case 503:
    case 504:
      code = GrpcCode::kUnavailable;
      break;
    default:
      break;
  }
  return GrpcStatus{code, fmt::format("HTTP status {} without a grpc-status", http_status)};
}

GrpcStatus statusFromRstStream(uint32_t error_code) {
  GrpcCode code = GrpcCode::kInternal;
  switch (error_code) {
    case NGHTTP2_REFUSED_STREAM:
      code = GrpcCode::kUnavailable;
      break;
    case NGHTTP2_CANCEL:
      code = GrpcCode::kCancelled;
      break;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      code = GrpcCode::kResourceExhausted;
      break;
    case NGHTTP2_INADEQUATE_SECURITY:
      code = GrpcCode::kPermissionDenied;
      break;
    default:
      break;
  }
  return GrpcStatus{code, fmt::format("stream reset by the server (HTTP/2 error {})",
                                      nghttp2_http2_strerror(error_code))};
}

std::string_view grpcCodeName(GrpcCode code) {
  switch (code) {
    case GrpcCode::kOk:
      return "ok";
    case GrpcCode::kCancelled:
      return "cancelled";
    case GrpcCode::kUnknown:
      return "unknown";
    case GrpcCode::kInvalidArgument:
      return "invalid argument";
    case GrpcCode::kDeadlineExceeded:
      return "deadline exceeded";
    case GrpcCode::kNotFound:
      return "not found";
    case GrpcCode::kAlreadyExists:
      return "already exists";
    case GrpcCode::kPermissionDenied:
      return "permission denied";
    case GrpcCode::kResourceExhausted:
      return "resource exhausted";
    case GrpcCode::kFailedPrecondition:
      return "failed precondition";
    case GrpcCode::kAborted:
      return "aborted";
    case GrpcCode::kOutOfRange:
      return "out of range";
    case GrpcCode::kUnimplemented:
      return "unimplemented";
    case GrpcCode::kInternal:
      return "internal";
    case GrpcCode::kUnavailable:
      return "unavailable";
    case GrpcCode::kDataLoss:
      return "data loss";
    case GrpcCode::kUnauthenticated:
      return "unauthenticated";
  }
  return "unrecognised status";
}

namespace {

void putPrefix(char* out, size_t size) {
  out[0] = 0;  // not compressed
  out[1] = static_cast<char>((size >> 24) & 0xff);
  out[2] = static_cast<char>((size >> 16) & 0xff);
  out[3] = static_cast<char>((size >> 8) & 0xff);
  out[4] = static_cast<char>(size & 0xff);
}

}  // namespace

std::string frameMessage(std::string_view body) {
  std::string out(5 + body.size(), '\0');
  putPrefix(out.data(), body.size());
  std::memcpy(out.data() + 5, body.data(), body.size());
  return out;
}

GrpcStatus MessageDecoder::feed(std::string_view data, std::vector<std::string>& out) {
  while (!data.empty()) {
    if (!body_) {
      const size_t take = std::min(sizeof header_ - header_fill_, data.size());
      std::memcpy(header_ + header_fill_, data.data(), take);
      header_fill_ += take;
      data.remove_prefix(take);
      if (header_fill_ < sizeof header_) break;
      if (header_[0] != 0) {
        return GrpcStatus{GrpcCode::kInternal,
                          "compressed message received, but no compression was negotiated"};
      }
      body_size_ = (size_t{header_[1]} << 24) | (size_t{header_[2]} << 16) |
                   (size_t{header_[3]} << 8) | size_t{header_[4]};
      if (body_size_ > max_message_bytes_) {
        return GrpcStatus{GrpcCode::kResourceExhausted,
                          fmt::format("received message of {} bytes, larger than the limit of {}",
                                      body_size_, max_message_bytes_)};
      }
      header_fill_ = 0;
      body_.emplace();
      body_->reserve(body_size_);
    }
    const size_t take = std::min(body_size_ - body_->size(), data.size());
    body_->append(data.substr(0, take));
    data.remove_prefix(take);
    if (body_->size() == body_size_) {
      out.push_back(std::move(*body_));
      body_.reset();
    }
  }
  return {};
}

// --- calls -------------------------------------------------------------------------------------

struct StreamState {
  GrpcChannel::Session* session = nullptr;  // null before the stream starts and after it ends
  int32_t id = -1;
  std::condition_variable cv;  // waited on with the channel's mutex
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::optional<GrpcStatus> outcome;  // set once the call has ended

  // Request bytes (framed messages) not yet taken by nghttp2.
  std::deque<std::string> out;
  size_t out_offset = 0;  // into out.front()
  size_t out_bytes = 0;
  bool writes_done = false;
  bool deferred = false;  // the data source ran dry: nghttp2 waits for resume_data

  MessageDecoder decoder;
  std::deque<std::string> messages;  // complete, not yet read
  size_t unconsumed = 0;             // received bytes not yet returned to flow control
  int http_status = 0;
  std::optional<GrpcCode> grpc_status;
  std::string grpc_message;
};

struct GrpcChannel::Session {
  GrpcChannel* channel = nullptr;
  int fd = -1;
  nghttp2_session* ng = nullptr;
  std::map<int32_t, std::shared_ptr<StreamState>> streams;
  bool failed = false;    // unusable; the I/O thread closes it
  bool draining = false;  // GOAWAY received: no new streams

  ~Session() {
    if (ng != nullptr) nghttp2_session_del(ng);
    if (fd >= 0) ::close(fd);
  }
};

void CallContext::addMetadata(std::string name, std::string value) {
  metadata_.emplace_back(std::move(name), std::move(value));
}

void CallContext::setTimeout(std::chrono::milliseconds timeout) {
  deadline_ = std::chrono::steady_clock::now() + timeout;
}

void CallContext::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
  if (call_ != nullptr) call_->cancel();
}

GrpcCall::GrpcCall(GrpcChannel& channel, CallContext& context, std::shared_ptr<StreamState> stream)
    : channel_(channel), context_(context), stream_(std::move(stream)) {}

GrpcCall::~GrpcCall() {
  {
    std::lock_guard lock(context_.mutex_);
    context_.call_ = nullptr;
  }
  std::lock_guard lock(channel_.mutex_);
  auto& s = *stream_;
  if (s.outcome) return;
  GrpcChannel::Session* session = s.session;
  channel_.endStreamLocked(s, GrpcStatus{GrpcCode::kCancelled, "call abandoned"}, true);
  if (session != nullptr) channel_.flushLocked(*session);
}

void GrpcCall::cancel() {
  std::lock_guard lock(channel_.mutex_);
  GrpcChannel::Session* session = stream_->session;
  channel_.endStreamLocked(*stream_, GrpcStatus{GrpcCode::kCancelled, "call cancelled"}, true);
  if (session != nullptr) channel_.flushLocked(*session);
}

namespace {

// Waits on `stream` until `done()` or its deadline; false if the deadline came first.
template <typename Pred>
bool waitStream(std::unique_lock<std::mutex>& lock, StreamState& stream, Pred done) {
  if (!stream.deadline) {
    stream.cv.wait(lock, done);
    return true;
  }
  return stream.cv.wait_until(lock, *stream.deadline, done);
}

}  // namespace

bool GrpcCall::write(const google::protobuf::MessageLite& message, bool last) {
  const size_t size = message.ByteSizeLong();
  std::string framed;
  std::optional<GrpcStatus> bad;
  if (size > kMaxMessageBytes) {
    bad = GrpcStatus{GrpcCode::kResourceExhausted,
                     fmt::format("request message of {} bytes, larger than the limit of {}", size,
                                 kMaxMessageBytes)};
  } else {
    framed.resize(5 + size);
    putPrefix(framed.data(), size);
    if (!message.SerializeToArray(framed.data() + 5, static_cast<int>(size))) {
      bad = GrpcStatus{GrpcCode::kInternal, "cannot serialize the request message"};
    }
  }
  std::unique_lock lock(channel_.mutex_);
  auto& s = *stream_;
  GrpcChannel::Session* session = s.session;
  if (bad) {
    channel_.endStreamLocked(s, *bad, true);
  } else if (!waitStream(lock, s, [&] { return s.outcome || s.out_bytes <= kSendLowWaterBytes; })) {
    channel_.endStreamLocked(s, GrpcStatus{GrpcCode::kDeadlineExceeded, "deadline exceeded"}, true);
  }
  session = s.session;  // may have ended while waiting
  if (s.outcome || s.writes_done) {
    if (session != nullptr) channel_.flushLocked(*session);
    return false;
  }
  s.out_bytes += framed.size();
  s.out.push_back(std::move(framed));
  s.writes_done = last;
  if (s.deferred && session != nullptr) {
    s.deferred = false;
    nghttp2_session_resume_data(session->ng, s.id);
  }
  if (session != nullptr) channel_.flushLocked(*session);
  return true;
}

void GrpcCall::writesDone() {
  std::lock_guard lock(channel_.mutex_);
  auto& s = *stream_;
  if (s.outcome || s.writes_done) return;
  s.writes_done = true;
  if (s.session == nullptr) return;
  GrpcChannel::Session& session = *s.session;
  if (s.deferred) {
    s.deferred = false;
    nghttp2_session_resume_data(session.ng, s.id);
  }
  channel_.flushLocked(session);
}

bool GrpcCall::read(google::protobuf::MessageLite* message) {
  std::string body;
  {
    std::unique_lock lock(channel_.mutex_);
    auto& s = *stream_;
    if (!waitStream(lock, s, [&] { return s.outcome || !s.messages.empty(); })) {
      GrpcChannel::Session* session = s.session;
      channel_.endStreamLocked(s, GrpcStatus{GrpcCode::kDeadlineExceeded, "deadline exceeded"},
                               true);
      if (session != nullptr) channel_.flushLocked(*session);
      return false;
    }
    if (s.outcome && !s.outcome->ok()) return false;
    if (s.messages.empty()) return false;  // the end
    body = std::move(s.messages.front());
    s.messages.pop_front();
    if (s.messages.empty() && s.unconsumed > 0 && s.session != nullptr) {
      GrpcChannel::Session& session = *s.session;
      channel_.consumeLocked(s);
      channel_.flushLocked(session);
    }
  }
  if (message->ParseFromString(body)) return true;
  std::lock_guard lock(channel_.mutex_);
  GrpcChannel::Session* session = stream_->session;
  channel_.endStreamLocked(
      *stream_, GrpcStatus{GrpcCode::kInternal, "cannot parse the response message"}, true);
  if (session != nullptr) channel_.flushLocked(*session);
  return false;
}

GrpcStatus GrpcCall::finish() {
  std::unique_lock lock(channel_.mutex_);
  auto& s = *stream_;
  auto drop_unread = [&] {
    // Keep the stream flowing: unread messages are dropped and their bytes returned.
    s.messages.clear();
    if (s.unconsumed > 0 && s.session != nullptr) {
      GrpcChannel::Session& session = *s.session;
      channel_.consumeLocked(s);
      channel_.flushLocked(session);
    }
    return s.outcome.has_value();
  };
  if (!waitStream(lock, s, drop_unread)) {
    GrpcChannel::Session* session = s.session;
    channel_.endStreamLocked(s, GrpcStatus{GrpcCode::kDeadlineExceeded, "deadline exceeded"}, true);
    if (session != nullptr) channel_.flushLocked(*session);
  }
  return *s.outcome;
}

// --- nghttp2 callbacks ---------------------------------------------------------------------------

struct NgCallbacks {
  static GrpcChannel::Session& session(void* user_data) {
    return *static_cast<GrpcChannel::Session*>(user_data);
  }
  static StreamState* stream(nghttp2_session* ng, int32_t id) {
    return static_cast<StreamState*>(nghttp2_session_get_stream_user_data(ng, id));
  }

  static ssize_t send(nghttp2_session*, const uint8_t* data, size_t length, int, void* user_data) {
    while (true) {
      const ssize_t n = ::send(session(user_data).fd, data, length, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }

  static ssize_t recv(nghttp2_session*, uint8_t* buf, size_t length, int, void* user_data) {
    while (true) {
      const ssize_t n = ::recv(session(user_data).fd, buf, length, 0);
      if (n > 0) return n;
      if (n == 0) return NGHTTP2_ERR_EOF;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }

  static int onHeader(nghttp2_session* ng, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    StreamState* s = stream(ng, frame->hd.stream_id);
    if (s == nullptr) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      std::from_chars(v.data(), v.data() + v.size(), status);
      s->http_status = status;
    } else if (n == "grpc-status") {
      s->grpc_status = parseGrpcStatus(v);
    } else if (n == "grpc-message") {
      // grpc-message is percent-encoded; malformed escapes are kept as they are.
      s->grpc_message = text::percentDecode(v.substr(0, kMaxStatusMessageBytes));
    }
    return 0;
  }

  // The call's status once the server has ended its side (or reset the stream).
  static GrpcStatus responseStatus(const StreamState& s, uint32_t error_code) {
    GrpcStatus status;
    if (s.grpc_status) {
      status = GrpcStatus{*s.grpc_status, s.grpc_message};
    } else if (error_code != NGHTTP2_NO_ERROR) {
      status = statusFromRstStream(error_code);
    } else if (s.http_status != 200) {
      status = statusFromHttp(s.http_status);
    } else {
      status = GrpcStatus{GrpcCode::kInternal, "the response ended without a grpc-status"};
    }
    if (status.ok() && s.decoder.midMessage()) {
      status = GrpcStatus{GrpcCode::kInternal, "the response ended inside a message"};
    }
    return status;
  }

  static int onFrameRecv(nghttp2_session* ng, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      auto& sess = session(user_data);
      sess.draining = true;  // streams above last_stream_id are closed with REFUSED_STREAM
      if (sess.channel->current_ == &sess) sess.channel->current_ = nullptr;
      return 0;
    }
    const bool ends_stream =
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (!ends_stream) return 0;
    StreamState* s = stream(ng, frame->hd.stream_id);
    if (s == nullptr || s->outcome) return 0;
    // The server has answered: the call is over even if our side is still open (a Content.Write
    // refused half-way); end that side too rather than send what nobody reads.
    s->outcome = responseStatus(*s, NGHTTP2_NO_ERROR);
    s->out.clear();
    s->out_bytes = 0;
    if (nghttp2_session_get_stream_local_close(ng, frame->hd.stream_id) == 0) {
      nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    s->cv.notify_all();
    return 0;
  }

  static int onDataChunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len,
                         void* user_data) {
    StreamState* s = stream(ng, id);
    if (s == nullptr || s->outcome) {
      nghttp2_session_consume(ng, id, len);
      return 0;
    }
    s->unconsumed += len;
    std::vector<std::string> complete;
    const auto status =
        s->decoder.feed(std::string_view(reinterpret_cast<const char*>(data), len), complete);
    for (auto& m : complete) s->messages.push_back(std::move(m));
    if (!status.ok()) {
      session(user_data).channel->endStreamLocked(*s, status, true);
      return 0;
    }
    // Bytes of a message still incomplete are needed to complete it: return them at once.
    // Complete messages hold their bytes until read.
    if (s->messages.empty()) session(user_data).channel->consumeLocked(*s);
    if (!complete.empty()) s->cv.notify_all();
    return 0;
  }

  static int onStreamClose(nghttp2_session* ng, int32_t id, uint32_t error_code, void* user_data) {
    auto& sess = session(user_data);
    auto found = sess.streams.find(id);
    if (found == sess.streams.end()) return 0;
    const std::shared_ptr<StreamState> keep = found->second;
    StreamState& s = *keep;
    if (!s.outcome) s.outcome = responseStatus(s, error_code);
    if (s.unconsumed > 0) nghttp2_session_consume_connection(ng, s.unconsumed);
    s.unconsumed = 0;
    s.out.clear();
    s.out_bytes = 0;
    s.session = nullptr;
    s.cv.notify_all();
    sess.streams.erase(found);
    return 0;
  }

  static ssize_t readRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                             uint32_t* data_flags, nghttp2_data_source* source, void*) {
    auto& s = *static_cast<StreamState*>(source->ptr);
    size_t copied = 0;
    while (copied < length && !s.out.empty()) {
      const std::string& front = s.out.front();
      const size_t n = std::min(length - copied, front.size() - s.out_offset);
      std::memcpy(buf + copied, front.data() + s.out_offset, n);
      copied += n;
      s.out_offset += n;
      if (s.out_offset == front.size()) {
        s.out.pop_front();
        s.out_offset = 0;
      }
    }
    const bool was_above = s.out_bytes > kSendLowWaterBytes;
    s.out_bytes -= copied;
    if (was_above && s.out_bytes <= kSendLowWaterBytes) s.cv.notify_all();
    if (s.out.empty() && s.writes_done) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (copied == 0) {
      s.deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(copied);
  }
};

// --- the channel ---------------------------------------------------------------------------------

namespace {

std::string socketPath(std::string address) {
  if (address.starts_with("unix://")) return address.substr(7);
  if (address.starts_with("unix:")) return address.substr(5);
  return address;
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

GrpcChannel::GrpcChannel(std::string address) : socket_path_(socketPath(std::move(address))) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error(fmt::format("eventfd: {}", std::strerror(errno)));
  io_thread_ = std::thread([this] { ioLoop(); });
}

GrpcChannel::~GrpcChannel() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wakeIoThread();
  io_thread_.join();
  ::close(wake_fd_);
}

void GrpcChannel::wakeIoThread() {
  const uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

GrpcChannel::Session* GrpcChannel::currentSessionLocked(GrpcStatus& error) {
  if (current_ != nullptr && !current_->failed && !current_->draining) return current_;
  current_ = nullptr;
  auto unavailable = [&](std::string_view why) {
    error = GrpcStatus{GrpcCode::kUnavailable,
                       fmt::format("connect to containerd at {}: {}", socket_path_, why)};
    return nullptr;
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.empty() || socket_path_.size() >= sizeof addr.sun_path) {
    return unavailable("not a usable socket path");
  }
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  auto session = std::make_unique<Session>();
  session->channel = this;
  session->fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (session->fd < 0) return unavailable(std::strerror(errno));
  int rc = 0;
  do {
    rc = ::connect(session->fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // A unix socket connects at once or not at all; EAGAIN is a full accept backlog.
    return unavailable(errno == EAGAIN ? "its accept queue is full" : std::strerror(errno));
  }

  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_option* option = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    return unavailable("out of memory");
  }
  nghttp2_session_callbacks_set_send_callback(callbacks, NgCallbacks::send);
  nghttp2_session_callbacks_set_recv_callback(callbacks, NgCallbacks::recv);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, NgCallbacks::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, NgCallbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, NgCallbacks::onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, NgCallbacks::onStreamClose);
  nghttp2_option_set_no_auto_window_update(option, 1);
  rc = nghttp2_session_client_new2(&session->ng, callbacks, session.get(), option);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_option_del(option);
  if (rc != 0) return unavailable(nghttp2_strerror(rc));

  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindowBytes)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 << 10},
  };
  rc = nghttp2_submit_settings(session->ng, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  if (rc == 0) {
    rc = nghttp2_session_set_local_window_size(session->ng, NGHTTP2_FLAG_NONE, 0,
                                               kConnectionWindowBytes);
  }
  if (rc != 0) return unavailable(nghttp2_strerror(rc));
  current_ = session.get();
  sessions_.push_back(std::move(session));
  wakeIoThread();  // to poll the new socket
  return current_;
}

void GrpcChannel::flushLocked(Session& session) {
  if (session.failed) return;
  const int rc = nghttp2_session_send(session.ng);
  if (rc != 0) {
    failSessionLocked(
        session, GrpcStatus{GrpcCode::kUnavailable, fmt::format("connection to containerd lost: {}",
                                                                nghttp2_strerror(rc))});
    return;
  }
  // Left over (socket full, or blocked by flow control): the I/O thread writes when it can.
  if (nghttp2_session_want_write(session.ng) && std::this_thread::get_id() != io_thread_.get_id()) {
    wakeIoThread();
  }
}

void GrpcChannel::failSessionLocked(Session& session, const GrpcStatus& status) {
  if (session.failed) return;
  session.failed = true;
  if (current_ == &session) current_ = nullptr;
  for (auto& [id, stream] : session.streams) {
    if (!stream->outcome) stream->outcome = status;
    stream->session = nullptr;
    stream->messages.clear();
    stream->cv.notify_all();
  }
  // The map keeps the states alive until nghttp2's session, which points at them, is deleted.
  wakeIoThread();
}

void GrpcChannel::endStreamLocked(StreamState& stream, GrpcStatus status, bool reset) {
  if (stream.outcome) return;
  stream.outcome = std::move(status);
  stream.messages.clear();
  stream.out.clear();
  stream.out_bytes = 0;
  if (stream.session != nullptr && !stream.session->failed) {
    consumeLocked(stream);
    if (reset)
      nghttp2_submit_rst_stream(stream.session->ng, NGHTTP2_FLAG_NONE, stream.id, NGHTTP2_CANCEL);
  }
  stream.cv.notify_all();
}

void GrpcChannel::consumeLocked(StreamState& stream) {
  if (stream.unconsumed == 0 || stream.session == nullptr || stream.session->failed) return;
  nghttp2_session_consume(stream.session->ng, stream.id, stream.unconsumed);
  stream.unconsumed = 0;
}

std::unique_ptr<GrpcCall> GrpcChannel::start(CallContext& context, std::string_view path) {
  auto state = std::make_shared<StreamState>();
  state->deadline = context.deadline_;
  auto call = std::unique_ptr<GrpcCall>(new GrpcCall(*this, context, state));
  {
    std::lock_guard lock(context.mutex_);
    if (context.cancelled_) {
      state->outcome = GrpcStatus{GrpcCode::kCancelled, "call cancelled"};
      return call;
    }
    context.call_ = call.get();
  }

  std::string timeout;
  if (state->deadline) {
    const auto left = *state->deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      std::lock_guard lock(mutex_);
      state->outcome = GrpcStatus{GrpcCode::kDeadlineExceeded, "deadline exceeded before the call"};
      return call;
    }
    timeout = encodeGrpcTimeout(left);
  }
  std::vector<nghttp2_nv> headers = {
      header(":method", "POST"),
      header(":scheme", "http"),
      header(":path", path),
      header(":authority", "localhost"),
      header("content-type", "application/grpc"),
      header("te", "trailers"),
      header("user-agent", "ecs-node-agent"),
  };
  if (!timeout.empty()) headers.push_back(header("grpc-timeout", timeout));
  for (const auto& [name, value] : context.metadata_) headers.push_back(header(name, value));

  std::lock_guard lock(mutex_);
  nghttp2_data_provider provider{};
  provider.source.ptr = state.get();
  provider.read_callback = NgCallbacks::readRequest;
  for (int attempt = 0; attempt < 2; ++attempt) {
    GrpcStatus error;
    Session* session = currentSessionLocked(error);
    if (session == nullptr) {
      state->outcome = std::move(error);
      return call;
    }
    const int32_t id = nghttp2_submit_request(session->ng, nullptr, headers.data(), headers.size(),
                                              &provider, state.get());
    if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
      session->draining = true;  // stream ids used up: the next attempt dials afresh
      current_ = nullptr;
      continue;
    }
    if (id < 0) {
      state->outcome = GrpcStatus{GrpcCode::kInternal,
                                  fmt::format("start call {}: {}", path, nghttp2_strerror(id))};
      return call;
    }
    state->session = session;
    state->id = id;
    session->streams.emplace(id, state);
    return call;  // the first write sends the headers along with the data
  }
  state->outcome = GrpcStatus{GrpcCode::kUnavailable, "no connection could take a new stream"};
  return call;
}

GrpcStatus GrpcChannel::call(CallContext& context, std::string_view path,
                             const google::protobuf::MessageLite& request,
                             google::protobuf::MessageLite* response) {
  auto call = start(context, path);
  if (!call->write(request, true)) return call->finish();
  if (!call->read(response)) {
    auto status = call->finish();
    if (status.ok()) status = GrpcStatus{GrpcCode::kInternal, "no response message"};
    return status;
  }
  return call->finish();
}

void GrpcChannel::ioLoop() {
  std::vector<pollfd> fds;
  std::vector<Session*> polled;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    for (auto& s : sessions_) {
      if (!s->failed && !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng)) {
        failSessionLocked(*s,
                          GrpcStatus{GrpcCode::kUnavailable, "containerd closed the connection"});
      }
    }
    std::erase_if(sessions_, [&](const std::unique_ptr<Session>& s) {
      return s->failed || (s->draining && s->streams.empty());
    });
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    polled.clear();
    for (auto& s : sessions_) {
      short events = 0;
      if (nghttp2_session_want_read(s->ng)) events |= POLLIN;
      if (nghttp2_session_want_write(s->ng)) events |= POLLOUT;
      fds.push_back(pollfd{s->fd, events, 0});
      polled.push_back(s.get());
    }
    lock.unlock();
    const int ready = ::poll(fds.data(), fds.size(), -1);
    lock.lock();
    if (ready < 0) continue;  // EINTR
    if (fds[0].revents != 0) {
      uint64_t count = 0;
      [[maybe_unused]] const auto n = ::read(wake_fd_, &count, sizeof count);
    }
    // Sessions are only ever deleted on this thread: the pointers are still valid.
    for (size_t i = 0; i < polled.size(); ++i) {
      Session& s = *polled[i];
      if (s.failed) continue;
      const short revents = fds[i + 1].revents;
      if (revents & (POLLIN | POLLHUP | POLLERR)) {
        const int rc = nghttp2_session_recv(s.ng);
        if (rc != 0) {
          failSessionLocked(
              s, GrpcStatus{GrpcCode::kUnavailable,
                            rc == NGHTTP2_ERR_EOF ? std::string("containerd closed the connection")
                                                  : fmt::format("connection to containerd lost: {}",
                                                                nghttp2_strerror(rc))});
          continue;
        }
      }
      flushLocked(s);  // replies (SETTINGS ack, WINDOW_UPDATE) and what callers left
    }
  }
  for (auto& s : sessions_) {
    failSessionLocked(*s, GrpcStatus{GrpcCode::kCancelled, "the client is shutting down"});
  }
  sessions_.clear();
}

}  // namespace ecs::runtime::internal
