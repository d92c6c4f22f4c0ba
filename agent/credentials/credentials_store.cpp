#include "agent/credentials/credentials_store.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace ecs::credentials {

std::string_view toString(RoleType type) {
  return type == RoleType::kTask ? "task" : "execution";
}

std::string newCredentialsId() {
  std::array<unsigned char, 24> bytes{};
  size_t filled = 0;
  while (filled < bytes.size()) {
    ssize_t n = getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Without the kernel CSPRNG an id could be guessed; serving credentials under it would be
      // worse than stopping.
      std::abort();
    }
    filled += static_cast<size_t>(n);
  }
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string id;
  id.reserve(32);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) id += kAlphabet[(v >> shift) & 0x3f];
  }
  return id;
}

std::string CredentialsStore::add(std::string task_arn, std::string role_arn, RoleType role_type,
                                  std::optional<aws::Credentials> credentials) {
  CredentialsEntry entry{newCredentialsId(), std::move(task_arn), std::move(role_arn), role_type,
                         std::move(credentials)};
  std::string id = entry.id;
  put(std::move(entry));
  return id;
}

void CredentialsStore::put(CredentialsEntry entry) {
  std::unique_lock lock(mutex_);
  std::string id = entry.id;
  entries_.insert_or_assign(std::move(id), std::move(entry));
}

bool CredentialsStore::update(std::string_view id, aws::Credentials credentials) {
  std::unique_lock lock(mutex_);
  auto it = entries_.find(std::string(id));
  if (it == entries_.end()) return false;
  it->second.credentials = std::move(credentials);
  return true;
}

std::optional<CredentialsEntry> CredentialsStore::get(std::string_view id) const {
  std::shared_lock lock(mutex_);
  auto it = entries_.find(std::string(id));
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

bool CredentialsStore::revoke(std::string_view id) {
  std::unique_lock lock(mutex_);
  return entries_.erase(std::string(id)) > 0;
}

size_t CredentialsStore::revokeTask(std::string_view task_arn) {
  std::unique_lock lock(mutex_);
  return std::erase_if(entries_, [&](const auto& kv) { return kv.second.task_arn == task_arn; });
}

size_t CredentialsStore::size() const {
  std::shared_lock lock(mutex_);
  return entries_.size();
}

}  // namespace ecs::credentials
