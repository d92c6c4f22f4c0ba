#include "agent/common/process_identity.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ecs {

ProcessIdentity currentProcess() {
  int pid = static_cast<int>(::getpid());
  return ProcessIdentity{pid, processStartTime(pid).value_or(0)};
}

std::optional<uint64_t> processStartTime(int pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string stat = ss.str();
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // from the last ')'. The state is field 3, the start time field 22.
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  std::vector<std::string> tokens;
  while (tokens.size() < 20 && fields >> field) tokens.push_back(field);
  if (tokens.size() < 20) return std::nullopt;
  if (tokens[0] == "Z" || tokens[0] == "X" || tokens[0] == "x") return std::nullopt;
  uint64_t start = 0;
  const std::string& value = tokens[19];
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), start);
  if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
  return start;
}

bool isAlive(const ProcessIdentity& process) {
  auto start = processStartTime(process.pid);
  return start && *start == process.start_time;
}

std::optional<std::chrono::system_clock::time_point> processStartedAt(int pid) {
  const auto ticks = processStartTime(pid);
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  if (!ticks || ticks_per_second <= 0) return std::nullopt;
  std::ifstream in("/proc/stat");
  std::string key;
  long long boot = -1;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    if (fields >> key && key == "btime") {
      fields >> boot;
      break;
    }
  }
  if (boot < 0) return std::nullopt;
  const auto since_boot = std::chrono::milliseconds(*ticks * 1000 / ticks_per_second);
  return std::chrono::system_clock::time_point(std::chrono::seconds(boot)) + since_boot;
}

}  // namespace ecs
