#include "tests/support/loopback_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace ecs::testing {
namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool sameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// Reads until the blank line that ends the head; returns the head and whatever came after it.
std::pair<std::string, std::string> readHead(int fd) {
  std::string data;
  char buffer[4096];
  for (;;) {
    if (size_t end = data.find("\r\n\r\n"); end != std::string::npos) {
      return {data.substr(0, end + 4), data.substr(end + 4)};
    }
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return {data, {}};
    data.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace

std::string LoopbackRequest::header(std::string_view name) const {
  size_t line = head.find("\r\n");
  while (line != std::string::npos && line + 2 < head.size()) {
    size_t start = line + 2;
    size_t end = head.find("\r\n", start);
    if (end == std::string::npos || end == start) break;
    std::string_view field(head.data() + start, end - start);
    if (size_t colon = field.find(':');
        colon != std::string_view::npos && sameName(field.substr(0, colon), name)) {
      std::string_view value = field.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      return std::string(value);
    }
    line = end;
  }
  return {};
}

bool LoopbackConnection::write(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void LoopbackConnection::waitForClientToHangUp() {
  char buffer[4096];
  while (recv(fd_, buffer, sizeof buffer, 0) > 0) {
  }
}

LoopbackHttpServer::LoopbackHttpServer(Handler handler, const std::string& ip)
    : handler_(std::move(handler)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1 ||
      bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(listen_fd_, 64) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (listen_fd_ >= 0) close(listen_fd_);
    throw std::runtime_error("LoopbackHttpServer: cannot listen on " + ip);
  }
  address_ = ip + ":" + std::to_string(ntohs(addr.sin_port));
  if (handler_) acceptor_ = std::thread([this] { acceptLoop(); });
}

LoopbackHttpServer::~LoopbackHttpServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);  // wakes handlers blocked on the client
  }
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    workers.swap(workers_);
  }
  for (auto& worker : workers) worker.join();
  close(listen_fd_);
}

std::vector<LoopbackRequest> LoopbackHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void LoopbackHttpServer::acceptLoop() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::lock_guard lock(mutex_);
    if (stopping_) {
      close(fd);
      return;
    }
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { serve(fd); });
  }
}

void LoopbackHttpServer::serve(int fd) {
  auto [head, rest] = readHead(fd);
  LoopbackRequest request;
  request.head = head;
  size_t space = head.find(' ');
  size_t second = head.find(' ', space + 1);
  if (space != std::string::npos && second != std::string::npos) {
    request.method = head.substr(0, space);
    request.target = head.substr(space + 1, second - space - 1);
  }
  size_t length = 0;
  if (std::string value = request.header("Content-Length"); !value.empty()) {
    length = std::stoul(value);
  }
  request.body = std::move(rest);
  char buffer[65536];
  while (request.body.size() < length) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    request.body.append(buffer, static_cast<size_t>(n));
  }
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
  }
  if (!head.empty()) {
    LoopbackConnection connection(fd);
    handler_(request, connection);
  }
  shutdown(fd, SHUT_WR);
  std::lock_guard lock(mutex_);
  std::erase(open_fds_, fd);
  close(fd);
}

std::string httpResponse(const std::string& status, const std::string& headers,
                         const std::string& body) {
  return "HTTP/1.1 " + status + "\r\n" + headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

}  // namespace ecs::testing
