// A process started in the background whose stdout is collected in a file, for tests that must
// act while a task runs (reach its ports, its endpoints, its mounts) and then stop it. Used with
// `ecs-node-agent run ... --output json`: wait for a JSON state line, probe, then SIGTERM.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ecs::testing {

class BackgroundProcess {
 public:
  // Starts argv (PATH lookup) with the current environment plus `env_additions`, in its own
  // process group; stdout and stderr go to files under `dir`.
  BackgroundProcess(const std::vector<std::string>& argv,
                    const std::vector<std::string>& env_additions, const std::string& dir);
  ~BackgroundProcess();  // SIGKILLs the group if still running
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // also the agent's when argv execs it (prlimit, env)
  std::string out() const;
  std::string err() const;
  // The stdout lines that parse as JSON objects, in order.
  std::vector<boost::json::object> jsonLines() const;
  // Waits until a JSON stdout line satisfies `match` (returns it), the process exits, or the
  // timeout passes (nullopt for both).
  std::optional<boost::json::object> waitForJson(
      const std::function<bool(const boost::json::object&)>& match,
      std::chrono::milliseconds timeout);
  // Sends `signal` and waits for the exit; returns the exit status (128 + signal if killed),
  // or -1 after the timeout (then the group is SIGKILLed).
  int stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Waits for the process to exit by itself.
  int wait(std::chrono::milliseconds timeout);
  std::optional<int> exitStatus();  // nullopt while running

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string out_path_, err_path_;
};

// A state line of `container` ("" for the task) with `status`, e.g. RUNNING.
bool isState(const boost::json::object& line, const std::string& container,
             const std::string& status);

}  // namespace ecs::testing
