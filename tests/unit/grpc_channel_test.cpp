// The containerd client's gRPC transport: wire-format helpers, and calls against a small
// in-process gRPC server (nghttp2's server side on a unix socket in a temp dir).
#include "agent/runtime/grpc_channel.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "agent/common/text.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.pb.h"
#include "tests/support/wait_for.h"

namespace ecs::runtime::internal {
namespace {

using namespace std::chrono_literals;
// Any message with a string field will do.
using StringValue = ::containerd::services::version::v1::VersionResponse;

// --- wire format ---------------------------------------------------------------------------------

TEST(GrpcWireTest, TimeoutUsesTheFinestUnitThatFitsEightDigits) {
  EXPECT_EQ(encodeGrpcTimeout(1500ns), "1500n");
  EXPECT_EQ(encodeGrpcTimeout(99'999'999ns), "99999999n");
  EXPECT_EQ(encodeGrpcTimeout(100'000'000ns), "100000u");
  EXPECT_EQ(encodeGrpcTimeout(30s), "30000000u");
  EXPECT_EQ(encodeGrpcTimeout(30min), "1800000m");
  EXPECT_EQ(encodeGrpcTimeout(std::chrono::hours(24 * 365 * 10)), "5256000M");
  EXPECT_EQ(encodeGrpcTimeout(std::chrono::hours(24 * 365)), "31536000S");
  EXPECT_EQ(encodeGrpcTimeout(std::chrono::nanoseconds::max()), "2562048H");
}

TEST(GrpcWireTest, TimeoutRoundsUpAndIsNeverZero) {
  EXPECT_EQ(encodeGrpcTimeout(0ns), "1n");
  EXPECT_EQ(encodeGrpcTimeout(-5s), "1n");
  EXPECT_EQ(encodeGrpcTimeout(100'000'001ns), "100001u");
  EXPECT_EQ(encodeGrpcTimeout(1'000'000'001ns), "1000001u");
}

TEST(GrpcWireTest, PercentDecodingKeepsMalformedEscapes) {
  EXPECT_EQ(text::percentDecode("no%20such%20container"), "no such container");
  EXPECT_EQ(text::percentDecode("%E2%82%ac"), "\u20ac");
  EXPECT_EQ(text::percentDecode("100%"), "100%");
  EXPECT_EQ(text::percentDecode("%4"), "%4");
  EXPECT_EQ(text::percentDecode("%zz%41"), "%zzA");
  EXPECT_EQ(text::percentDecode(""), "");
}

TEST(GrpcWireTest, StatusValuesOutsideTheKnownCodesAreUnknown) {
  EXPECT_EQ(parseGrpcStatus("0"), GrpcCode::kOk);
  EXPECT_EQ(parseGrpcStatus("5"), GrpcCode::kNotFound);
  EXPECT_EQ(parseGrpcStatus("16"), GrpcCode::kUnauthenticated);
  EXPECT_EQ(parseGrpcStatus("17"), GrpcCode::kUnknown);
  EXPECT_EQ(parseGrpcStatus("-1"), GrpcCode::kUnknown);
  EXPECT_EQ(parseGrpcStatus("5x"), GrpcCode::kUnknown);
  EXPECT_EQ(parseGrpcStatus(""), GrpcCode::kUnknown);
}

TEST(GrpcWireTest, HttpAndResetCodesMapAsGrpcSpecifies) {
  EXPECT_EQ(statusFromHttp(404).code, GrpcCode::kUnimplemented);
  EXPECT_EQ(statusFromHttp(503).code, GrpcCode::kUnavailable);
  EXPECT_EQ(statusFromHttp(401).code, GrpcCode::kUnauthenticated);
  EXPECT_EQ(statusFromHttp(500).code, GrpcCode::kUnknown);
  EXPECT_NE(statusFromHttp(500).message.find("500"), std::string::npos);
  EXPECT_EQ(statusFromRstStream(NGHTTP2_CANCEL).code, GrpcCode::kCancelled);
  EXPECT_EQ(statusFromRstStream(NGHTTP2_REFUSED_STREAM).code, GrpcCode::kUnavailable);
  EXPECT_EQ(statusFromRstStream(NGHTTP2_ENHANCE_YOUR_CALM).code, GrpcCode::kResourceExhausted);
  EXPECT_EQ(statusFromRstStream(NGHTTP2_PROTOCOL_ERROR).code, GrpcCode::kInternal);
}

TEST(GrpcWireTest, FramesDecodeWhateverTheChunking) {
  const std::string stream = frameMessage("hello") + frameMessage("") + frameMessage("world!");
  ASSERT_EQ(stream.size(), 5 + 5 + 5 + 0 + 5 + 6);
  EXPECT_EQ(stream.substr(0, 5), std::string("\0\0\0\0\5", 5));
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    MessageDecoder decoder;
    std::vector<std::string> out;
    for (size_t at = 0; at < stream.size(); at += chunk) {
      ASSERT_TRUE(decoder.feed(std::string_view(stream).substr(at, chunk), out).ok());
    }
    EXPECT_EQ(out, (std::vector<std::string>{"hello", "", "world!"})) << "chunk " << chunk;
    EXPECT_FALSE(decoder.midMessage());
  }
}

TEST(GrpcWireTest, DecoderTracksAPartialMessage) {
  MessageDecoder decoder;
  std::vector<std::string> out;
  const std::string framed = frameMessage("abc");
  ASSERT_TRUE(decoder.feed(framed.substr(0, 2), out).ok());
  EXPECT_TRUE(decoder.midMessage());
  ASSERT_TRUE(decoder.feed(framed.substr(2, 4), out).ok());
  EXPECT_TRUE(decoder.midMessage());
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(decoder.feed(framed.substr(6), out).ok());
  EXPECT_FALSE(decoder.midMessage());
  EXPECT_EQ(out, std::vector<std::string>{"abc"});
}

TEST(GrpcWireTest, DecoderRejectsOversizedAndCompressedMessages) {
  std::vector<std::string> out;
  MessageDecoder small(4);
  EXPECT_TRUE(small.feed(frameMessage("1234"), out).ok());
  EXPECT_EQ(small.feed(frameMessage("12345"), out).code, GrpcCode::kResourceExhausted);
  MessageDecoder decoder;
  const std::string huge("\0\x7f\xff\xff\xff", 5);  // 2 GiB announced: refused before buffering
  EXPECT_EQ(decoder.feed(huge, out).code, GrpcCode::kResourceExhausted);
  MessageDecoder other;
  std::string compressed = frameMessage("x");
  compressed[0] = 1;
  EXPECT_EQ(other.feed(compressed, out).code, GrpcCode::kInternal);
}

// --- calls against an in-process server ----------------------------------------------------------

// A gRPC server speaking just enough for the tests, one thread per connection:
//   /t.T/Echo    unary: answers with the request message
//   /t.T/Fail    trailers-only NOT_FOUND with a percent-encoded message
//   /t.T/Hang    never answers
//   /t.T/Many    answers "<count>x<bytes>" with that many messages of that size
//   /t.T/Count   client streaming: answers with the total size of the messages received
//   /t.T/Refuse  answers FAILED_PRECONDITION as soon as the request starts (before it ends)
class FakeGrpcServer {
 public:
  explicit FakeGrpcServer(std::string path) : path_(std::move(path)) {
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    ::unlink(path_.c_str());
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0) {
      ADD_FAILURE() << "listen on " << path_ << ": " << std::strerror(errno);
    }
    acceptor_ = std::thread([this] { acceptLoop(); });
  }
  ~FakeGrpcServer() { stop(); }

  // Closes the listener and every connection, as a crashing containerd would.
  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    ::unlink(path_.c_str());
    {
      std::lock_guard lock(mutex_);
      for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conns_) t.join();
  }

  int resets() const { return resets_.load(); }
  int connections() const { return connections_.load(); }

 private:
  struct Stream {
    std::string path;
    std::string request;  // framed bytes
    std::string response;
    size_t sent = 0;
  };
  struct Conn {
    FakeGrpcServer* server;
    int fd;
    std::map<int32_t, Stream> streams;
  };

  void acceptLoop() {
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      ++connections_;
      std::lock_guard lock(mutex_);
      conn_fds_.push_back(fd);
      conns_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static ssize_t readBody(nghttp2_session* ng, int32_t id, uint8_t* buf, size_t length,
                          uint32_t* flags, nghttp2_data_source*, void* user) {
    auto& s = static_cast<Conn*>(user)->streams[id];
    const size_t n = std::min(length, s.response.size() - s.sent);
    std::memcpy(buf, s.response.data() + s.sent, n);
    s.sent += n;
    if (s.sent == s.response.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      const nghttp2_nv trailer[] = {nv("grpc-status", "0")};
      nghttp2_submit_trailer(ng, id, trailer, 1);
    }
    return static_cast<ssize_t>(n);
  }

  static nghttp2_nv nv(std::string_view name, std::string_view value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                      value.size(), NGHTTP2_NV_FLAG_NONE};
  }

  static void respond(nghttp2_session* ng, int32_t id, Stream& s) {
    std::vector<std::string> messages;
    MessageDecoder decoder(64 << 20);
    EXPECT_TRUE(decoder.feed(s.request, messages).ok());
    const nghttp2_nv headers[] = {nv(":status", "200"), nv("content-type", "application/grpc")};
    auto body = [&](const std::string& value) {
      StringValue m;
      m.set_version(value);
      return frameMessage(m.SerializeAsString());
    };
    if (s.path == "/t.T/Hang") return;
    if (s.path == "/t.T/Fail") {
      const nghttp2_nv only[] = {nv(":status", "200"), nv("content-type", "application/grpc"),
                                 nv("grpc-status", "5"), nv("grpc-message", "no%20such%20thing")};
      nghttp2_submit_response(ng, id, only, 4, nullptr);
      return;
    }
    if (s.path == "/t.T/Echo") {
      s.response = frameMessage(messages.empty() ? "" : messages[0]);
    } else if (s.path == "/t.T/Many") {
      StringValue request;
      request.ParseFromString(messages.at(0));
      const std::string spec = request.version();
      const auto x = spec.find('x');
      const int count = std::stoi(spec.substr(0, x));
      const size_t size = std::stoul(spec.substr(x + 1));
      for (int i = 0; i < count; ++i) s.response += body(std::string(size, char('a' + i % 26)));
    } else if (s.path == "/t.T/Count") {
      size_t total = 0;
      for (const auto& m : messages) {
        StringValue v;
        v.ParseFromString(m);
        total += v.version().size();
      }
      s.response = body(std::to_string(total));
    }
    nghttp2_data_provider provider{};
    provider.read_callback = readBody;
    nghttp2_submit_response(ng, id, headers, 2, &provider);
  }

  void serve(int fd) {
    Conn conn{this, fd, {}};
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
               const uint8_t* v, size_t vl, uint8_t, void* user) {
          if (std::string_view(reinterpret_cast<const char*>(n), nl) == ":path") {
            static_cast<Conn*>(user)->streams[f->hd.stream_id].path.assign(
                reinterpret_cast<const char*>(v), vl);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t l, void* user) {
          static_cast<Conn*>(user)->streams[id].request.append(reinterpret_cast<const char*>(d), l);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session* ng, const nghttp2_frame* f, void* user) {
          auto& stream = static_cast<Conn*>(user)->streams[f->hd.stream_id];
          if (f->hd.type == NGHTTP2_HEADERS && stream.path == "/t.T/Refuse") {
            const nghttp2_nv only[] = {nv(":status", "200"), nv("content-type", "application/grpc"),
                                       nv("grpc-status", "9"), nv("grpc-message", "refused")};
            nghttp2_submit_response(ng, f->hd.stream_id, only, 4, nullptr);
            return 0;
          }
          if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            respond(ng, f->hd.stream_id, static_cast<Conn*>(user)->streams[f->hd.stream_id]);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t error, void* user) {
          auto* c = static_cast<Conn*>(user);
          if (error == NGHTTP2_CANCEL) ++c->server->resets_;
          c->streams.erase(id);
          return 0;
        });
    nghttp2_session* ng = nullptr;
    nghttp2_session_server_new(&ng, cb, &conn);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, nullptr, 0);
    uint8_t buf[16384];
    while (nghttp2_session_want_read(ng) || nghttp2_session_want_write(ng)) {
      const uint8_t* out = nullptr;
      ssize_t n = 0;
      bool broken = false;
      while ((n = nghttp2_session_mem_send(ng, &out)) > 0) {
        if (::send(fd, out, static_cast<size_t>(n), MSG_NOSIGNAL) != n) broken = true;
      }
      if (broken) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got <= 0 || nghttp2_session_mem_recv(ng, buf, static_cast<size_t>(got)) < 0) break;
    }
    nghttp2_session_del(ng);
    ::close(fd);
  }

  std::string path_;
  int listen_fd_ = -1;
  std::atomic<bool> stopped_{false};
  std::atomic<int> resets_{0};
  std::atomic<int> connections_{0};
  std::mutex mutex_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> conns_;
  std::thread acceptor_;
};

class GrpcChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grpc-channel-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/grpc.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static StringValue text(std::string value) {
    StringValue m;
    m.set_version(std::move(value));
    return m;
  }

  std::string dir_;
  std::string socket_;
};

TEST_F(GrpcChannelTest, UnaryCallsShareOneConnectionAcrossThreads) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel("unix://" + socket_);
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        CallContext ctx;
        ctx.setTimeout(10s);
        ctx.addMetadata("containerd-namespace", "test");
        StringValue response;
        const auto status =
            channel.call(ctx, "/t.T/Echo", text(fmt::format("{}-{}", t, i)), &response);
        if (status.ok() && response.version() == fmt::format("{}-{}", t, i)) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 200);
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(GrpcChannelTest, ErrorStatusComesFromTrailersPercentDecoded) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  StringValue response;
  const auto status = channel.call(ctx, "/t.T/Fail", text("x"), &response);
  EXPECT_EQ(status.code, GrpcCode::kNotFound);
  EXPECT_EQ(status.message, "no such thing");
}

TEST_F(GrpcChannelTest, DeadlineEndsTheCallAndResetsTheStream) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  ctx.setTimeout(200ms);
  StringValue response;
  const auto started = std::chrono::steady_clock::now();
  const auto status = channel.call(ctx, "/t.T/Hang", text("x"), &response);
  EXPECT_EQ(status.code, GrpcCode::kDeadlineExceeded);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 200ms);
  EXPECT_TRUE(testing::waitFor([&] { return server.resets() == 1; }, 5s, "the RST_STREAM"));
}

TEST_F(GrpcChannelTest, CancelFromAnotherThreadEndsAStream) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  auto call = channel.start(ctx, "/t.T/Hang");
  ASSERT_TRUE(call->write(text("x"), true));
  std::thread canceller([&] { ctx.cancel(); });
  StringValue response;
  EXPECT_FALSE(call->read(&response));
  canceller.join();
  EXPECT_EQ(call->finish().code, GrpcCode::kCancelled);
  EXPECT_TRUE(testing::waitFor([&] { return server.resets() == 1; }, 5s, "the RST_STREAM"));
}

TEST_F(GrpcChannelTest, ServerStreamBeyondTheWindowsArrivesWhole) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  ctx.setTimeout(60s);
  auto call = channel.start(ctx, "/t.T/Many");
  // 40 MiB: more than the stream and connection windows, so it needs our WINDOW_UPDATEs.
  ASSERT_TRUE(call->write(text("160x262144"), true));
  StringValue message;
  int count = 0;
  while (call->read(&message)) {
    ASSERT_EQ(message.version().size(), 262144u);
    ASSERT_EQ(message.version()[0], char('a' + count % 26));
    ++count;
  }
  EXPECT_TRUE(call->finish().ok());
  EXPECT_EQ(count, 160);
}

TEST_F(GrpcChannelTest, ClientStreamRespectsFlowControl) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  ctx.setTimeout(60s);
  auto call = channel.start(ctx, "/t.T/Count");
  const std::string chunk(1 << 20, 'z');
  for (int i = 0; i < 24; ++i) ASSERT_TRUE(call->write(text(chunk)));
  call->writesDone();
  StringValue total;
  ASSERT_TRUE(call->read(&total));
  EXPECT_EQ(total.version(), std::to_string(24 << 20));
  EXPECT_TRUE(call->finish().ok());
}

TEST_F(GrpcChannelTest, AnAnswerBeforeTheRequestEndsEndsTheCall) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  ctx.setTimeout(60s);
  auto call = channel.start(ctx, "/t.T/Refuse");
  const std::string chunk(1 << 20, 'z');
  int written = 0;
  while (written < 64 && call->write(text(chunk))) ++written;
  EXPECT_LT(written, 64);  // the writer learns that nobody reads any more
  const auto status = call->finish();
  EXPECT_EQ(status.code, GrpcCode::kFailedPrecondition);
  EXPECT_EQ(status.message, "refused");
}

TEST_F(GrpcChannelTest, OversizedRequestFailsLocally) {
  FakeGrpcServer server(socket_);
  GrpcChannel channel(socket_);
  CallContext ctx;
  StringValue response;
  const auto status =
      channel.call(ctx, "/t.T/Echo", text(std::string(kMaxMessageBytes + 1, 'x')), &response);
  EXPECT_EQ(status.code, GrpcCode::kResourceExhausted);
}

TEST_F(GrpcChannelTest, ReconnectsAfterTheServerComesBack) {
  GrpcChannel channel(socket_);
  StringValue response;
  {
    CallContext ctx;
    const auto status = channel.call(ctx, "/t.T/Echo", text("a"), &response);
    EXPECT_EQ(status.code, GrpcCode::kUnavailable);
    EXPECT_NE(status.message.find(socket_), std::string::npos) << status.message;
  }
  auto server = std::make_unique<FakeGrpcServer>(socket_);
  {
    CallContext ctx;
    EXPECT_TRUE(channel.call(ctx, "/t.T/Echo", text("b"), &response).ok());
  }
  // A call in flight when the server goes away fails with UNAVAILABLE.
  CallContext hanging;
  auto call = channel.start(hanging, "/t.T/Hang");
  ASSERT_TRUE(call->write(text("x"), true));
  server->stop();
  EXPECT_EQ(call->finish().code, GrpcCode::kUnavailable);
  server = std::make_unique<FakeGrpcServer>(socket_);
  CallContext ctx;
  EXPECT_TRUE(channel.call(ctx, "/t.T/Echo", text("c"), &response).ok());
  EXPECT_EQ(response.version(), "c");
}

}  // namespace
}  // namespace ecs::runtime::internal
