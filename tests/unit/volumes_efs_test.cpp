// EFS mount arguments for both paths the ECS agent uses (efs-utils and plain NFSv4.1), with the
// exact argv, and the configurations a host without efs-utils must refuse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "volumes/efs.h"

namespace ecs::volumes {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

engine::EfsVolumeConfiguration fs1234() {
  engine::EfsVolumeConfiguration efs;
  efs.file_system_id = "fs-1234";
  return efs;
}

EfsMountContext withUtils() {
  EfsMountContext c;
  c.efs_utils = true;
  c.region = "eu-west-1";
  c.dns_suffix = "amazonaws.com";
  return c;
}

EfsMountContext nfsOnly() {
  auto c = withUtils();
  c.efs_utils = false;
  return c;
}

TEST(EfsMountArgumentsTest, EfsUtilsPlainHasNoOptions) {
  auto args = efsMountArguments(fs1234(), withUtils(), "/v/efs/t1/data");
  ASSERT_TRUE(args) << args.error().message;
  EXPECT_THAT(*args, ElementsAre("-t", "efs", "fs-1234:/", "/v/efs/t1/data"));
}

TEST(EfsMountArgumentsTest, EfsUtilsOptionsInTheAgentsOrder) {
  auto efs = fs1234();
  efs.transit_encryption = true;
  efs.transit_encryption_port = 20049;
  efs.iam = true;
  efs.access_point_id = "fsap-0abc";
  auto context = withUtils();
  context.credentials_uri = "/v2/credentials/6f3c";
  auto args = efsMountArguments(efs, context, "/t");
  ASSERT_TRUE(args) << args.error().message;
  EXPECT_THAT(*args, ElementsAre("-t", "efs", "-o",
                                 "tls,tlsport=20049,iam,awscredsuri=/v2/credentials/6f3c,"
                                 "accesspoint=fsap-0abc",
                                 "fs-1234:/", "/t"));
}

TEST(EfsMountArgumentsTest, EfsUtilsRootDirectoryAndTlsOnly) {
  auto efs = fs1234();
  efs.root_directory = "/exports/app";
  efs.transit_encryption = true;
  auto args = efsMountArguments(efs, withUtils(), "/t");
  ASSERT_TRUE(args) << args.error().message;
  EXPECT_THAT(*args, ElementsAre("-t", "efs", "-o", "tls", "fs-1234:/exports/app", "/t"));
}

TEST(EfsMountArgumentsTest, IamWithoutCredentialsUriLeavesTheChainToEfsUtils) {
  auto efs = fs1234();
  efs.transit_encryption = true;
  efs.iam = true;
  auto args = efsMountArguments(efs, withUtils(), "/t");
  ASSERT_TRUE(args) << args.error().message;
  EXPECT_THAT(*args, ElementsAre("-t", "efs", "-o", "tls,iam", "fs-1234:/", "/t"));
}

TEST(EfsMountArgumentsTest, NfsPathUsesTheAgentsOptions) {
  auto efs = fs1234();
  efs.root_directory = "/data";
  auto args = efsMountArguments(efs, nfsOnly(), "/v/efs/t1/data");
  ASSERT_TRUE(args) << args.error().message;
  EXPECT_THAT(*args, ElementsAre("-t", "nfs", "-o",
                                 "addr=fs-1234.efs.eu-west-1.amazonaws.com,nfsvers=4.1,"
                                 "rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport",
                                 "fs-1234.efs.eu-west-1.amazonaws.com:/data", "/v/efs/t1/data"));
}

TEST(EfsMountArgumentsTest, NfsPathDnsSuffix) {
  auto context = nfsOnly();
  context.region = "cn-north-1";
  context.dns_suffix = "amazonaws.com.cn";
  auto args = efsMountArguments(fs1234(), context, "/t");
  ASSERT_TRUE(args);
  EXPECT_EQ((*args)[4], "fs-1234.efs.cn-north-1.amazonaws.com.cn:/");
}

TEST(EfsMountArgumentsTest, TlsOrIamWithoutEfsUtilsFailsSayingWhy) {
  auto tls = fs1234();
  tls.transit_encryption = true;
  auto r = efsMountArguments(tls, nfsOnly(), "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("transit encryption needs amazon-efs-utils"));

  auto iam = tls;
  iam.iam = true;
  r = efsMountArguments(iam, nfsOnly(), "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("amazon-efs-utils"));

  auto ap = tls;
  ap.access_point_id = "fsap-1";
  r = efsMountArguments(ap, nfsOnly(), "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("mount.efs"));
}

TEST(EfsMountArgumentsTest, InvalidCombinationsAreRefused) {
  auto iam = fs1234();
  iam.iam = true;
  auto r = efsMountArguments(iam, withUtils(), "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("requires transitEncryption"));

  auto ap = fs1234();
  ap.transit_encryption = true;
  ap.access_point_id = "fsap-1";
  ap.root_directory = "/x";
  r = efsMountArguments(ap, withUtils(), "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("rootDirectory"));

  EXPECT_FALSE(efsMountArguments(engine::EfsVolumeConfiguration{}, withUtils(), "/t"));
  auto relative = fs1234();
  relative.root_directory = "data";
  EXPECT_FALSE(efsMountArguments(relative, withUtils(), "/t"));

  auto no_region = nfsOnly();
  no_region.region.clear();
  r = efsMountArguments(fs1234(), no_region, "/t");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("region"));
}

TEST(EfsUtilsInstalledTest, LooksForAnExecutableMountEfs) {
  char tmpl[] = "/tmp/efs-utils-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::filesystem::path dir(tmpl);
  EXPECT_FALSE(efsUtilsInstalled({dir.string()}));
  std::ofstream(dir / "mount.efs") << "#!/bin/sh\n";
  EXPECT_FALSE(efsUtilsInstalled({dir.string()}));  // not executable
  ::chmod((dir / "mount.efs").c_str(), 0755);
  EXPECT_TRUE(efsUtilsInstalled({"/nonexistent", dir.string()}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ecs::volumes
