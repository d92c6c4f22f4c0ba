// `ecs-node-agent demo IMAGE [-- COMMAND...]`: pull an image and run it once in containerd,
// streaming its output, then remove the container. The smallest end-to-end path through the
// agent's image and runtime layers; `run TASKDEF.json` grows out of it.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>

#include "agent/cli/commands.h"
#include "agent/cli/services.h"
#include "agent/runtime/oci_spec.h"

namespace ecs::cli {
namespace {

std::atomic<int> g_stop_signal{0};

void onStopSignal(int signal) {
  g_stop_signal = signal;
}

// Prints whatever was appended to a log file since the last call.
class LogFollower {
 public:
  LogFollower(std::string path, std::FILE* out) : path_(std::move(path)), out_(out) {}
  void drain() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return;
    in.seekg(static_cast<std::streamoff>(offset_));
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset_ += chunk.size();
    std::fwrite(chunk.data(), 1, chunk.size(), out_);
    std::fflush(out_);
  }

 private:
  std::string path_;
  std::FILE* out_;
  size_t offset_ = 0;
};

std::string randomHex() {
  std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:012x}", rng() & 0xffffffffffffULL);
}

}  // namespace

int demoCommand(const config::Config& config, const Args& args) {
  if (args.empty() || args[0].starts_with("-")) {
    fmt::print(stderr, "usage: ecs-node-agent demo IMAGE [-- COMMAND [ARG...]]\n");
    return 2;
  }
  auto reference = images::ImageReference::parse(args[0]);
  if (!reference) {
    fmt::print(stderr, "error: {}\n", reference.error().message);
    return 2;
  }
  std::vector<std::string> command;
  if (args.size() > 1) {
    if (args[1] != "--") {
      fmt::print(stderr, "usage: ecs-node-agent demo IMAGE [-- COMMAND [ARG...]]\n");
      return 2;
    }
    command.assign(args.begin() + 2, args.end());
  }

  auto services = connectServices(config);
  if (!services) {
    fmt::print(stderr, "error: {}\n", services.error().message);
    return 125;
  }
  auto& containerd = *services->containerd;
  fmt::print(stderr, "demo: pulling {}\n", reference->str());
  auto pulled = services->puller->pull(*reference);
  if (!pulled) {
    fmt::print(stderr, "error: {}\n", pulled.error().message);
    return 125;
  }
  auto image_config = runtime::parseImageConfig(pulled->image.config_json);
  if (!image_config) {
    fmt::print(stderr, "error: image config of {}: {}\n", reference->str(),
               image_config.error().message);
    return 125;
  }
  runtime::SpecInputs inputs;
  inputs.image = std::move(*image_config);
  inputs.command = command;
  inputs.hostname = "demo";
  auto spec = runtime::buildOciSpec(inputs);
  if (!spec) {
    fmt::print(stderr, "error: {}\n", spec.error().message);
    return 125;
  }

  const std::string id = "demo-" + randomHex();
  const auto log_dir = std::filesystem::temp_directory_path() / ("ecs-node-agent-" + id);
  std::filesystem::create_directories(log_dir);
  const std::string stdout_path = (log_dir / "stdout.log").string();
  const std::string stderr_path = (log_dir / "stderr.log").string();

  runtime::ContainerSpec container;
  container.id = id;
  container.image = reference->str();
  container.snapshot_parent = pulled->image.chain_id;
  container.oci_spec_json = std::move(*spec);
  container.labels = {{runtime::kLabelManagedBy, runtime::kManagedByValue}};

  int status = 125;
  auto cleanup = [&] {
    if (auto deleted = containerd.deleteTask(id);
        !deleted && deleted.error().code != ErrorCode::kNotFound) {
      spdlog::warn("demo: delete task {}: {}", id, deleted.error().message);
    }
    if (auto deleted = containerd.deleteContainer(id); !deleted) {
      spdlog::warn("demo: delete container {}: {}", id, deleted.error().message);
    }
    std::error_code ignored;
    std::filesystem::remove_all(log_dir, ignored);
  };

  if (auto created = containerd.createContainer(container); !created) {
    fmt::print(stderr, "error: {}\n", created.error().message);
    std::filesystem::remove_all(log_dir);
    return 125;
  }
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  auto started = containerd.startTask(id, stdout_path, stderr_path);
  if (!started) {
    fmt::print(stderr, "error: {}\n", started.error().message);
    cleanup();
    return 125;
  }
  fmt::print(stderr, "demo: container {} running (pid {})\n", id, *started);

  LogFollower out(stdout_path, stdout), err(stderr_path, stderr);
  bool term_sent = false;
  auto kill_deadline = std::chrono::steady_clock::time_point::max();
  for (;;) {
    auto exit = containerd.events().waitExit(id, std::chrono::milliseconds(100));
    out.drain();
    err.drain();
    if (exit) {
      status = static_cast<int>(exit->exit_status);
      fmt::print(stderr, "demo: container {} exited with status {}\n", id, status);
      break;
    }
    if (exit.error().code != ErrorCode::kUnavailable) {
      fmt::print(stderr, "error: waiting for {}: {}\n", id, exit.error().message);
      containerd.killTask(id, SIGKILL, true);
      break;
    }
    if (g_stop_signal && !term_sent) {
      fmt::print(stderr, "demo: stopping {} (SIGTERM, then SIGKILL after 10s)\n", id);
      containerd.killTask(id, SIGTERM);
      term_sent = true;
      kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    }
    if (std::chrono::steady_clock::now() > kill_deadline) {
      containerd.killTask(id, SIGKILL, true);
      kill_deadline = std::chrono::steady_clock::time_point::max();
    }
  }
  cleanup();
  return status;
}

}  // namespace ecs::cli
