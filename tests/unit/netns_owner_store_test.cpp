// The stores' housekeeping side (OwnerStore) opened from a path alone: nothing is created where
// there is no store, and an existing store can be swept and emptied without its subnet or range.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "netns/host_port_allocator.h"
#include "netns/ipam.h"

namespace ecs::netns {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Above the kernel's largest pid_max (2^22): no process ever has it, so its owner is dead.
constexpr int kNeverAPid = 4194305;

class OwnerStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/netns-owner-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

TEST_F(OwnerStoreTest, AMissingStoreIsNullAndStaysMissing) {
  const fs::path state_dir = dir_ / "netns";
  EXPECT_EQ(openIpamOwners((state_dir / "ipam.json").string()), nullptr);
  EXPECT_EQ(openHostPortOwners((state_dir / "host_ports.json").string()), nullptr);
  EXPECT_FALSE(fs::exists(state_dir));
}

TEST_F(OwnerStoreTest, AddressStoreIsSweptAndReleasedWithoutItsSubnet) {
  const std::string path = (dir_ / "ipam.json").string();
  {
    auto ipam = Ipam::open({.state_path = path, .subnet = "10.9.0.0/24"});
    ASSERT_TRUE(ipam) << ipam.error().message;
    ASSERT_TRUE((*ipam)->allocate("live-task", "app"));
  }
  // Add a task of an agent that is gone, the way its file entry looks.
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  const std::string dead = fmt::format(
      R"("dead-task":{{"pid":{},"start_time":1,"addresses":{{"app":"10.9.0.9"}}}},)", kNeverAPid);
  content.insert(content.find("\"live-task\""), dead);
  std::ofstream(path) << content;

  auto store = openIpamOwners(path);
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->owners(), UnorderedElementsAre("dead-task", "live-task"));
  EXPECT_THAT(store->sweepDead(), ElementsAre("dead-task"));
  EXPECT_THAT(store->owners(), ElementsAre("live-task"));
  store->release("live-task");
  EXPECT_THAT(store->owners(), IsEmpty());
}

TEST_F(OwnerStoreTest, HostPortStoreIsReleasedWithoutItsRange) {
  const std::string path = (dir_ / "host_ports.json").string();
  {
    auto ports = HostPortAllocator::open({.state_path = path,
                                          .dynamic_range = {30000, 30099},
                                          .port_in_use = [](Protocol, int) { return false; }});
    ASSERT_TRUE(ports) << ports.error().message;
    ASSERT_TRUE((*ports)->allocate("task-a", {PortRequest{}}));
    ASSERT_TRUE((*ports)->allocate("task-b", {PortRequest{}}));
  }
  auto store = openHostPortOwners(path);
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->owners(), UnorderedElementsAre("task-a", "task-b"));
  EXPECT_THAT(store->sweepDead(), IsEmpty());  // this process holds them, and it is alive
  store->release("task-a");
  EXPECT_THAT(store->owners(), ElementsAre("task-b"));
}

}  // namespace
}  // namespace ecs::netns
