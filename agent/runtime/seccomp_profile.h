// The default seccomp profile of a container, equivalent to Docker's: every syscall fails with
// EPERM except an allow-list, widened by the capabilities the container holds (CAP_SYS_ADMIN
// allows mount, unshare, setns and namespace flags to clone; CAP_SYS_PTRACE allows kcmp and
// pidfd_getfd; ...). Syscall names are checked with libseccomp, and names it does not know are
// left out, as runc does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ecs::runtime {

struct SeccompArg {
  uint32_t index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;  // "SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ", ...
};

struct SeccompRule {
  std::vector<std::string> names;
  std::string action = "SCMP_ACT_ALLOW";
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;
};

struct SeccompProfile {
  std::string default_action = "SCMP_ACT_ERRNO";
  uint32_t default_errno_ret = 1;  // EPERM
  std::vector<std::string> architectures;
  std::vector<SeccompRule> syscalls;

  // Whether some rule allows `name` without conditions on its arguments.
  bool allows(const std::string& name) const;
};

struct KernelVersion {
  int major = 0;
  int minor = 0;
  auto operator<=>(const KernelVersion&) const = default;
};

// The host the profile is for: uname's machine ("x86_64", "aarch64", ...) and kernel release.
struct SeccompHost {
  std::string machine;
  KernelVersion kernel;
};

SeccompHost currentSeccompHost();

// Docker's default profile for a container whose (bounding) capability set is `capabilities`
// ("CAP_SYS_ADMIN", ...), for `host`.
SeccompProfile defaultSeccompProfile(const std::vector<std::string>& capabilities,
                                     const SeccompHost& host = currentSeccompHost());

// The profile as the runtime spec's linux.seccomp object (JSON).
std::string seccompProfileJson(const SeccompProfile& profile);

}  // namespace ecs::runtime
