// ConnectionLimiter: how many connections an HTTP server holds open, per client address and in
// total. A server admits a connection only if both caps leave room; the admitted connection holds
// a Slot until it closes. The total cap is sized from the descriptor limit (connectionCap) so that
// a flood of connections can never take the descriptors the rest of the agent needs.
//
// Thread-safe: slots are taken on the accepting thread and released on the connections' threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace ecs::endpoints {

struct ConnectionLimits {
  size_t per_client = 64;  // open connections from one address
  size_t total = 1024;     // open connections from every address together
};

// The total cap a server may use when the process may open `fd_limit` descriptors and
// `fd_reserve` of them are kept for the rest of the agent: `configured`, lowered to
// fd_limit - fd_reserve, and never below a quarter of the limit (a tiny limit still serves).
size_t connectionCap(size_t configured, uint64_t fd_limit, size_t fd_reserve);

class ConnectionLimiter {
 public:
  explicit ConnectionLimiter(ConnectionLimits limits);
  ConnectionLimiter(const ConnectionLimiter&) = delete;
  ConnectionLimiter& operator=(const ConnectionLimiter&) = delete;

  // A place taken by one open connection; given back when destroyed. The limiter must outlive it.
  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    friend class ConnectionLimiter;
    Slot(ConnectionLimiter* limiter, std::string client);
    void release();
    ConnectionLimiter* limiter_ = nullptr;
    std::string client_;
  };

  // A slot for one more connection from `client`, or nullopt when either cap is reached.
  std::optional<Slot> admit(const std::string& client);

  size_t open() const;
  size_t openFrom(const std::string& client) const;
  size_t clients() const;  // addresses with at least one open connection
  const ConnectionLimits& limits() const { return limits_; }

 private:
  void release(const std::string& client);

  const ConnectionLimits limits_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, size_t> per_client_;
  size_t total_ = 0;
};

}  // namespace ecs::endpoints
