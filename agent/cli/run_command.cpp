// `ecs-node-agent run TASKDEF.json [--output json]`: run one task from a task definition, with no
// cluster (like `docker compose up` for ECS task definitions). Streams state changes and
// container output; ends when the task has stopped and been cleaned up.
//
// Exit status: the exit code of the essential container that stopped first; 2 when the task
// definition does not validate (nothing is started); 125 when the task could not start (pull,
// create or resource failure).
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "agent/cli/commands.h"
#include "agent/engine/task_engine.h"
#include "agent/metadata/task_metadata.h"
#include "agent/node/node.h"
#include "agent/runtime/log_writer.h"

namespace ecs::cli {
namespace {

constexpr const char* kUsage = "usage: ecs-node-agent run TASKDEF.json [--output text|json]\n";

std::string rfc3339(std::chrono::system_clock::time_point time) {
  auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(time);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(time - seconds).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", seconds, millis);
}

std::string randomTaskId() {
  std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

// Follows one container's stdout and stderr files as the log writer rotates them, handing out
// their lines (pieces of at most 16 KiB, marked partial when the line goes on) in bounded memory.
class LogFollower {
 public:
  // What one drain reads of a stream at most, so a flood cannot hold up the task's events.
  static constexpr size_t kDrainBudget = 1024 * 1024;

  LogFollower(std::string container, const std::string& out_path, const std::string& err_path)
      : container_(std::move(container)), out_(out_path), err_(err_path) {}

  // Returns true when a stream had more than the budget to read (drain again soon).
  template <typename Emit>
  bool drain(bool final, Emit emit) {
    bool more = false;
    for (auto [reader, name] : {std::pair{&out_, "stdout"}, std::pair{&err_, "stderr"}}) {
      const size_t read =
          reader->read(kDrainBudget, final, [&](std::string_view line, bool partial) {
            emit(container_, std::string_view(name), line, partial);
          });
      more = more || (!final && read >= kDrainBudget);
    }
    return more;
  }

 private:
  std::string container_;
  runtime::RotatingLogReader out_;
  runtime::RotatingLogReader err_;
};

// The length of the UTF-8 sequence at the start of `s`, 0 when it is not a valid one.
size_t utf8Length(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
    return i < s.size() && byte(i) >= lo && byte(i) <= hi;
  };
  const unsigned char b = byte(0);
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const bool second = b == 0xe0 ? cont(1, 0xa0) : b == 0xed ? cont(1, 0x80, 0x9f) : cont(1);
    return second && cont(2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const bool second = b == 0xf0 ? cont(1, 0x90) : b == 0xf4 ? cont(1, 0x80, 0x8f) : cont(1);
    return second && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

// `text` as a JSON string's contents. Bytes that are not UTF-8 (a piece may end inside a
// character) become U+FFFD, as Docker's JSON log does.
void appendJsonEscaped(std::string& out, std::string_view text) {
  while (!text.empty()) {
    const char c = text.front();
    size_t length = 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned char>(c));
        } else if (static_cast<unsigned char>(c) < 0x80) {
          out += c;
        } else if ((length = utf8Length(text)) == 0) {
          out += "\xef\xbf\xbd";
          length = 1;
        } else {
          out.append(text.substr(0, length));
        }
    }
    text.remove_prefix(length);
  }
}

class Printer {
 public:
  explicit Printer(bool json) : json_(json) {}

  void state(const engine::StateChange& change) {
    if (json_) {
      boost::json::object line{
          {"type", "state"}, {"time", rfc3339(change.time)}, {"taskArn", change.task_arn}};
      if (!change.container_name.empty()) line["containerName"] = change.container_name;
      line["status"] = std::string(engine::toString(change.status));
      if (change.exit_code) line["exitCode"] = *change.exit_code;
      if (!change.reason.empty()) line["reason"] = change.reason;
      if (change.health) line["healthStatus"] = std::string(engine::toString(*change.health));
      boost::json::array bindings;
      for (const auto& b : change.network_bindings) {
        boost::json::object binding{{"bindIP", b.bind_ip}, {"protocol", b.protocol}};
        if (b.container_port_range.empty()) {
          binding["containerPort"] = b.container_port;
          binding["hostPort"] = b.host_port;
        } else {
          binding["containerPortRange"] = b.container_port_range;
          binding["hostPortRange"] = b.host_port_range;
        }
        bindings.push_back(std::move(binding));
      }
      line["networkBindings"] = std::move(bindings);
      fmt::print("{}\n", boost::json::serialize(line));
    } else {
      std::string who = change.container_name.empty() ? "task" : change.container_name;
      std::string what = change.health
                             ? fmt::format("{} (health)", engine::toString(*change.health))
                             : std::string(engine::toString(change.status));
      std::string extra;
      if (change.exit_code) extra += fmt::format(" exit code {}", *change.exit_code);
      if (!change.reason.empty()) extra += fmt::format(" ({})", change.reason);
      fmt::print(stderr, "{} [{}] {}{}\n", rfc3339(change.time), who, what, extra);
    }
    std::fflush(stdout);
  }

  // One line (or 16 KiB piece of one, `partial`) of a container's output, printed at once.
  void log(const std::string& container, std::string_view stream, std::string_view text,
           bool partial) {
    if (json_) {
      // By hand rather than through a JSON object: this runs for every line of a flood.
      line_.clear();
      line_ += R"({"type":"log","time":")";
      line_ += rfc3339(std::chrono::system_clock::now());
      line_ += R"(","containerName":")";
      appendJsonEscaped(line_, container);
      line_ += R"(","stream":")";
      line_ += stream;
      line_ += R"(","log":")";
      appendJsonEscaped(line_, text);
      line_ += partial ? "\",\"partial\":true}\n" : "\"}\n";
      std::fwrite(line_.data(), 1, line_.size(), stdout);
    } else {
      fmt::print(stream == "stderr" ? stderr : stdout, "{} | {}\n", container, text);
    }
  }

 private:
  bool json_;
  std::string line_;  // reused: at most one piece, escaped
};

// `run`'s outbox: prints every state change, drains a stopped container's output first, and
// keeps the exit code of the first essential container to stop.
class RunOutbox : public engine::StateChangeOutbox {
 public:
  RunOutbox(bool json, const engine::TaskDefinition& definition) : printer_(json) {
    for (const auto& c : definition.container_definitions) {
      if (c.essential) essential_.insert(c.name);
    }
  }

  void follow(const std::string& container, const std::string& out_path,
              const std::string& err_path) {
    followers_.try_emplace(container, container, out_path, err_path);
  }
  // Returns true when there is more to read already.
  bool drainLogs(bool final) {
    bool more = false;
    for (auto& [name, follower] : followers_) more = follower.drain(final, printLine()) || more;
    std::fflush(stdout);
    return more;
  }
  void onRemoved(std::function<void()> callback) { on_removed_ = std::move(callback); }
  std::optional<int> exitStatus() const { return exit_status_; }

  void submit(const engine::StateChange& change) override {
    if (!change.container_name.empty() && change.status == engine::ContainerStatus::kStopped) {
      if (auto it = followers_.find(change.container_name); it != followers_.end()) {
        it->second.drain(true, printLine());
      }
      if (!exit_status_ && change.exit_code && essential_.contains(change.container_name)) {
        exit_status_ = *change.exit_code;
      }
    }
    printer_.state(change);
  }
  void taskRemoved(const std::string&) override {
    drainLogs(true);
    if (on_removed_) on_removed_();
  }

 private:
  std::function<void(const std::string&, std::string_view, std::string_view, bool)> printLine() {
    return [this](const std::string& container, std::string_view stream, std::string_view line,
                  bool partial) { printer_.log(container, stream, line, partial); };
  }

  Printer printer_;
  std::map<std::string, LogFollower> followers_;
  std::set<std::string> essential_;
  std::optional<int> exit_status_;
  std::function<void()> on_removed_;
};

}  // namespace

int runCommand(const config::Config& config, const Args& args) {
  std::string path;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--output" && i + 1 < args.size()) {
      if (args[i + 1] != "json" && args[i + 1] != "text") {
        fmt::print(stderr, "{}", kUsage);
        return 2;
      }
      json = args[++i] == "json";
    } else if (args[i].starts_with("--output=")) {
      json = args[i] == "--output=json";
    } else if (path.empty() && !args[i].starts_with("--")) {
      path = args[i];
    } else {
      fmt::print(stderr, "{}", kUsage);
      return 2;
    }
  }
  if (path.empty()) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  std::ifstream in(path);
  if (!in) {
    fmt::print(stderr, "error: cannot read task definition {}\n", path);
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto definition = engine::loadTaskDefinition(text.str());
  if (!definition) {
    fmt::print(stderr, "error: task definition {}: {}\n", path, definition.error().message);
    return 2;
  }

  boost::asio::io_context io;
  RunOutbox outbox(json, *definition);
  node::NodeOptions node_options;
  node_options.host_credentials = config.run_host_credentials;
  node_options.environment_files_anywhere = true;
  auto node = node::Node::create(config, io, outbox, node_options);
  if (!node) {
    fmt::print(stderr, "error: {}\n", node.error().message);
    return 125;
  }
  auto& engine = (*node)->engine();
  const std::string task_arn = metadata::taskArn((*node)->context(), randomTaskId());
  for (const auto& c : definition->container_definitions) {
    outbox.follow(c.name, engine.logPath(task_arn, c.name, false),
                  engine.logPath(task_arn, c.name, true));
  }

  boost::asio::steady_timer log_timer(io);
  std::function<void()> poll_logs = [&] {
    // A stream with more to read is drained again as soon as the loop has run what waits.
    const bool more = outbox.drainLogs(false);
    log_timer.expires_after(std::chrono::milliseconds(more ? 0 : 100));
    log_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) poll_logs();
    });
  };
  poll_logs();

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int signal) {
      if (ec) return;
      engine.stopTask(task_arn,
                      fmt::format("Task stopped by {}", signal == SIGINT ? "SIGINT" : "SIGTERM"));
      wait_signal();
    });
  };
  wait_signal();

  outbox.onRemoved([&] {
    log_timer.cancel();
    signals.cancel();
    io.stop();
  });
  engine::TaskSpec spec;
  spec.arn = task_arn;
  spec.definition = std::move(*definition);
  engine.upsert(std::move(spec));
  io.run();
  (*node)->stop();

  // No essential exit code: the task never got its containers running.
  return outbox.exitStatus().value_or(125);
}

}  // namespace ecs::cli
