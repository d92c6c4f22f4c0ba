// LoopbackHttpServer: a small HTTP/1.1 server on a loopback address and port 0, for tests of the
// HTTP clients. Each connection carries one request; a handler answers it by writing raw bytes, so
// a test can send anything — a status and headers, a body that stalls halfway, nothing at all —
// and learn when the client hangs up. Every connection gets its own thread; the destructor wakes
// and joins them all.
#pragma once

#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ecs::testing {

struct LoopbackRequest {
  std::string method;
  std::string target;  // "/path?query"
  std::string head;    // the request line and headers as received
  std::string body;    // Content-Length bytes after the head

  std::string header(std::string_view name) const;  // case-insensitive; empty if absent
};

class LoopbackConnection {
 public:
  // Sends bytes; false once the client is gone or the server stops.
  bool write(std::string_view bytes);
  // Blocks until the client closes the connection (or the server stops): how a handler that
  // stalls on purpose learns the client gave up.
  void waitForClientToHangUp();

 private:
  friend class LoopbackHttpServer;
  explicit LoopbackConnection(int fd) : fd_(fd) {}
  int fd_;
};

class LoopbackHttpServer {
 public:
  using Handler = std::function<void(const LoopbackRequest&, LoopbackConnection&)>;

  // Listens on `ip`:0. A null handler never accepts: clients connect (the backlog takes them)
  // and then hear nothing. Throws std::runtime_error if it cannot listen.
  explicit LoopbackHttpServer(Handler handler, const std::string& ip = "127.0.0.1");
  ~LoopbackHttpServer();
  LoopbackHttpServer(const LoopbackHttpServer&) = delete;
  LoopbackHttpServer& operator=(const LoopbackHttpServer&) = delete;

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  std::string url(std::string_view target) const {
    return "http://" + address_ + std::string(target);
  }
  std::vector<LoopbackRequest> requests() const;  // every request received so far, in order

 private:
  void acceptLoop();
  void serve(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  std::string address_;
  std::thread acceptor_;
  mutable std::mutex mutex_;
  bool stopping_ = false;                  // guarded by mutex_
  std::vector<int> open_fds_;              // guarded by mutex_: shut down to wake their threads
  std::list<std::thread> workers_;         // guarded by mutex_
  std::vector<LoopbackRequest> requests_;  // guarded by mutex_
};

// "HTTP/1.1 <status>\r\n<headers>Content-Length: N\r\nConnection: close\r\n\r\n<body>"; each
// header in `headers` ends with \r\n.
std::string httpResponse(const std::string& status, const std::string& headers,
                         const std::string& body);

}  // namespace ecs::testing
