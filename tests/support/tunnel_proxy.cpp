#include "tests/support/tunnel_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace ecs::testing {
namespace {

// Reads a request or response head (through the blank line); empty on EOF first.
std::string readHead(int fd) {
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (recv(fd, &c, 1, 0) != 1) return {};
    head += c;
  }
  return head;
}

bool writeAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool copyBytes(int from, int to, size_t count) {
  char buffer[16384];
  while (count > 0) {
    const ssize_t n = recv(from, buffer, std::min(count, sizeof buffer), 0);
    if (n <= 0) return false;
    if (!writeAll(to, std::string_view(buffer, static_cast<size_t>(n)))) return false;
    count -= static_cast<size_t>(n);
  }
  return true;
}

// Copies from -> to until from ends, then ends to's sending side.
void pipe(int from, int to) {
  char buffer[16384];
  while (true) {
    const ssize_t n = recv(from, buffer, sizeof buffer, 0);
    if (n <= 0 || !writeAll(to, std::string_view(buffer, static_cast<size_t>(n)))) break;
  }
  shutdown(to, SHUT_WR);
}

size_t contentLength(const std::string& head) {
  std::string lower;
  for (char c : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t at = lower.find("\r\ncontent-length:");
  return at == std::string::npos ? 0 : std::strtoul(head.c_str() + at + 17, nullptr, 10);
}

}  // namespace

TunnelProxy::TunnelProxy(std::map<std::string, std::string> hosts) : hosts_(std::move(hosts)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listen_fd_);
    throw std::runtime_error("tunnel proxy: cannot listen on loopback");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      pollfd fd{listen_fd_, POLLIN, 0};
      if (poll(&fd, 1, 50) != 1) continue;
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      track(client);
      std::lock_guard lock(mutex_);
      threads_.emplace_back([this, client] { serve(client); });
    }
  });
}

TunnelProxy::~TunnelProxy() {
  stopping_ = true;
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }
  // Threads may still start pipes (and add threads) until their sockets are shut down.
  while (true) {
    std::thread thread;
    {
      std::lock_guard lock(mutex_);
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
      if (threads_.empty()) break;
      thread = std::move(threads_.front());
      threads_.pop_front();
    }
    thread.join();
  }
  for (int fd : fds_) close(fd);
  close(listen_fd_);
}

std::vector<std::string> TunnelProxy::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void TunnelProxy::track(int fd) {
  std::lock_guard lock(mutex_);
  fds_.push_back(fd);
  if (stopping_) shutdown(fd, SHUT_RDWR);
}

int TunnelProxy::dial(const std::string& authority) {
  const size_t colon = authority.rfind(':');
  if (colon == std::string::npos) return -1;
  const auto known = hosts_.find(authority.substr(0, colon));
  if (known == hosts_.end()) return -1;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(authority.c_str() + colon + 1)));
  inet_pton(AF_INET, known->second.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  track(fd);
  return fd;
}

void TunnelProxy::serve(int client) {
  std::string head = readHead(client);
  if (head.empty()) return;
  const size_t space = head.find(' ');
  const size_t second = head.find(' ', space + 1);
  if (space == std::string::npos || second == std::string::npos) return;
  const std::string method = head.substr(0, space);
  const std::string target = head.substr(space + 1, second - space - 1);
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(method + " " + target);
  }
  if (method == "CONNECT") {
    const int upstream = dial(target);
    if (upstream < 0) {
      writeAll(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    writeAll(client, "HTTP/1.1 200 Connection established\r\n\r\n");
    std::thread back([upstream, client] { pipe(upstream, client); });
    pipe(client, upstream);
    back.join();
    return;
  }
  // Absolute form: "http://host:port/path". Every request on this connection goes to that host,
  // each rewritten to origin form; answers flow back as they come.
  const std::string prefix = "http://";
  if (!target.starts_with(prefix)) {
    writeAll(client, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  const size_t path = target.find('/', prefix.size());
  const std::string authority = target.substr(prefix.size(), path - prefix.size());
  const int upstream = dial(authority);
  if (upstream < 0) {
    writeAll(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  std::thread back([upstream, client] { pipe(upstream, client); });
  while (!head.empty()) {
    const size_t line_end = head.find("\r\n");
    const size_t sp1 = head.find(' ');
    const size_t sp2 = head.find(' ', sp1 + 1);
    std::string request_target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    if (request_target.starts_with(prefix + authority)) {
      request_target.erase(0, prefix.size() + authority.size());
      if (request_target.empty()) request_target = "/";
    }
    const std::string rewritten = head.substr(0, sp1) + " " + request_target +
                                  head.substr(sp2, line_end - sp2) + head.substr(line_end);
    if (!writeAll(upstream, rewritten) || !copyBytes(client, upstream, contentLength(head))) break;
    head = readHead(client);
    if (!head.empty()) {
      std::lock_guard lock(mutex_);
      requests_.push_back(
          head.substr(0, head.find(' ')) + " " +
          head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1));
    }
  }
  shutdown(upstream, SHUT_WR);
  back.join();
}

}  // namespace ecs::testing
