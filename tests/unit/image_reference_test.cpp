#include "agent/images/image_reference.h"

#include <gtest/gtest.h>

#include <string>

#include "agent/images/digest.h"

namespace ecs::images {
namespace {

const std::string kHex = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
const std::string kDigest = "sha256:" + kHex;

struct Normalised {
  std::string input;
  std::string domain;
  std::string repository;
  std::string tag;
  std::string digest;
  std::string str;
};

// Docker's own table (distribution/reference normalize_test.go), plus our defaults.
class NormalisationTest : public testing::TestWithParam<Normalised> {};

TEST_P(NormalisationTest, MatchesDocker) {
  const Normalised& want = GetParam();
  auto ref = ImageReference::parse(want.input);
  ASSERT_TRUE(ref) << want.input << ": " << ref.error().message;
  EXPECT_EQ(ref->domain, want.domain) << want.input;
  EXPECT_EQ(ref->repository, want.repository) << want.input;
  EXPECT_EQ(ref->tag, want.tag) << want.input;
  EXPECT_EQ(ref->digest, want.digest) << want.input;
  EXPECT_EQ(ref->str(), want.str) << want.input;
  // Normalisation is idempotent: the full name parses to itself.
  auto again = ImageReference::parse(ref->str());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->str(), ref->str());
}

INSTANTIATE_TEST_SUITE_P(
    DockerTable, NormalisationTest,
    testing::Values(
        Normalised{"busybox", "docker.io", "library/busybox", "latest", "",
                   "docker.io/library/busybox:latest"},
        Normalised{"redis:7", "docker.io", "library/redis", "7", "", "docker.io/library/redis:7"},
        Normalised{"docker.io/library/redis:latest", "docker.io", "library/redis", "latest", "",
                   "docker.io/library/redis:latest"},
        Normalised{"docker.io/foo", "docker.io", "library/foo", "latest", "",
                   "docker.io/library/foo:latest"},
        Normalised{"index.docker.io/debian", "docker.io", "library/debian", "latest", "",
                   "docker.io/library/debian:latest"},
        Normalised{"index.docker.io/docker/docker", "docker.io", "docker/docker", "latest", "",
                   "docker.io/docker/docker:latest"},
        Normalised{"fooo/bar", "docker.io", "fooo/bar", "latest", "", "docker.io/fooo/bar:latest"},
        Normalised{"library/foo/bar", "docker.io", "library/foo/bar", "latest", "",
                   "docker.io/library/foo/bar:latest"},
        Normalised{"store/foo/bar", "docker.io", "store/foo/bar", "latest", "",
                   "docker.io/store/foo/bar:latest"},
        Normalised{"test_com/foo", "docker.io", "test_com/foo", "latest", "",
                   "docker.io/test_com/foo:latest"},
        Normalised{"ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", "",
                   "docker.io/library/ubuntu-12.04-base:latest"},
        Normalised{"test.com/foo", "test.com", "foo", "latest", "", "test.com/foo:latest"},
        Normalised{"test.com:8080/foo", "test.com:8080", "foo", "latest", "",
                   "test.com:8080/foo:latest"},
        Normalised{"test-com:8080/foo", "test-com:8080", "foo", "latest", "",
                   "test-com:8080/foo:latest"},
        Normalised{"xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", "",
                   "xn--n3h.com:18080/foo:latest"},
        Normalised{"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest"},
        Normalised{"localhost:5000/foo/bar:1.0", "localhost:5000", "foo/bar", "1.0", "",
                   "localhost:5000/foo/bar:1.0"},
        Normalised{"127.0.0.1:5000/test/busybox:oci", "127.0.0.1:5000", "test/busybox", "oci", "",
                   "127.0.0.1:5000/test/busybox:oci"},
        Normalised{"[::1]:5000/app", "[::1]:5000", "app", "latest", "", "[::1]:5000/app:latest"},
        Normalised{"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:v2",
                   "123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/app", "v2", "",
                   "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:v2"},
        // Without a '/', "localhost:5000" is Docker Hub's "localhost" at tag "5000".
        Normalised{"localhost:5000", "docker.io", "library/localhost", "5000", "",
                   "docker.io/library/localhost:5000"},
        Normalised{"192.168.0.1", "docker.io", "library/192.168.0.1", "latest", "",
                   "docker.io/library/192.168.0.1:latest"},
        Normalised{"dock__er/d---o.c_k-er", "docker.io", "dock__er/d---o.c_k-er", "latest", "",
                   "docker.io/dock__er/d---o.c_k-er:latest"},
        // Tags may be upper case; only the repository must be lower case.
        Normalised{"busybox:LATEST_1.x-y", "docker.io", "library/busybox", "LATEST_1.x-y", "",
                   "docker.io/library/busybox:LATEST_1.x-y"},
        Normalised{"redis@" + kDigest, "docker.io", "library/redis", "", kDigest,
                   "docker.io/library/redis@" + kDigest},
        Normalised{"busybox:latest@" + kDigest, "docker.io", "library/busybox", "latest", kDigest,
                   "docker.io/library/busybox:latest@" + kDigest},
        Normalised{"host:5000/a/b:t@" + kDigest, "host:5000", "a/b", "t", kDigest,
                   "host:5000/a/b:t@" + kDigest},
        // A 64-hex repository is allowed once a domain makes clear it is not an image ID.
        Normalised{"docker.io/" + kHex, "docker.io", "library/" + kHex, "latest", "",
                   "docker.io/library/" + kHex + ":latest"}));

TEST(ImageReferenceTest, Accessors) {
  auto hub = ImageReference::parse("busybox");
  ASSERT_TRUE(hub);
  EXPECT_TRUE(hub->isDockerHub());
  EXPECT_EQ(hub->registryHost(), "registry-1.docker.io");
  EXPECT_EQ(hub->name(), "docker.io/library/busybox");
  EXPECT_EQ(hub->manifestReference(), "latest");

  auto local = ImageReference::parse("127.0.0.1:5000/app:1@" + kDigest);
  ASSERT_TRUE(local);
  EXPECT_FALSE(local->isDockerHub());
  EXPECT_EQ(local->registryHost(), "127.0.0.1:5000");
  EXPECT_EQ(local->name(), "127.0.0.1:5000/app");
  EXPECT_EQ(local->manifestReference(), kDigest);  // the digest wins over the tag
}

TEST(ImageReferenceTest, RejectsMalformedReferences) {
  struct Case {
    std::string input;
    std::string fault;  // part of the message
  };
  const std::string long_name(256, 'a');
  for (const Case& c : std::initializer_list<Case>{
           {"", "empty"},
           {kHex, "image ID"},
           {"https://github.com/docker/docker", "registry \"https:\""},
           {"docker/Docker", "must be lowercase"},
           {"docker.io/docker/Docker", "must be lowercase"},
           {"Busybox", "must be lowercase"},
           {"-docker", "path component \"-docker\""},
           {"-docker/docker", "path component"},
           {"docker-/docker", "path component"},
           {"-docker.io/docker/docker", "registry \"-docker.io\""},
           {"docker///docker", "path component \"\""},
           {"docker.io/docker///docker", "path component"},
           {"____/____", "path component"},
           {"_docker/_docker", "path component"},
           {"dock..er/docker", "registry \"dock..er\""},
           {"dock_.er/docker", "registry \"dock_.er\""},
           {"dock-.er/docker", "registry \"dock-.er\""},
           {"dock___er/docker", "path component"},
           {"docker/", "path component \"\""},
           {"example.com/", "missing repository"},
           {"busybox:", "tag \"\""},
           {"busybox:-dash", "tag \"-dash\""},
           {"busybox:a+b", "tag \"a+b\""},
           {"busybox:" + std::string(129, 't'), "tag"},
           {":tag", "missing repository"},
           {"busybox@", "digest \"\""},
           {"busybox@sha256", "algorithm:hex"},
           {"busybox@sha256:abc", "64 lowercase hex"},
           {"busybox@sha256:" + std::string(64, 'A'), "64 lowercase hex"},
           {"busybox@sha256:" + std::string(63, 'a') + "g", "64 lowercase hex"},
           {"busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "unsupported algorithm \"md5\""},
           {"a@" + kDigest + "@" + kDigest, "digest"},
           {"exa_mple.com:80/app", "registry \"exa_mple.com:80\""},
           {"example.com:/app", "registry \"example.com:\""},
           {"example.com:80x/app", "registry"},
           {"-example.com/app", "registry \"-example.com\""},
           {"example..com/app", "registry"},
           {"[::1/app", "registry"},
           {"[zz::1]:5000/app", "registry"},
           {long_name, "longer than 255"},
       }) {
    auto ref = ImageReference::parse(c.input);
    ASSERT_FALSE(ref) << "\"" << c.input << "\" parsed as " << ref->str();
    EXPECT_EQ(ref.error().code, ErrorCode::kInvalidArgument) << c.input;
    EXPECT_NE(ref.error().message.find(c.fault), std::string::npos)
        << "\"" << c.input << "\": " << ref.error().message;
    // Every message quotes the offending input in full.
    EXPECT_NE(ref.error().message.find("\"" + c.input + "\""), std::string::npos)
        << ref.error().message;
  }
}

TEST(ImageReferenceTest, AcceptsLongestValidNames) {
  // 255 characters including "docker.io/library/" is the limit.
  std::string name(255 - std::string("docker.io/library/").size(), 'a');
  EXPECT_TRUE(ImageReference::parse(name));
  EXPECT_FALSE(ImageReference::parse(name + "a"));
  EXPECT_TRUE(ImageReference::parse("busybox:" + std::string(128, 't')));
}

TEST(DigestTest, ValidatesDigests) {
  EXPECT_TRUE(validateDigest(kDigest));
  EXPECT_TRUE(validateDigest("sha512:" + std::string(128, 'f')));
  EXPECT_TRUE(validateDigest("sha384:" + std::string(96, '0')));
  EXPECT_FALSE(validateDigest("sha512:" + std::string(64, 'f')));
  EXPECT_FALSE(validateDigest("SHA256:" + kHex));
  EXPECT_FALSE(validateDigest(kHex));
  EXPECT_FALSE(validateDigest("sha256:../../etc/passwd"));

  EXPECT_TRUE(isSha256Digest(kDigest));
  EXPECT_FALSE(isSha256Digest("sha512:" + std::string(128, 'f')));
  EXPECT_FALSE(isSha256Digest("sha256:" + std::string(64, 'F')));
}

TEST(DigestTest, ComputesSha256) {
  EXPECT_EQ(sha256Digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 streaming;
  streaming.update("a");
  streaming.update("");
  streaming.update("bc");
  EXPECT_EQ(streaming.digest(), sha256Digest("abc"));
  EXPECT_EQ(digestLike(kDigest, "abc"), sha256Digest("abc"));
  EXPECT_EQ(
      digestLike("sha512:x", "abc"),
      "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a8"
      "36ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(digestLike("md5:x", "abc"), "");
}

}  // namespace
}  // namespace ecs::images
