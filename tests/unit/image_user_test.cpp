// Image user resolution: runc's (Docker's) rules over /etc/passwd and /etc/group text, and
// reading them from a rootfs without following links out of it.
#include "agent/engine/image_user.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace ecs::engine {
namespace {

namespace fs = std::filesystem;
using Gids = std::vector<uint32_t>;

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "app:x:1000:1001::/home/app:/bin/sh\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "web:x:33:33::/var/www:/bin/sh\r\n";

constexpr const char* kGroup =
    "root:x:0:\n"
    "wheel:x:10:root\n"
    "app:x:1001:\n"
    "staff:x:50:app, web\n"
    "docker:x:999:app\n"
    "www-data:x:33:\n";

UserIds resolve(std::string_view user) {
  auto ids = resolveImageUser(kPasswd, kGroup, user);
  EXPECT_TRUE(ids) << user << ": " << ids.error().message;
  return ids ? *ids : UserIds{};
}

TEST(ResolveImageUser, EmptyIsRootWithItsGroups) {
  const auto ids = resolve("");
  EXPECT_EQ(ids.uid, 0u);
  EXPECT_EQ(ids.gid, 0u);
  EXPECT_EQ(ids.additional_gids, Gids{10});
}

TEST(ResolveImageUser, NameTakesPrimaryGidAndMemberships) {
  const auto ids = resolve("app");
  EXPECT_EQ(ids.uid, 1000u);
  EXPECT_EQ(ids.gid, 1001u);
  EXPECT_EQ(ids.additional_gids, (Gids{50, 999}));
}

TEST(ResolveImageUser, NumericUidIsLookedUpForItsGroups) {
  const auto ids = resolve("1000");
  EXPECT_EQ(ids.uid, 1000u);
  EXPECT_EQ(ids.gid, 1001u);
  EXPECT_EQ(ids.additional_gids, (Gids{50, 999}));
}

TEST(ResolveImageUser, NumericUidWithoutEntryGetsGidZero) {
  const auto ids = resolve("4242");
  EXPECT_EQ(ids.uid, 4242u);
  EXPECT_EQ(ids.gid, 0u);
  EXPECT_TRUE(ids.additional_gids.empty());
}

TEST(ResolveImageUser, ExplicitGroupWinsAndDropsMemberships) {
  auto ids = resolve("app:staff");
  EXPECT_EQ(ids.uid, 1000u);
  EXPECT_EQ(ids.gid, 50u);
  EXPECT_TRUE(ids.additional_gids.empty());

  ids = resolve("1000:999");
  EXPECT_EQ(ids.gid, 999u);
  ids = resolve("4242:4343");  // neither in the files: used as is
  EXPECT_EQ(ids.uid, 4242u);
  EXPECT_EQ(ids.gid, 4343u);
  ids = resolve("web:root");
  EXPECT_EQ(ids.uid, 33u);
  EXPECT_EQ(ids.gid, 0u);
}

TEST(ResolveImageUser, CarriageReturnsAndSpacesInMemberListsAreTolerated) {
  const auto ids = resolve("web");
  EXPECT_EQ(ids.uid, 33u);
  EXPECT_EQ(ids.gid, 33u);
  EXPECT_EQ(ids.additional_gids, Gids{50});
}

TEST(ResolveImageUser, UnknownNamesAreErrorsNamingTheFile) {
  auto ids = resolveImageUser(kPasswd, kGroup, "nobody2");
  ASSERT_FALSE(ids);
  EXPECT_EQ(ids.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ids.error().message, "user \"nobody2\" not found in the image's /etc/passwd");

  ids = resolveImageUser(kPasswd, kGroup, "app:nogroup");
  ASSERT_FALSE(ids);
  EXPECT_EQ(ids.error().message, "group \"nogroup\" not found in the image's /etc/group");

  ids = resolveImageUser(kPasswd, kGroup, "broken");  // its uid does not parse: no entry
  EXPECT_FALSE(ids);
  ids = resolveImageUser(kPasswd, kGroup, "app:");
  EXPECT_FALSE(ids);
}

TEST(ResolveImageUser, WithoutFilesOnlyNumericAndRootWork) {
  auto ids = resolveImageUser("", "", "1000:1000");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->uid, 1000u);
  EXPECT_EQ(ids->gid, 1000u);
  ids = resolveImageUser("", "", "root");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->uid, 0u);
  ids = resolveImageUser("", "", "");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->uid, 0u);
  EXPECT_FALSE(resolveImageUser("", "", "app"));
}

class RootfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/image_user_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "etc");
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  fs::path root_;
};

TEST_F(RootfsTest, ReadsTheImagesFiles) {
  write(root_ / "etc/passwd", kPasswd);
  write(root_ / "etc/group", kGroup);
  auto ids = resolveUserInRootfs(root_.string(), "app");
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(ids->uid, 1000u);
  EXPECT_EQ(ids->additional_gids, (Gids{50, 999}));
}

TEST_F(RootfsTest, MissingFilesLeaveNumericUsers) {
  auto ids = resolveUserInRootfs(root_.string(), "123:456");
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(ids->uid, 123u);
  EXPECT_EQ(ids->gid, 456u);
  ids = resolveUserInRootfs(root_.string(), "nobody2");
  ASSERT_FALSE(ids);
  EXPECT_EQ(ids.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(RootfsTest, AbsoluteSymlinksResolveInsideTheRootfs) {
  // /etc/passwd -> /real/passwd must mean <rootfs>/real/passwd, never the host's file.
  fs::create_directories(root_ / "real");
  write(root_ / "real/passwd", "svc:x:700:700::/:/bin/sh\n");
  fs::create_symlink("/real/passwd", root_ / "etc/passwd");
  // Escaping, this would read the host's /etc/passwd, whose "daemon" line also parses as a group.
  fs::create_symlink("/../../../../etc/passwd", root_ / "etc/group");
  auto ids = resolveUserInRootfs(root_.string(), "svc");
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(ids->uid, 700u);
  EXPECT_EQ(ids->gid, 700u);
  EXPECT_FALSE(resolveUserInRootfs(root_.string(), "root:daemon"));
}

TEST_F(RootfsTest, MissingRootfsIsAnError) {
  auto ids = resolveUserInRootfs((root_ / "absent").string(), "0");
  ASSERT_FALSE(ids);
  EXPECT_EQ(ids.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ecs::engine
