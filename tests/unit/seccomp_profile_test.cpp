// The default seccomp profile: Docker's shape (EPERM by default, an allow-list, per-architecture
// and per-capability additions, argument filters), names known to libseccomp only.
#include "agent/runtime/seccomp_profile.h"

#include <gtest/gtest.h>
#include <seccomp.h>

#include <algorithm>
#include <boost/json.hpp>

#include "agent/runtime/oci_spec.h"

namespace ecs::runtime {
namespace {

namespace json = boost::json;
using Strings = std::vector<std::string>;

const SeccompHost kX86{"x86_64", {6, 1}};
const SeccompHost kArm{"aarch64", {6, 1}};

SeccompProfile profileWith(Strings extra_caps, const SeccompHost& host = kX86) {
  Strings caps = defaultCapabilities();
  caps.insert(caps.end(), extra_caps.begin(), extra_caps.end());
  return defaultSeccompProfile(caps, host);
}

const SeccompRule* ruleFor(const SeccompProfile& profile, const std::string& name) {
  for (const auto& rule : profile.syscalls) {
    if (std::ranges::find(rule.names, name) != rule.names.end()) return &rule;
  }
  return nullptr;
}

TEST(DefaultSeccompProfile, DeniesWithEpermByDefault) {
  const auto profile = profileWith({});
  EXPECT_EQ(profile.default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(profile.default_errno_ret, 1u);
}

TEST(DefaultSeccompProfile, CoversTheHostsCompatArchitectures) {
  EXPECT_EQ(profileWith({}).architectures,
            (Strings{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  EXPECT_EQ(profileWith({}, kArm).architectures, (Strings{"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}));
}

TEST(DefaultSeccompProfile, AllowsWhatEveryProgramNeeds) {
  const auto profile = profileWith({});
  for (const char* name : {"read", "write", "openat", "close", "mmap", "execve", "exit_group",
                           "futex", "clock_gettime", "epoll_wait", "accept4", "chown32",
                           "rt_sigaction", "getrandom", "io_uring_setup", "chroot"}) {
    EXPECT_TRUE(profile.allows(name)) << name;
  }
}

TEST(DefaultSeccompProfile, DeniesDangerousSyscalls) {
  const auto profile = profileWith({});
  for (const char* name : {"kexec_load",
                           "kexec_file_load",
                           "open_by_handle_at",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "mount",
                           "umount2",
                           "unshare",
                           "setns",
                           "reboot",
                           "swapon",
                           "bpf",
                           "perf_event_open",
                           "add_key",
                           "keyctl",
                           "request_key",
                           "userfaultfd",
                           "iopl",
                           "acct",
                           "settimeofday",
                           "clock_settime",
                           "kcmp",
                           "pidfd_getfd",
                           "syslog",
                           "vhangup",
                           "mbind",
                           "sethostname",
                           "quotactl",
                           "lookup_dcookie",
                           "clone3"}) {
    EXPECT_FALSE(profile.allows(name)) << name;
  }
}

TEST(DefaultSeccompProfile, CapabilitiesWidenTheAllowList) {
  struct Case {
    const char* cap;
    Strings names;
  };
  const std::vector<Case> cases = {
      {"CAP_SYS_ADMIN", {"mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf"}},
      {"CAP_SYS_PTRACE", {"ptrace", "kcmp", "pidfd_getfd", "process_vm_readv"}},
      {"CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}},
      {"CAP_SYS_TIME", {"settimeofday", "clock_settime"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_NICE", {"mbind", "set_mempolicy", "get_mempolicy"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
      {"CAP_BPF", {"bpf"}},
      {"CAP_PERFMON", {"perf_event_open"}},
  };
  for (const auto& c : cases) {
    const auto profile = profileWith({c.cap});
    for (const auto& name : c.names) EXPECT_TRUE(profile.allows(name)) << c.cap << " " << name;
  }
  // A capability outside the default set is what opens them, not anything else.
  EXPECT_FALSE(profileWith({"CAP_NET_ADMIN"}).allows("mount"));
}

TEST(DefaultSeccompProfile, DroppingChrootDropsChroot) {
  Strings caps = defaultCapabilities();
  std::erase(caps, "CAP_SYS_CHROOT");
  EXPECT_FALSE(defaultSeccompProfile(caps, kX86).allows("chroot"));
}

TEST(DefaultSeccompProfile, CloneCannotCreateNamespacesWithoutSysAdmin) {
  const auto profile = profileWith({});
  EXPECT_FALSE(profile.allows("clone"));
  const auto* clone = ruleFor(profile, "clone");
  ASSERT_NE(clone, nullptr);
  ASSERT_EQ(clone->args.size(), 1u);
  EXPECT_EQ(clone->args[0].index, 0u);
  EXPECT_EQ(clone->args[0].op, "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(clone->args[0].value, 0x7E020000u);  // CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}
  EXPECT_EQ(clone->args[0].value_two, 0u);

  const auto* clone3 = ruleFor(profile, "clone3");
  ASSERT_NE(clone3, nullptr);
  EXPECT_EQ(clone3->action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(clone3->errno_ret, 38u);  // ENOSYS: libc falls back to clone

  const auto admin = profileWith({"CAP_SYS_ADMIN"});
  EXPECT_TRUE(admin.allows("clone"));
  EXPECT_TRUE(admin.allows("clone3"));
  for (const auto& rule : admin.syscalls) EXPECT_EQ(rule.action, "SCMP_ACT_ALLOW");
}

TEST(DefaultSeccompProfile, SocketAndPersonalityAreFilteredByArgument) {
  const auto profile = profileWith({});
  EXPECT_FALSE(profile.allows("socket"));
  const auto* socket = ruleFor(profile, "socket");
  ASSERT_NE(socket, nullptr);
  ASSERT_EQ(socket->args.size(), 1u);
  EXPECT_EQ(socket->args[0].op, "SCMP_CMP_NE");
  EXPECT_EQ(socket->args[0].value, 40u);  // AF_VSOCK

  std::vector<uint64_t> personas;
  for (const auto& rule : profile.syscalls) {
    if (rule.names == Strings{"personality"}) {
      ASSERT_EQ(rule.args.size(), 1u);
      EXPECT_EQ(rule.args[0].op, "SCMP_CMP_EQ");
      personas.push_back(rule.args[0].value);
    }
  }
  EXPECT_EQ(personas, (std::vector<uint64_t>{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}));
}

TEST(DefaultSeccompProfile, PtraceNeedsTheCapabilityOnlyOnOldKernels) {
  EXPECT_TRUE(profileWith({}).allows("ptrace"));  // 4.8+: seccomp cannot be bypassed with it
  EXPECT_FALSE(profileWith({}).allows("kcmp"));
  const SeccompHost old{"x86_64", {4, 4}};
  EXPECT_FALSE(profileWith({}, old).allows("ptrace"));
  EXPECT_FALSE(profileWith({}, old).allows("process_vm_writev"));
  EXPECT_TRUE(profileWith({"CAP_SYS_PTRACE"}, old).allows("ptrace"));
}

TEST(DefaultSeccompProfile, ArchitectureSpecificSyscalls) {
  EXPECT_TRUE(profileWith({}).allows("arch_prctl"));
  EXPECT_TRUE(profileWith({}).allows("modify_ldt"));
  EXPECT_FALSE(profileWith({}).allows("set_tls"));
  EXPECT_FALSE(profileWith({}, kArm).allows("arch_prctl"));
  EXPECT_TRUE(profileWith({}, kArm).allows("set_tls"));
  EXPECT_TRUE(profileWith({}, kArm).allows("cacheflush"));
}

TEST(DefaultSeccompProfile, EveryNameIsKnownToLibseccomp) {
  const auto profile = profileWith({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_NICE"});
  size_t names = 0;
  for (const auto& rule : profile.syscalls) {
    EXPECT_FALSE(rule.names.empty());
    for (const auto& name : rule.names) {
      ++names;
      EXPECT_NE(seccomp_syscall_resolve_name(name.c_str()), __NR_SCMP_ERROR) << name;
    }
  }
  EXPECT_GT(names, 350u);
}

TEST(SeccompProfileJson, IsTheRuntimeSpecObject) {
  const auto value = json::parse(seccompProfileJson(profileWith({})));
  const auto& seccomp = value.as_object();
  EXPECT_EQ(seccomp.at("defaultAction"), "SCMP_ACT_ERRNO");
  EXPECT_EQ(seccomp.at("defaultErrnoRet"), 1);
  EXPECT_EQ(seccomp.at("architectures").as_array().size(), 3u);
  bool saw_clone = false;
  for (const auto& rule : seccomp.at("syscalls").as_array()) {
    const auto& r = rule.as_object();
    EXPECT_FALSE(r.at("names").as_array().empty());
    EXPECT_TRUE(r.at("action").is_string());
    if (r.at("names").as_array()[0] == "clone") {
      saw_clone = true;
      const auto& arg = r.at("args").as_array()[0].as_object();
      EXPECT_EQ(arg.at("index"), 0);
      EXPECT_EQ(arg.at("value"), 0x7E020000);
      EXPECT_EQ(arg.at("valueTwo"), 0);
      EXPECT_EQ(arg.at("op"), "SCMP_CMP_MASKED_EQ");
    }
    if (r.at("names").as_array()[0] == "clone3") {
      EXPECT_EQ(r.at("errnoRet"), 38);
    }
  }
  EXPECT_TRUE(saw_clone);
}

TEST(CurrentSeccompHost, ReadsUname) {
  const auto host = currentSeccompHost();
  EXPECT_FALSE(host.machine.empty());
  EXPECT_GE(host.kernel.major, 3);
}

}  // namespace
}  // namespace ecs::runtime
