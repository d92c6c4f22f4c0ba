#include "agent/runtime/seccomp_profile.h"

#include <seccomp.h>
#include <sys/utsname.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <initializer_list>
#include <string_view>

namespace ecs::runtime {

namespace {

namespace json = boost::json;

using Names = std::initializer_list<const char*>;

// clang-format off
// Allowed for every container. Grouped by what they are for; the 32-bit and time64 variants sit
// next to their 64-bit twins so that a 32-bit binary in the container works too.
constexpr Names kFileSyscalls = {
    "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd", "chmod", "fchmod", "fchmodat",
    "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32", "umask", "open",
    "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "fcntl64",
    "flock", "read", "readv", "pread64", "preadv", "preadv2", "write", "writev", "pwrite64",
    "pwritev", "pwritev2", "lseek", "_llseek", "sendfile", "sendfile64", "splice", "tee",
    "vmsplice", "copy_file_range", "readahead", "fadvise64", "fadvise64_64", "fallocate",
    "truncate", "truncate64", "ftruncate", "ftruncate64", "fsync", "fdatasync", "sync", "syncfs",
    "sync_file_range", "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64",
    "newfstatat", "statx", "statfs", "statfs64", "fstatfs", "fstatfs64", "getdents", "getdents64",
    "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "link", "linkat", "symlink", "symlinkat",
    "readlink", "readlinkat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "utime",
    "utimes", "utimensat", "utimensat_time64", "futimesat", "name_to_handle_at", "getxattr",
    "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr",
    "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "fanotify_mark"};

constexpr Names kEventSyscalls = {
    "ioctl", "pipe", "pipe2", "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6",
    "pselect6_time64", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait",
    "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_uring_setup", "io_uring_enter",
    "io_uring_register"};

constexpr Names kProcessSyscalls = {
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal", "process_mrelease",
    "restart_syscall", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid",
    "setsid", "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid",
    "getegid32", "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
    "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid", "setregid32",
    "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid", "setfsuid32", "setfsgid",
    "setfsgid32", "setgroups", "setgroups32", "capget", "capset", "prctl", "seccomp",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "getrlimit",
    "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "times", "getpriority", "setpriority",
    "ioprio_get", "ioprio_set", "getcpu", "uname", "sysinfo", "getrandom", "futex", "futex_time64",
    "futex_waitv", "set_robust_list", "get_robust_list", "set_tid_address", "set_thread_area",
    "get_thread_area", "rseq", "membarrier"};

constexpr Names kMemorySyscalls = {
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
    "remap_file_pages", "mlock", "mlock2", "mlockall", "munlock", "munlockall", "memfd_create",
    "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect"};

constexpr Names kSignalSyscalls = {
    "rt_sigaction", "rt_sigprocmask", "rt_sigpending", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "sigaltstack",
    "sigprocmask", "sigreturn", "pause", "alarm"};

constexpr Names kTimeSyscalls = {
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
    "clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "adjtimex",
    "clock_adjtime", "clock_adjtime64", "getitimer", "setitimer", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64"};

constexpr Names kSchedulerSyscalls = {
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
    "sched_rr_get_interval_time64"};

constexpr Names kIpcSyscalls = {
    "ipc", "msgget", "msgctl", "msgsnd", "msgrcv", "semget", "semctl", "semop", "semtimedop",
    "semtimedop_time64", "shmget", "shmctl", "shmat", "shmdt", "mq_open", "mq_unlink", "mq_notify",
    "mq_getsetattr", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
    "mq_timedreceive_time64"};

// socket itself is allowed below with a filter on the address family.
constexpr Names kSocketSyscalls = {
    "socketpair", "socketcall", "bind", "listen", "accept", "accept4", "connect", "shutdown",
    "getsockname", "getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg",
    "sendmmsg", "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64"};

// clang-format on

constexpr uint64_t kAfVsock = 40;
constexpr uint64_t kCloneNamespaceFlags =
    0x00020000 /* CLONE_NEWNS */ | 0x02000000 /* CLONE_NEWCGROUP */ |
    0x04000000 /* CLONE_NEWUTS */ | 0x08000000 /* CLONE_NEWIPC */ | 0x10000000 /* CLONE_NEWUSER */ |
    0x20000000 /* CLONE_NEWPID */ | 0x40000000 /* CLONE_NEWNET */;

// A rule and the conditions under which the profile holds it (Docker's includes / excludes).
struct ConditionalRule {
  std::vector<std::string> names;
  std::string action = "SCMP_ACT_ALLOW";
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;
  std::vector<std::string> required_caps;  // all of them
  std::vector<std::string> excluded_caps;  // none of them
  std::vector<std::string> machines;       // one of them; empty: any
  std::vector<std::string> excluded_machines;
  std::optional<KernelVersion> min_kernel;
};

ConditionalRule allowWithCap(const char* cap, Names names) {
  return ConditionalRule{.names = {names.begin(), names.end()}, .required_caps = {cap}};
}

ConditionalRule allowOn(std::vector<std::string> machines, Names names) {
  return ConditionalRule{.names = {names.begin(), names.end()}, .machines = std::move(machines)};
}

ConditionalRule personality(uint64_t persona) {
  return ConditionalRule{.names = {"personality"},
                         .args = {SeccompArg{.index = 0, .value = persona, .op = "SCMP_CMP_EQ"}}};
}

std::vector<ConditionalRule> defaultRules() {
  std::vector<ConditionalRule> rules;
  ConditionalRule everyone;
  for (const Names& group :
       {kFileSyscalls, kEventSyscalls, kProcessSyscalls, kMemorySyscalls, kSignalSyscalls,
        kTimeSyscalls, kSchedulerSyscalls, kIpcSyscalls, kSocketSyscalls}) {
    everyone.names.insert(everyone.names.end(), group.begin(), group.end());
  }
  rules.push_back(std::move(everyone));

  // Since 4.8 seccomp cannot be bypassed with ptrace, so Docker allows it to everyone there.
  rules.push_back(ConditionalRule{.names = {"ptrace", "process_vm_readv", "process_vm_writev"},
                                  .min_kernel = KernelVersion{4, 8}});
  // Any address family but vsock, which reaches the host.
  rules.push_back(
      ConditionalRule{.names = {"socket"},
                      .args = {SeccompArg{.index = 0, .value = kAfVsock, .op = "SCMP_CMP_NE"}}});
  // PER_LINUX, UNAME26, PER_LINUX32, UNAME26|PER_LINUX32, and the query value.
  for (uint64_t persona : {0x0ULL, 0x8ULL, 0x20000ULL, 0x20008ULL, 0xffffffffULL}) {
    rules.push_back(personality(persona));
  }

  rules.push_back(allowOn({"x86_64"}, {"arch_prctl"}));
  rules.push_back(allowOn({"x86_64", "i386", "i686"}, {"modify_ldt"}));
  rules.push_back(allowOn({"aarch64", "armv7l", "armv8l"},
                          {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                           "breakpoint", "cacheflush", "set_tls"}));
  rules.push_back(allowOn({"ppc64le"}, {"sync_file_range2", "swapcontext"}));
  rules.push_back(
      allowOn({"s390x"}, {"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"}));
  rules.push_back(allowOn({"riscv64"}, {"riscv_flush_icache"}));

  rules.push_back(allowWithCap("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}));
  rules.push_back(
      allowWithCap("CAP_SYS_ADMIN",
                   {"bpf",           "clone",         "clone3",      "fanotify_init",   "fsconfig",
                    "fsmount",       "fsopen",        "fspick",      "lookup_dcookie",  "mount",
                    "mount_setattr", "move_mount",    "open_tree",   "perf_event_open", "quotactl",
                    "quotactl_fd",   "setdomainname", "sethostname", "setns",           "syslog",
                    "umount",        "umount2",       "unshare"}));
  // Without CAP_SYS_ADMIN, clone may not create namespaces (its flags are the second argument
  // on s390), and clone3, whose flags seccomp cannot see, says ENOSYS so libc falls back.
  rules.push_back(ConditionalRule{
      .names = {"clone"},
      .args = {SeccompArg{.index = 0, .value = kCloneNamespaceFlags, .op = "SCMP_CMP_MASKED_EQ"}},
      .excluded_caps = {"CAP_SYS_ADMIN"},
      .excluded_machines = {"s390x"}});
  rules.push_back(ConditionalRule{
      .names = {"clone"},
      .args = {SeccompArg{.index = 1, .value = kCloneNamespaceFlags, .op = "SCMP_CMP_MASKED_EQ"}},
      .excluded_caps = {"CAP_SYS_ADMIN"},
      .machines = {"s390x"}});
  rules.push_back(ConditionalRule{.names = {"clone3"},
                                  .action = "SCMP_ACT_ERRNO",
                                  .errno_ret = ENOSYS,
                                  .excluded_caps = {"CAP_SYS_ADMIN"}});

  rules.push_back(allowWithCap("CAP_SYS_BOOT", {"reboot"}));
  rules.push_back(allowWithCap("CAP_SYS_CHROOT", {"chroot"}));
  rules.push_back(allowWithCap("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}));
  rules.push_back(allowWithCap("CAP_SYS_PACCT", {"acct"}));
  rules.push_back(allowWithCap("CAP_SYS_PTRACE", {"ptrace", "process_vm_readv", "process_vm_writev",
                                                  "process_madvise", "kcmp", "pidfd_getfd"}));
  rules.push_back(allowWithCap("CAP_SYS_RAWIO", {"iopl", "ioperm"}));
  rules.push_back(
      allowWithCap("CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64"}));
  rules.push_back(allowWithCap("CAP_SYS_TTY_CONFIG", {"vhangup"}));
  rules.push_back(allowWithCap(
      "CAP_SYS_NICE", {"get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind"}));
  rules.push_back(allowWithCap("CAP_SYSLOG", {"syslog"}));
  rules.push_back(allowWithCap("CAP_BPF", {"bpf"}));
  rules.push_back(allowWithCap("CAP_PERFMON", {"perf_event_open"}));
  return rules;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::ranges::find(v, s) != v.end();
}

bool applies(const ConditionalRule& rule, const std::vector<std::string>& caps,
             const SeccompHost& host) {
  if (!std::ranges::all_of(rule.required_caps, [&](const auto& c) { return contains(caps, c); })) {
    return false;
  }
  if (std::ranges::any_of(rule.excluded_caps, [&](const auto& c) { return contains(caps, c); })) {
    return false;
  }
  if (!rule.machines.empty() && !contains(rule.machines, host.machine)) return false;
  if (contains(rule.excluded_machines, host.machine)) return false;
  if (rule.min_kernel && host.kernel < *rule.min_kernel) return false;
  return true;
}

std::vector<std::string> architectures(std::string_view machine) {
  if (machine == "x86_64") return {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
  if (machine == "aarch64") return {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
  if (machine == "s390x") return {"SCMP_ARCH_S390X", "SCMP_ARCH_S390"};
  if (machine == "riscv64") return {"SCMP_ARCH_RISCV64"};
  return {};  // the runtime's native architecture only
}

// libseccomp knows every syscall of every architecture it supports (those of other
// architectures resolve to negative pseudo-numbers); a name it does not know at all cannot be
// put in a filter, and runc skips it.
bool knownSyscall(const std::string& name) {
  return seccomp_syscall_resolve_name(name.c_str()) != __NR_SCMP_ERROR;
}

}  // namespace

bool SeccompProfile::allows(const std::string& name) const {
  return std::ranges::any_of(syscalls, [&](const SeccompRule& rule) {
    return rule.action == "SCMP_ACT_ALLOW" && rule.args.empty() && contains(rule.names, name);
  });
}

SeccompHost currentSeccompHost() {
  SeccompHost host;
  struct utsname uts {};
  if (uname(&uts) != 0) return host;
  host.machine = uts.machine;
  std::sscanf(uts.release, "%d.%d", &host.kernel.major, &host.kernel.minor);
  return host;
}

SeccompProfile defaultSeccompProfile(const std::vector<std::string>& capabilities,
                                     const SeccompHost& host) {
  SeccompProfile profile;
  profile.architectures = architectures(host.machine);
  for (auto& rule : defaultRules()) {
    if (!applies(rule, capabilities, host)) continue;
    std::erase_if(rule.names, [](const std::string& name) { return !knownSyscall(name); });
    if (rule.names.empty()) continue;
    profile.syscalls.push_back(SeccompRule{.names = std::move(rule.names),
                                           .action = std::move(rule.action),
                                           .errno_ret = rule.errno_ret,
                                           .args = std::move(rule.args)});
  }
  return profile;
}

std::string seccompProfileJson(const SeccompProfile& profile) {
  json::array syscalls;
  for (const auto& rule : profile.syscalls) {
    json::object entry{{"names", json::array(rule.names.begin(), rule.names.end())},
                       {"action", rule.action}};
    if (rule.errno_ret) entry["errnoRet"] = *rule.errno_ret;
    if (!rule.args.empty()) {
      json::array args;
      for (const auto& arg : rule.args) {
        args.push_back(json::object{{"index", arg.index},
                                    {"value", arg.value},
                                    {"valueTwo", arg.value_two},
                                    {"op", arg.op}});
      }
      entry["args"] = std::move(args);
    }
    syscalls.push_back(std::move(entry));
  }
  json::object seccomp{{"defaultAction", profile.default_action},
                       {"defaultErrnoRet", profile.default_errno_ret},
                       {"syscalls", std::move(syscalls)}};
  if (!profile.architectures.empty()) {
    seccomp["architectures"] =
        json::array(profile.architectures.begin(), profile.architectures.end());
  }
  return json::serialize(seccomp);
}

}  // namespace ecs::runtime
