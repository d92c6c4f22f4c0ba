// CredentialsStore: the task-role and execution-role credentials the agent holds for running
// tasks, under unguessable ids. The credentials endpoint (/v2/credentials/<id>) reads it; task
// resources (and later the cluster session) fill it and revoke a task's ids when it stops.
// Credentials live only in memory and are never logged: nothing here formats a secret.
#pragma once

#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "agent/aws/credentials.h"

namespace ecs::credentials {

enum class RoleType { kTask, kExecution };
std::string_view toString(RoleType type);

struct CredentialsEntry {
  std::string id;
  std::string task_arn;
  std::string role_arn;
  RoleType role_type = RoleType::kTask;
  // nullopt: the id is known (restored from state) but its credentials have not arrived yet; the
  // endpoint answers 503 CredentialsUninitialized rather than "not found".
  std::optional<aws::Credentials> credentials;
};

// A new credentials id: 192 bits from the kernel CSPRNG (getrandom), base64url without padding
// (32 characters), so it is safe in a URL path and cannot be guessed.
std::string newCredentialsId();

// Thread-safe; reads (every endpoint request) take a shared lock only.
class CredentialsStore {
 public:
  // Registers credentials for a task's role under a new id and returns the id.
  std::string add(std::string task_arn, std::string role_arn, RoleType role_type,
                  std::optional<aws::Credentials> credentials);
  // Registers under a given id (state restore, or an id the cluster chose). Replaces an entry
  // with the same id.
  void put(CredentialsEntry entry);
  // Replaces the credentials of a known id (a refresh); false if the id is unknown.
  bool update(std::string_view id, aws::Credentials credentials);

  std::optional<CredentialsEntry> get(std::string_view id) const;
  // Removes one id; false if it was unknown.
  bool revoke(std::string_view id);
  // Removes every id of a task (all roles); returns how many were removed.
  size_t revokeTask(std::string_view task_arn);
  size_t size() const;

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, CredentialsEntry> entries_;
};

}  // namespace ecs::credentials
