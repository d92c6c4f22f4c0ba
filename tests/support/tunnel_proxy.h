// TunnelProxy: an HTTP proxy on loopback, in this process, for tests of the agent behind a proxy.
// It tunnels CONNECT host:port, and forwards requests made in absolute form ("POST
// http://host:port/path"), rewritten to origin form. It reaches only the names it was given (each
// standing for a loopback address, since the tests have no DNS) and refuses others with 502; it
// records every request line it was sent.
#pragma once

#include <atomic>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ecs::testing {

class TunnelProxy {
 public:
  // `hosts`: name -> the IPv4 address it stands for.
  explicit TunnelProxy(std::map<std::string, std::string> hosts);
  ~TunnelProxy();
  TunnelProxy(const TunnelProxy&) = delete;
  TunnelProxy& operator=(const TunnelProxy&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // "CONNECT host:port" or "METHOD http://host:port/path", in the order they came.
  std::vector<std::string> requests() const;

 private:
  void serve(int client);
  int dial(const std::string& authority);  // -1 when the name is not known or refuses
  void track(int fd);

  std::map<std::string, std::string> hosts_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<int> fds_;               // guarded by mutex_: shut down to end their threads
  std::list<std::thread> threads_;     // guarded by mutex_
  std::vector<std::string> requests_;  // guarded by mutex_
};

}  // namespace ecs::testing
