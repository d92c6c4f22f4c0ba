#include "tests/support/agent_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/support/wait_for.h"

extern char** environ;

namespace ecs::testing {
namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv,
                                     const std::vector<std::string>& env_additions,
                                     const std::string& dir) {
  static std::atomic<int> counter{0};
  const int n = counter++;
  out_path_ = dir + "/bg-" + std::to_string(::getpid()) + "-" + std::to_string(n) + ".out";
  err_path_ = dir + "/bg-" + std::to_string(::getpid()) + "-" + std::to_string(n) + ".err";
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& add : env_additions) overridden |= add.substr(0, add.find('=')) == key;
    if (!overridden) env.push_back(entry);
  }
  env.insert(env.end(), env_additions.begin(), env_additions.end());
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setpgid(0, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::execvpe(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  ::close(out);
  ::close(err);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0 && !exitStatus()) {
    ::kill(-pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
  std::remove(out_path_.c_str());
  std::remove(err_path_.c_str());
}

std::string BackgroundProcess::out() const {
  return readFile(out_path_);
}
std::string BackgroundProcess::err() const {
  return readFile(err_path_);
}

std::vector<boost::json::object> BackgroundProcess::jsonLines() const {
  std::vector<boost::json::object> lines;
  std::istringstream in(out());
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    auto value = boost::json::parse(line, ec);
    if (!ec && value.is_object()) lines.push_back(value.as_object());
  }
  return lines;
}

std::optional<int> BackgroundProcess::exitStatus() {
  if (status_ || pid_ <= 0) return status_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return status_;
}

std::optional<boost::json::object> BackgroundProcess::waitForJson(
    const std::function<bool(const boost::json::object&)>& match,
    std::chrono::milliseconds timeout) {
  std::optional<boost::json::object> found;
  // Lines written just before an exit still count: the exit is seen before they are read.
  const bool ended = pollUntil(
      [&] {
        const bool exited = exitStatus().has_value();
        for (auto& line : jsonLines()) {
          if (match(line)) {
            found = std::move(line);
            return true;
          }
        }
        return exited;
      },
      timeout);
  return ended ? found : std::nullopt;
}

int BackgroundProcess::wait(std::chrono::milliseconds timeout) {
  if (!pollUntil([&] { return exitStatus().has_value(); }, timeout)) return -1;
  return *status_;
}

int BackgroundProcess::stop(int signal, std::chrono::milliseconds timeout) {
  if (exitStatus()) return *status_;
  ::kill(pid_, signal);
  int status = wait(timeout);
  if (status < 0) {
    ::kill(-pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
  return status;
}

bool isState(const boost::json::object& line, const std::string& container,
             const std::string& status) {
  if (line.if_contains("type") == nullptr || line.at("type") != "state") return false;
  auto* name = line.if_contains("containerName");
  std::string who = name && name->is_string() ? std::string(name->as_string()) : std::string();
  return who == container && line.at("status") == status.c_str();
}

}  // namespace ecs::testing
