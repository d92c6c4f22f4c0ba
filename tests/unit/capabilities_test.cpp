// Capability names (libcap-validated, normalised to CAP_X) and Docker's cap-add / cap-drop rules.
#include "agent/runtime/capabilities.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "agent/runtime/oci_spec.h"

namespace ecs::runtime {
namespace {

using Strings = std::vector<std::string>;

bool has(const Strings& caps, const std::string& cap) {
  return std::ranges::find(caps, cap) != caps.end();
}

TEST(NormalizeCapability, AcceptsEverySpelling) {
  for (const char* name : {"net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin"}) {
    auto cap = normalizeCapability(name);
    ASSERT_TRUE(cap) << name;
    EXPECT_EQ(*cap, "CAP_NET_ADMIN");
  }
  EXPECT_EQ(*normalizeCapability("all"), "ALL");
}

TEST(NormalizeCapability, RejectsUnknownNames) {
  for (const char* name : {"NET_ADMINS", "CAP_", "", "12", "CAP_12"}) {
    auto cap = normalizeCapability(name);
    ASSERT_FALSE(cap) << name;
    EXPECT_EQ(cap.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_EQ(normalizeCapability("bogus").error().message, "unknown capability \"bogus\"");
}

TEST(AllCapabilities, AreNamedAndIncludeTheDefaults) {
  const auto& all = allCapabilities();
  EXPECT_GE(all.size(), defaultCapabilities().size());
  for (const auto& cap : all) EXPECT_TRUE(cap.starts_with("CAP_")) << cap;
  // The agent runs as root with these; a container may be given them.
  for (const auto& cap : defaultCapabilities()) EXPECT_TRUE(has(all, cap)) << cap;
}

TEST(ApplyCapabilityChanges, NothingToChangeKeepsTheBase) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {}, {}, false);
  ASSERT_TRUE(caps);
  EXPECT_EQ(*caps, defaultCapabilities());
}

TEST(ApplyCapabilityChanges, DropsThenAdds) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {"NET_ADMIN", "CAP_NET_ADMIN"},
                                     {"mknod", "CAP_NET_RAW"}, false);
  ASSERT_TRUE(caps) << caps.error().message;
  EXPECT_TRUE(has(*caps, "CAP_NET_ADMIN"));
  EXPECT_FALSE(has(*caps, "CAP_MKNOD"));
  EXPECT_FALSE(has(*caps, "CAP_NET_RAW"));
  EXPECT_EQ(std::ranges::count(*caps, "CAP_NET_ADMIN"), 1);
  EXPECT_EQ(caps->size(), defaultCapabilities().size() - 1);
}

TEST(ApplyCapabilityChanges, AllInAddGivesEverythingButTheDrops) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {"ALL"}, {"SYS_ADMIN"}, false);
  ASSERT_TRUE(caps);
  EXPECT_EQ(caps->size(), allCapabilities().size() - 1);
  EXPECT_FALSE(has(*caps, "CAP_SYS_ADMIN"));
}

TEST(ApplyCapabilityChanges, AllInDropKeepsOnlyTheAdds) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {"chown"}, {"all"}, false);
  ASSERT_TRUE(caps);
  EXPECT_EQ(*caps, Strings{"CAP_CHOWN"});
}

TEST(ApplyCapabilityChanges, PrivilegedGetsEverything) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {}, {"ALL"}, true);
  ASSERT_TRUE(caps);
  EXPECT_EQ(*caps, allCapabilities());
}

TEST(ApplyCapabilityChanges, UnknownNamesSayWhichList) {
  auto caps = applyCapabilityChanges(defaultCapabilities(), {"NET_ADMIN", "FLY"}, {}, false);
  ASSERT_FALSE(caps);
  EXPECT_EQ(caps.error().message, "capabilities.add: unknown capability \"FLY\"");
  caps = applyCapabilityChanges(defaultCapabilities(), {}, {"SWIM"}, false);
  ASSERT_FALSE(caps);
  EXPECT_EQ(caps.error().message, "capabilities.drop: unknown capability \"SWIM\"");
}

}  // namespace
}  // namespace ecs::runtime
