#include "agent/runtime/task_io.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

namespace ecs::runtime {

namespace {

bool unreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string percentEncode(std::string_view s, bool keep_slash) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

// A path as one single-quoted shell word.
std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Result<void> checkPath(const std::string& path, std::string_view stream) {
  if (path.empty()) return {};
  if (!path.starts_with('/')) {
    return fail(ErrorCode::kInvalidArgument, "{} path {:?} is not absolute", stream, path);
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) {
    return fail(ErrorCode::kFailedPrecondition, "{} path {}: create directory: {}", stream, path,
                ec.message());
  }
  return {};
}

}  // namespace

Result<TaskIo> makeTaskIo(const std::string& stdout_path, const std::string& stderr_path,
                          const std::string& logger_shell, const std::string& log_writer,
                          const OutputLimits& limits) {
  if (auto ok = checkPath(stdout_path, "stdout"); !ok) return fail(ok.error());
  if (auto ok = checkPath(stderr_path, "stderr"); !ok) return fail(ok.error());
  if (stdout_path.empty() && stderr_path.empty()) return TaskIo{};
  // Never a `file://` URI, even for one path for both streams: the shim would open the file once
  // per stream, and the two copies, each at its own offset, overwrite each other's lines. The
  // logger below appends (O_APPEND) from both.
  if (!logger_shell.starts_with('/')) {
    return fail(ErrorCode::kInvalidArgument, "logger shell {:?} is not an absolute path",
                logger_shell);
  }
  // fd 5 is the shim's readiness pipe: closing it (EOF) says the logger is ready. The shim
  // starts the logger with nothing in its environment but CONTAINER_ID and CONTAINER_NAMESPACE.
  std::string script;
  if (!log_writer.empty()) {
    if (!log_writer.starts_with('/')) {
      return fail(ErrorCode::kInvalidArgument, "log writer {:?} is not an absolute path",
                  log_writer);
    }
    // The writer closes fd 5 once its files are open.
    script = "exec " + shellQuote(log_writer) + " log-writer";
    for (const auto& arg : logWriterArgs({stdout_path, stderr_path, limits})) {
      script += " " + shellQuote(arg);
    }
  } else {
    const auto target = [](const std::string& p) { return p.empty() ? "/dev/null" : p; };
    script = fmt::format(
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin; exec 5>&-; "
        "cat <&3 >>{} & cat <&4 >>{} & exec 3<&- 4<&-; wait",
        shellQuote(target(stdout_path)), shellQuote(target(stderr_path)));
  }
  const auto uri = fmt::format("binary://{}?-c={}", percentEncode(logger_shell, true),
                               percentEncode(script, false));
  return TaskIo{uri, uri};
}

}  // namespace ecs::runtime
