// CredentialsStore: ids are unguessable and URL-safe, lookups see what was added, revocation by
// task removes every role's id and nothing else.
#include "agent/credentials/credentials_store.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "agent/credentials/credentials_source.h"

namespace {

using ecs::credentials::CredentialsStore;
using ecs::credentials::RoleType;

ecs::aws::Credentials creds(std::string key) {
  ecs::aws::Credentials c;
  c.access_key_id = std::move(key);
  c.secret_access_key = "secret";
  c.session_token = "token";
  return c;
}

TEST(CredentialsStoreTest, IdsAreLongUrlSafeAndDistinct) {
  std::set<std::string> ids;
  for (int i = 0; i < 2000; ++i) {
    auto id = ecs::credentials::newCredentialsId();
    ASSERT_EQ(id.size(), 32u);  // 192 bits
    for (char c : id) {
      ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << id;
    }
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 2000u);
}

TEST(CredentialsStoreTest, AddGetRevokeTask) {
  CredentialsStore store;
  auto a = store.add("arn:task/a", "arn:role/task", RoleType::kTask, creds("AKIA1"));
  auto a_exec = store.add("arn:task/a", "arn:role/exec", RoleType::kExecution, creds("AKIA2"));
  auto b = store.add("arn:task/b", "arn:role/task", RoleType::kTask, creds("AKIA3"));
  ASSERT_NE(a, a_exec);
  auto got = store.get(a);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->role_arn, "arn:role/task");
  EXPECT_EQ(got->role_type, RoleType::kTask);
  EXPECT_EQ(got->credentials->access_key_id, "AKIA1");
  EXPECT_EQ(store.get(a_exec)->role_type, RoleType::kExecution);

  EXPECT_EQ(store.revokeTask("arn:task/a"), 2u);
  EXPECT_FALSE(store.get(a));
  EXPECT_FALSE(store.get(a_exec));
  EXPECT_TRUE(store.get(b));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_FALSE(store.get("nonexistent"));
}

TEST(CredentialsStoreTest, UninitializedThenUpdated) {
  CredentialsStore store;
  store.put({"known-id", "arn:task/a", "arn:role/r", RoleType::kTask, std::nullopt});
  ASSERT_TRUE(store.get("known-id"));
  EXPECT_FALSE(store.get("known-id")->credentials);
  EXPECT_TRUE(store.update("known-id", creds("AKIA9")));
  EXPECT_EQ(store.get("known-id")->credentials->access_key_id, "AKIA9");
  EXPECT_FALSE(store.update("other", creds("x")));
  EXPECT_TRUE(store.revoke("known-id"));
  EXPECT_FALSE(store.revoke("known-id"));
}

TEST(CredentialsStoreTest, ConcurrentReadersAndWriters) {
  CredentialsStore store;
  auto id = store.add("arn:task/a", "arn:role/r", RoleType::kTask, creds("AKIA"));
  std::atomic<bool> stop{false};
  std::atomic<bool> reading{false};
  std::thread writer([&] {
    while (!reading) std::this_thread::yield();  // overlap with the reader, however loaded
    for (int i = 0; i < 2000; ++i) {
      auto other = store.add("arn:task/w", "arn:role/r", RoleType::kTask, creds("W"));
      store.revoke(other);
    }
    stop = true;
  });
  int reads = 0;
  do {
    ASSERT_TRUE(store.get(id));
    ++reads;
    reading = true;
  } while (!stop);
  writer.join();
  EXPECT_GT(reads, 0);
  EXPECT_EQ(store.size(), 1u);
}

class FakeProvider : public ecs::aws::CredentialsProvider {
 public:
  ecs::Result<ecs::aws::Credentials> credentials() override {
    if (fail_) return ecs::fail(ecs::ErrorCode::kUnavailable, "no credentials anywhere");
    return creds("HOST");
  }
  bool fail_ = false;
};

TEST(CredentialsSourceTest, HostSourceServesTheHostCredentialsAndWrapsErrors) {
  auto provider = std::make_unique<FakeProvider>();
  auto* raw = provider.get();
  ecs::credentials::HostCredentialsSource source(std::move(provider));
  auto ok = source.credentialsFor("arn:aws:iam::1:role/app");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->access_key_id, "HOST");
  raw->fail_ = true;
  auto bad = source.credentialsFor("arn:aws:iam::1:role/app");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("arn:aws:iam::1:role/app"), std::string::npos);
  EXPECT_NE(bad.error().message.find("no credentials anywhere"), std::string::npos);
}

}  // namespace
