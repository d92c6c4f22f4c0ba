#include "tests/support/fault_proxy.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

extern char** environ;

namespace ecs::testing {

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

bool waitExit(pid_t pid, std::chrono::milliseconds timeout) {
  return pollUntil(
      [&] {
        int status = 0;
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        return done == pid || (done < 0 && errno == ECHILD);
      },
      timeout);
}

}  // namespace

FaultProxy::FaultProxy(const std::string& upstream, const std::string& mode) {
  const HarnessEnv& env = harnessEnv();
  // Under the harness's WORKDIR, so `harness.sh down` finds and stops a proxy a test leaked.
  std::string pattern = env.workdir() + "/fault-proxy-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error("FaultProxy: mkdtemp under " + env.workdir() + ": " +
                             std::strerror(errno));
  }
  dir_ = buf.data();
  const std::string port_file = dir_ + "/port";
  const std::string log_file = dir_ + "/fault_proxy.log";

  std::vector<std::string> args = {"/usr/bin/python3", env.faultProxyScript(),
                                   "--upstream",       upstream,
                                   "--mode",           mode,
                                   "--port-file",      port_file};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    std::filesystem::remove_all(dir_);
    throw std::runtime_error(std::string("FaultProxy: cannot start fault_proxy.py: ") +
                             std::strerror(rc));
  }

  std::string port;
  const bool ended = pollUntil(
      [&] {
        port = readFile(port_file);
        if (!port.empty()) return true;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
        pid_ = -1;
        return true;
      },
      std::chrono::seconds(10));
  if (ended && !port.empty()) {
    address_ = "127.0.0.1:" + port;
    return;
  }
  std::string log;
  {
    std::ifstream in(log_file);
    log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  stop();
  throw std::runtime_error("FaultProxy: fault_proxy.py (mode " + mode + ") did not start: " + log);
}

FaultProxy::~FaultProxy() {
  stop();
}

void FaultProxy::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!waitExit(pid_, std::chrono::seconds(5))) {
      ::kill(pid_, SIGKILL);
      waitExit(pid_, std::chrono::seconds(5));
    }
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

std::string FaultProxy::statsJson() const {
  RunResult r = runCommand({"curl", "-fsS", "http://" + address_ + "/_fault_proxy/stats"}, {},
                           std::chrono::seconds(10));
  return r.out;
}

}  // namespace ecs::testing
