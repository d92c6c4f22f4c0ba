#include "tests/support/harness_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>

#include "tests/support/wait_for.h"

extern char** environ;

namespace ecs::testing {

namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// harness.env values are plain, but accept the shell's quoting of simple values too.
std::string unquote(std::string value) {
  if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
      value.back() == value.front()) {
    return value.substr(1, value.size() - 2);
  }
  return value;
}

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

struct Pipe {
  Fd read;
  Fd write;
};

bool makePipe(Pipe& p) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return true;
}

// Owns the posix_spawn attribute objects.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

std::vector<std::string> mergedEnvironment(const std::vector<std::string>& additions) {
  std::map<std::string, std::string> merged;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    merged[std::string(entry.substr(0, entry.find('=')))] = std::string(entry);
  }
  for (const auto& entry : additions) merged[entry.substr(0, entry.find('='))] = entry;
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (auto& [key, entry] : merged) out.push_back(std::move(entry));
  return out;
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int decodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Reads both pipes until EOF or the deadline; returns false on timeout.
bool drain(int out_fd, int err_fd, std::string& out, std::string& err,
           std::chrono::steady_clock::time_point deadline) {
  std::array<pollfd, 2> fds{{{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
  std::array<std::string*, 2> sinks{&out, &err};
  int open = 2;
  char buf[16384];
  while (open > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return true;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open;
      }
    }
  }
  return true;
}

// Waits for `pid`; returns its decoded exit status (-1 if it cannot be waited for).
int reap(pid_t pid) {
  int status = 0;
  while (true) {
    if (::waitpid(pid, &status, 0) == pid) return decodeWaitStatus(status);
    if (errno != EINTR) return -1;
  }
}

// Like reap(), but gives up at `deadline` (nullopt: still running).
std::optional<int> reapBefore(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  std::optional<int> result;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  const bool ended = pollUntil(
      [&] {
        int status = 0;
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) result = decodeWaitStatus(status);
        if (done < 0 && errno != EINTR) result = -1;
        return result.has_value();
      },
      std::max(left, std::chrono::milliseconds(0)));
  return ended ? result : std::nullopt;
}

}  // namespace

HarnessEnv HarnessEnv::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("cannot read harness environment " + path +
                             " (did the harness_up test run? see tests/harness/harness.sh)");
  }
  HarnessEnv env;
  env.path_ = path;
  std::string line;
  while (std::getline(in, line)) {
    std::string trimmed = trim(line);
    if (trimmed.empty() || trimmed.front() == '#') continue;
    auto eq = trimmed.find('=');
    if (eq == std::string::npos) continue;
    env.values_[trim(std::string_view(trimmed).substr(0, eq))] =
        unquote(trim(std::string_view(trimmed).substr(eq + 1)));
  }
  return env;
}

const std::string& HarnessEnv::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw std::runtime_error("harness environment " + path_ + " has no " + key);
  }
  return it->second;
}

const HarnessEnv& harnessEnv() {
  static const HarnessEnv env = [] {
    const char* path = std::getenv("ECS_TEST_HARNESS_ENV");
    if (path == nullptr || *path == '\0') {
      throw std::runtime_error(
          "ECS_TEST_HARNESS_ENV is not set: integration tests need the harness. Run them through "
          "ctest (fixture `harness`), or `tests/harness/harness.sh up DIR` and set "
          "ECS_TEST_HARNESS_ENV=DIR/harness.env");
    }
    return HarnessEnv::load(path);
  }();
  return env;
}

std::string uniqueNamespace(std::string_view test_name) {
  std::string name;
  for (char c : test_name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!name.empty() && name.back() != '-') {
      name += '-';
    }
    if (name.size() >= 48) break;
  }
  while (!name.empty() && name.back() == '-') name.pop_back();
  if (name.empty()) name = "test";

  static std::mutex mutex;
  static std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string suffix;
  {
    std::lock_guard lock(mutex);
    for (int i = 0; i < 8; ++i) suffix += kHex[rng() % 16];
  }
  return "t-" + name + "-" + suffix;
}

std::string RunResult::describe() const {
  std::string s = timed_out ? "timed out" : "exit " + std::to_string(exit_code);
  s += "; stdout: " + (out.empty() ? std::string("(empty)") : out);
  s += "; stderr: " + (err.empty() ? std::string("(empty)") : err);
  return s;
}

RunResult runCommand(const std::vector<std::string>& argv,
                     const std::vector<std::string>& env_additions,
                     std::chrono::milliseconds timeout) {
  RunResult result;
  if (argv.empty()) {
    result.exit_code = 127;
    result.err = "runCommand: empty argv";
    return result;
  }
  Pipe out, err;
  if (!makePipe(out) || !makePipe(err)) {
    result.exit_code = 127;
    result.err = std::string("runCommand: pipe: ") + std::strerror(errno);
    return result;
  }

  SpawnSetup setup;
  posix_spawn_file_actions_addopen(&setup.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&setup.actions, err.write.get(), STDERR_FILENO);
  // Its own process group, so a timeout kills whatever the command started too.
  posix_spawnattr_setpgroup(&setup.attr, 0);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setflags(&setup.attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> args = argv;
  std::vector<std::string> env = mergedEnvironment(env_additions);
  auto c_args = cStrings(args);
  auto c_env = cStrings(env);

  pid_t pid = -1;
  int rc =
      ::posix_spawnp(&pid, c_args[0], &setup.actions, &setup.attr, c_args.data(), c_env.data());
  out.write.reset();
  err.write.reset();
  if (rc != 0) {
    result.exit_code = 127;
    result.err = "runCommand: cannot start " + argv[0] + ": " + std::strerror(rc);
    return result;
  }

  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool finished = drain(out.read.get(), err.read.get(), result.out, result.err, deadline);
  // The command may close its output and keep running: the deadline still holds.
  std::optional<int> status = finished ? reapBefore(pid, deadline) : std::nullopt;
  if (!status) {
    result.timed_out = true;
    ::kill(-pid, SIGKILL);
    status = reap(pid);
  }
  result.exit_code = *status;
  return result;
}

void removeAllImages(const std::string& ns) {
  const std::string address = harnessEnv().containerdAddress();
  auto images = runCommand({"ctr", "-a", address, "-n", ns, "images", "ls", "-q"});
  std::istringstream names(images.out);
  for (std::string name; std::getline(names, name);) {
    runCommand({"ctr", "-a", address, "-n", ns, "images", "rm", "--sync", name});
  }
}

int unusedPort(int type) {
  int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

void expectNoLeaks(const std::string& ns) {
  const HarnessEnv& env = harnessEnv();
  RunResult r = runCommand({"bash", env.harnessScript(), "check-leaks", env.workdir(), ns}, {},
                           std::chrono::seconds(60));
  if (!r.ok()) {
    ADD_FAILURE() << "containerd namespace '" << ns << "' leaked resources:\n"
                  << r.out << r.err << (r.timed_out ? "\n(leak check timed out)" : "");
  }
}

}  // namespace ecs::testing
