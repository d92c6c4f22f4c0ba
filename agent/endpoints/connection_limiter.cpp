#include "agent/endpoints/connection_limiter.h"

#include <algorithm>
#include <utility>

namespace ecs::endpoints {

size_t connectionCap(size_t configured, uint64_t fd_limit, size_t fd_reserve) {
  uint64_t room = fd_limit > fd_reserve ? fd_limit - fd_reserve : 0;
  room = std::max<uint64_t>(room, fd_limit / 4);
  return static_cast<size_t>(std::max<uint64_t>(1, std::min<uint64_t>(configured, room)));
}

ConnectionLimiter::ConnectionLimiter(ConnectionLimits limits) : limits_(limits) {}

std::optional<ConnectionLimiter::Slot> ConnectionLimiter::admit(const std::string& client) {
  std::lock_guard lock(mutex_);
  if (total_ >= limits_.total) return std::nullopt;
  auto [it, inserted] = per_client_.try_emplace(client, 0);
  if (it->second >= limits_.per_client) {
    if (inserted) per_client_.erase(it);  // a zero cap: keep no empty entry
    return std::nullopt;
  }
  ++it->second;
  ++total_;
  return Slot(this, client);
}

void ConnectionLimiter::release(const std::string& client) {
  std::lock_guard lock(mutex_);
  auto it = per_client_.find(client);
  if (it == per_client_.end()) return;
  --total_;
  if (--it->second == 0) per_client_.erase(it);
}

size_t ConnectionLimiter::open() const {
  std::lock_guard lock(mutex_);
  return total_;
}

size_t ConnectionLimiter::openFrom(const std::string& client) const {
  std::lock_guard lock(mutex_);
  auto it = per_client_.find(client);
  return it == per_client_.end() ? 0 : it->second;
}

size_t ConnectionLimiter::clients() const {
  std::lock_guard lock(mutex_);
  return per_client_.size();
}

ConnectionLimiter::Slot::Slot(ConnectionLimiter* limiter, std::string client)
    : limiter_(limiter), client_(std::move(client)) {}

ConnectionLimiter::Slot::Slot(Slot&& other) noexcept
    : limiter_(std::exchange(other.limiter_, nullptr)), client_(std::move(other.client_)) {}

ConnectionLimiter::Slot& ConnectionLimiter::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    client_ = std::move(other.client_);
  }
  return *this;
}

ConnectionLimiter::Slot::~Slot() {
  release();
}

void ConnectionLimiter::Slot::release() {
  if (limiter_) std::exchange(limiter_, nullptr)->release(client_);
}

}  // namespace ecs::endpoints
