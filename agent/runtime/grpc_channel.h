// Internal to agent/runtime: the gRPC transport of the containerd client — gRPC over HTTP/2
// with prior knowledge (h2c) on containerd's unix socket, built on libnghttp2.
//
// Why not gRPC C++: it mapped 7.3 MB of libgrpc/absl/re2/upb/c-ares pages into the idle daemon
// for the three call shapes the agent needs (unary, server streaming, one bidirectional stream).
//
// What it does: one HTTP/2 connection shared by every thread. Callers submit frames and
// wait on their stream under one mutex; an I/O thread reads the socket (and writes what a
// caller could not). A broken connection fails its calls with UNAVAILABLE and the next call
// dials again; a GOAWAY lets the calls in flight finish while new ones go to a new connection.
// Deadlines are sent (grpc-timeout) and enforced here too (DEADLINE_EXCEEDED + RST_STREAM).
//
// Memory bounds: a message is at most kMaxMessageBytes either way (RESOURCE_EXHAUSTED beyond).
// Received bytes count against HTTP/2 flow control until the reader takes the message they
// complete, so an unread stream holds at most its window (kStreamWindowBytes) plus one partial
// message; a writer blocks while more than kSendLowWaterBytes of its stream are unsent.
//
// Threading: GrpcChannel is thread-safe; a GrpcCall is used by one thread at a time;
// CallContext::cancel may be called from any thread at any time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace google::protobuf {
class MessageLite;
}

namespace ecs::runtime::internal {

// The gRPC status codes (numbering is part of the wire protocol).
enum class GrpcCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

struct GrpcStatus {
  GrpcCode code = GrpcCode::kOk;
  std::string message;

  bool ok() const { return code == GrpcCode::kOk; }
};

// A message is at most this big, sent or received. containerd's own server limits are 16 MiB
// both ways; our largest messages are 1 MiB Content.Write chunks and task lists.
inline constexpr size_t kMaxMessageBytes = 16 << 20;
// HTTP/2 receive window of each stream and of the connection.
inline constexpr int32_t kStreamWindowBytes = 1 << 20;
inline constexpr int32_t kConnectionWindowBytes = 16 << 20;
// A writer waits while more than this much of its stream is queued but unsent.
inline constexpr size_t kSendLowWaterBytes = 256 << 10;
// grpc-message values longer than this are cut (they end up in log lines).
inline constexpr size_t kMaxStatusMessageBytes = 4096;

// --- wire format helpers (exposed for the unit tests) ---------------------------------------

// The grpc-timeout header value for `timeout` (at most 8 digits, rounded up to its unit).
std::string encodeGrpcTimeout(std::chrono::nanoseconds timeout);
// grpc-status's value; anything that is not a known code is UNKNOWN.
GrpcCode parseGrpcStatus(std::string_view value);
// The status of a response that carried no grpc-status, from its HTTP status.
GrpcStatus statusFromHttp(int http_status);
// The status of a stream the peer reset with an HTTP/2 error code.
GrpcStatus statusFromRstStream(uint32_t error_code);
// "unavailable", "not found", ...: for messages.
std::string_view grpcCodeName(GrpcCode code);

// The 5-byte gRPC message prefix (uncompressed flag + big-endian length) and the body.
std::string frameMessage(std::string_view body);

// Splits a received byte stream into gRPC messages.
class MessageDecoder {
 public:
  explicit MessageDecoder(size_t max_message_bytes = kMaxMessageBytes)
      : max_message_bytes_(max_message_bytes) {}

  // Appends bytes; complete messages go to `out`. A non-OK status (oversized or compressed
  // message) is final: the stream must be abandoned.
  GrpcStatus feed(std::string_view data, std::vector<std::string>& out);
  // True if a message was started but not completed.
  bool midMessage() const { return header_fill_ > 0 || body_.has_value(); }

 private:
  size_t max_message_bytes_;
  unsigned char header_[5] = {};
  size_t header_fill_ = 0;
  size_t body_size_ = 0;
  std::optional<std::string> body_;
};

// --- calls -------------------------------------------------------------------------------------

class GrpcChannel;
struct StreamState;

// Metadata, deadline and cancellation of one call (the role grpc::ClientContext plays).
class CallContext {
 public:
  CallContext() = default;
  CallContext(const CallContext&) = delete;
  CallContext& operator=(const CallContext&) = delete;

  // Header names in lower case.
  void addMetadata(std::string name, std::string value);
  // No deadline unless set.
  void setTimeout(std::chrono::milliseconds timeout);
  // Fails the call using this context (now, or when it starts) with CANCELLED. Any thread.
  void cancel();

 private:
  friend class GrpcChannel;
  friend class GrpcCall;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::mutex mutex_;  // guards the two below
  bool cancelled_ = false;
  class GrpcCall* call_ = nullptr;
};

// One call in flight: a stream of request messages and a stream of response messages. Used by
// one thread at a time (cancel() through the context excepted).
class GrpcCall {
 public:
  ~GrpcCall();  // resets the stream if it has not ended
  GrpcCall(const GrpcCall&) = delete;
  GrpcCall& operator=(const GrpcCall&) = delete;

  // Queues one request message (`last`: and ends the request stream); false once the call has
  // ended (finish() says why). Blocks while the stream's unsent data is above
  // kSendLowWaterBytes, which HTTP/2 flow control drains at the server's pace.
  bool write(const google::protobuf::MessageLite& message, bool last = false);
  // No more request messages (END_STREAM).
  void writesDone();
  // The next response message; false at the end of the stream or on failure.
  bool read(google::protobuf::MessageLite* message);
  // Waits for the end of the call; its status. Response messages not read are dropped.
  GrpcStatus finish();

 private:
  friend class GrpcChannel;
  friend class CallContext;
  GrpcCall(GrpcChannel& channel, CallContext& context, std::shared_ptr<StreamState> stream);
  void cancel();

  GrpcChannel& channel_;
  CallContext& context_;
  std::shared_ptr<StreamState> stream_;
};

class GrpcChannel {
 public:
  // `address`: a socket path, optionally prefixed "unix:" or "unix://". No I/O happens here:
  // the first call dials.
  explicit GrpcChannel(std::string address);
  ~GrpcChannel();
  GrpcChannel(const GrpcChannel&) = delete;
  GrpcChannel& operator=(const GrpcChannel&) = delete;

  // Starts a call of `path` ("/package.Service/Method"). Never null: a call that could not
  // start (no connection, cancelled, past its deadline) has already ended with that status.
  std::unique_ptr<GrpcCall> start(CallContext& context, std::string_view path);
  // A unary call.
  GrpcStatus call(CallContext& context, std::string_view path,
                  const google::protobuf::MessageLite& request,
                  google::protobuf::MessageLite* response);

  struct Session;  // one HTTP/2 connection (opaque)

 private:
  friend class GrpcCall;

  void ioLoop();
  void wakeIoThread();
  // The connection new streams go to, dialling if there is none. Null with `error` set if
  // containerd cannot be reached.
  Session* currentSessionLocked(GrpcStatus& error);
  // Sends what nghttp2 has queued; on failure the session is failed.
  void flushLocked(Session& session);
  void failSessionLocked(Session& session, const GrpcStatus& status);
  void endStreamLocked(StreamState& stream, GrpcStatus status, bool reset);
  void consumeLocked(StreamState& stream);

  friend struct NgCallbacks;  // nghttp2's callbacks, in the .cpp

  const std::string socket_path_;
  std::mutex mutex_;  // guards everything below and every nghttp2 call
  std::vector<std::unique_ptr<Session>> sessions_;
  Session* current_ = nullptr;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::thread io_thread_;
};

}  // namespace ecs::runtime::internal
