// A container flooding its output through the real binary (`ecs-node-agent run`): 500 MiB of
// lines on stdout and a 500 MiB line without a newline on stderr, at once. The agent's peak RSS
// stays within 16 MiB of what a quiet run of the same task takes, the log writer's too, and the
// container's files on disk stay under the caps the task definition sets (json-file max-size and
// max-file over ECS_CONTAINER_LOG_MAX_*) whenever they are looked at; the last lines still arrive.
//
// And a health check that floods: 200 MB a check, lines and one line without a newline. Its
// output file stays within the 64 KiB the agent keeps of an exec's output, the check still
// passes (the container turns HEALTHY, so the flood was read to its end), the output's start is
// what task metadata reports, and the agent's memory does not grow with it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/harness_env.h"
#include "tests/support/wait_for.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ecs::testing::harnessEnv;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kMaxSize = 2 * kMiB;  // the task definition's max-size
constexpr uint64_t kMaxFiles = 3;        // and max-file

// A /proc/<pid>/status field in KiB (0 when the process or field is gone).
uint64_t statusKib(pid_t pid, const std::string& field) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(field + ":")) return std::stoull(line.substr(field.size() + 1));
  }
  return 0;
}

// The body of GET http://127.0.0.1:<port><target> ("" when it cannot be had).
std::string httpGet(int port, const std::string& target) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const auto request =
        fmt::format("GET {} HTTP/1.1\r\nHost: 169.254.170.2\r\nConnection: close\r\n\r\n", target);
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) > 0) {
      char buffer[4096];
      for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) {
        response.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

struct FloodRun {
  int exit_code = -1;
  uint64_t agent_peak_kib = 0;   // the run process's ru_maxrss
  uint64_t writer_peak_kib = 0;  // the highest VmHWM seen of its log writers
  uint64_t writer_anon_kib = 0;  // and of their anonymous (their own, not the binary's) memory
  int samples = 0;
  std::array<uint64_t, 2> max_stream_bytes{};  // stdout, stderr: all of a stream's files
  std::array<size_t, 2> max_stream_files{};
  uint64_t max_file_bytes = 0;
  // What `run --output json` printed, taken as it came (never held whole).
  uint64_t output_bytes = 0;
  bool lines_done = false;  // stdout's last line arrived
  bool long_done = false;   // stderr's
  size_t partial_lines = 0;
  std::string a_partial_line;
  std::deque<std::string> last_lines;
  std::string err;
  double seconds = 0;
};

class OutputFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* agent = std::getenv("ECS_TEST_AGENT_BINARY");
    ASSERT_NE(agent, nullptr) << "ECS_TEST_AGENT_BINARY is not set (run through ctest)";
    agent_ = agent;
    ns_ = ecs::testing::uniqueNamespace(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    data_dir_ = fs::path(harnessEnv().workdir()) / ("data-" + ns_);
    fs::create_directories(data_dir_);
  }

  void TearDown() override {
    auto teardown = ecs::testing::runCommand({agent_, "network", "teardown"}, agentEnv());
    EXPECT_TRUE(teardown.ok()) << teardown.describe();
    ecs::testing::removeAllImages(ns_);
    ecs::testing::expectNoLeaks(ns_);
    if (fs::exists(data_dir_ / "tasks")) {
      EXPECT_TRUE(fs::is_empty(data_dir_ / "tasks")) << "task directories left in " << data_dir_;
    }
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }

  std::vector<std::string> agentEnv() {
    return {"ECS_CONTAINERD_ADDRESS=" + harnessEnv().containerdAddress(),
            "ECS_CONTAINERD_NAMESPACE=" + ns_, "ECS_LOGLEVEL=warn",
            "ECS_DATADIR=" + data_dir_.string(), "ECS_BRIDGE_NAME=ecs-test-br5",
            "ECS_BRIDGE_SUBNET=172.31.249.0/24",
            "ECS_TASK_ENDPOINT_PORT=" + std::to_string(endpoint_port_),
            "ECS_INTROSPECTION_PORT=" + std::to_string(introspection_port_),
            // The task definition's json-file options win over these.
            "ECS_CONTAINER_LOG_MAX_SIZE=8m", "ECS_CONTAINER_LOG_MAX_FILES=5"};
  }

  // A task whose one container writes `mib` MiB of 100-byte lines to stdout and, at the same
  // time, one line of `mib` MiB to stderr; then a last line on each.
  std::string writeTaskDefinition(int mib) {
    const std::string script = fmt::format(
        "yes 012345678901234567890123456789012345678901234567890123456789"
        "012345678901234567890123456789012345678 | head -c 1048576 >/tmp/lines; "
        "head -c 1048576 /dev/zero | tr '\\0' x >/tmp/long; "
        "(i=0; while [ $i -lt {0} ]; do cat /tmp/lines; i=$((i+1)); done; echo; echo lines-done) & "
        "(i=0; while [ $i -lt {0} ]; do cat /tmp/long; i=$((i+1)); done; echo; echo long-done) >&2 "
        "& "
        "wait",
        mib);
    json::object container{
        {"name", "flood"},
        {"image", harnessEnv().registry() + "/test/busybox:oci"},
        {"memory", 64},
        {"command", json::array{"sh", "-c", script}},
        {"logConfiguration",
         json::object{{"logDriver", "json-file"},
                      {"options", json::object{{"max-size", "2m"},
                                               {"max-file", std::to_string(kMaxFiles)}}}}}};
    json::object definition{{"family", "flood"},
                            {"containerDefinitions", json::array{std::move(container)}}};
    auto path = data_dir_ / fmt::format("taskdef-{}.json", mib);
    std::ofstream(path) << json::serialize(definition);
    return path.string();
  }

  // Calls `each` with the entries of `dir`, never throwing: a directory that changes or goes
  // while it is read (/proc, rotating logs, a task directory being removed) just ends the walk.
  template <typename F>
  static void forEachEntry(const fs::path& dir, F&& each) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) each(*it);
  }

  // The container's files now: per stream, their total size and count; the largest file.
  void sampleFiles(FloodRun& run) {
    forEachEntry(data_dir_ / "tasks", [&](const fs::directory_entry& task) {
      std::error_code ec;
      std::array<uint64_t, 2> bytes{};
      std::array<size_t, 2> files{};
      forEachEntry(task.path() / "flood", [&](const fs::directory_entry& f) {
        const auto name = f.path().filename().string();
        const int stream = name.starts_with("stdout.log")   ? 0
                           : name.starts_with("stderr.log") ? 1
                                                            : -1;
        if (stream < 0) return;
        const auto size = f.file_size(ec);
        if (ec) return;  // rotated away meanwhile
        bytes[stream] += size;
        ++files[stream];
        run.max_file_bytes = std::max<uint64_t>(run.max_file_bytes, size);
      });
      for (int s = 0; s < 2; ++s) {
        run.max_stream_bytes[s] = std::max(run.max_stream_bytes[s], bytes[s]);
        run.max_stream_files[s] = std::max(run.max_stream_files[s], files[s]);
      }
    });
  }

  // The peak RSS of this test's log writers (the shim's children running `log-writer` on files
  // in this data directory).
  void sampleWriters(FloodRun& run) {
    forEachEntry("/proc", [&](const fs::directory_entry& p) {
      const auto name = p.path().filename().string();
      if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) return;
      std::ifstream in(p.path() / "cmdline");
      std::string cmdline(std::istreambuf_iterator<char>(in), {});
      if (cmdline.find("log-writer") == std::string::npos ||
          cmdline.find(data_dir_.string()) == std::string::npos) {
        return;
      }
      run.writer_peak_kib = std::max(run.writer_peak_kib, statusKib(std::stoi(name), "VmHWM"));
      run.writer_anon_kib = std::max(run.writer_anon_kib, statusKib(std::stoi(name), "RssAnon"));
    });
  }

  FloodRun run(int mib) {
    FloodRun run;
    const auto taskdef = writeTaskDefinition(mib);
    const auto err_path = data_dir_ / fmt::format("run-{}.err", mib);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return run;
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    for (const auto& e : agentEnv()) env_strings.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = {agent_, "run", taskdef, "--output", "json"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    const auto started = std::chrono::steady_clock::now();
    const pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      dup2(out[1], STDOUT_FILENO);
      const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(err, STDERR_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    ::close(out[1]);

    // Reads what `run` prints as it comes: a line at a time, never the whole output.
    std::thread reader([&run, fd = out[0]] {
      std::vector<char> buffer(64 * 1024);
      std::string line;
      const auto take = [&](const std::string& l) {
        if (l.find(R"("type":"log")") != std::string::npos) {
          if (l.find(R"("stream":"stdout","log":"lines-done")") != std::string::npos) {
            run.lines_done = true;
          }
          if (l.find(R"("stream":"stderr","log":"long-done")") != std::string::npos) {
            run.long_done = true;
          }
          if (l.ends_with(R"("partial":true})")) {
            ++run.partial_lines;
            if (run.a_partial_line.empty()) run.a_partial_line = l;
          }
        }
        run.last_lines.push_back(l);
        if (run.last_lines.size() > 16) run.last_lines.pop_front();
      };
      for (;;) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        run.output_bytes += static_cast<uint64_t>(n);
        std::string_view data(buffer.data(), static_cast<size_t>(n));
        for (size_t nl; (nl = data.find('\n')) != std::string_view::npos;) {
          line.append(data.substr(0, nl));
          take(line);
          line.clear();
          data.remove_prefix(nl + 1);
        }
        line.append(data);
      }
      ::close(fd);
    });

    int status = 0;
    rusage usage{};
    const bool exited = ecs::testing::pollUntil(
        [&] {
          try {
            sampleFiles(run);
            sampleWriters(run);
          } catch (const std::exception& e) {
            ADD_FAILURE() << "sampling the files and writers: " << e.what();
          }
          ++run.samples;
          return wait4(pid, &status, WNOHANG, &usage) == pid;
        },
        std::chrono::seconds(150));
    if (!exited) {
      ADD_FAILURE() << "`run` did not finish within 150 s";
      ::kill(-pid, SIGKILL);
      wait4(pid, &status, 0, &usage);
    }
    reader.join();
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    run.agent_peak_kib = static_cast<uint64_t>(usage.ru_maxrss);
    std::ifstream err_in(err_path);
    run.err.assign(std::istreambuf_iterator<char>(err_in), {});
    return run;
  }

  std::string agent_;
  std::string ns_;
  fs::path data_dir_;
  int endpoint_port_ = ecs::testing::unusedPort();
  int introspection_port_ = ecs::testing::unusedPort();
};

TEST_F(OutputFloodTest, AFloodKeepsTheAgentSmallAndTheFilesCapped) {
  // The image first, so that neither run pulls; then the same task, quiet: what the agent takes
  // to run it at all.
  auto pulled = ecs::testing::runCommand(
      {agent_, "images", "pull", harnessEnv().registry() + "/test/busybox:oci"}, agentEnv());
  ASSERT_TRUE(pulled.ok()) << pulled.describe();
  const FloodRun quiet = run(1);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  ASSERT_TRUE(quiet.lines_done && quiet.long_done) << quiet.err;

  const FloodRun flood = run(500);
  ASSERT_EQ(flood.exit_code, 0) << flood.err;
  RecordProperty("quiet_peak_kib", std::to_string(quiet.agent_peak_kib));
  RecordProperty("flood_peak_kib", std::to_string(flood.agent_peak_kib));
  RecordProperty("writer_peak_kib", std::to_string(flood.writer_peak_kib));
  RecordProperty("writer_anon_kib", std::to_string(flood.writer_anon_kib));
  RecordProperty("flood_seconds", std::to_string(flood.seconds));
  std::cout << fmt::format(
      "agent peak RSS: quiet {} KiB, flood {} KiB; log writer peak {} KiB ({} KiB anonymous); "
      "flood took {:.1f} s ({} samples, {} MiB printed by run)\n",
      quiet.agent_peak_kib, flood.agent_peak_kib, flood.writer_peak_kib, flood.writer_anon_kib,
      flood.seconds, flood.samples, flood.output_bytes / kMiB);

  // Memory: the agent, and the writer the shim runs for the container.
  EXPECT_LT(flood.agent_peak_kib, quiet.agent_peak_kib + 16 * 1024);
  // The writer's RSS is mostly the agent binary's pages, shared with every other process running
  // it; what is its own (anonymous) stays small.
  EXPECT_GT(flood.writer_peak_kib, 0u) << "no log writer was seen running";
  EXPECT_LT(flood.writer_peak_kib, 16u * 1024);
  EXPECT_LT(flood.writer_anon_kib, 4u * 1024);

  // Disk: every look at the files found them within the caps, and the caps were reached (the
  // looks were taken during the flood, and rotation happened).
  EXPECT_GT(flood.samples, 10);
  for (int s = 0; s < 2; ++s) {
    EXPECT_LE(flood.max_stream_bytes[s], kMaxSize * kMaxFiles) << "stream " << s;
    EXPECT_EQ(flood.max_stream_files[s], kMaxFiles) << "stream " << s;
  }
  EXPECT_LE(flood.max_file_bytes, kMaxSize);
  EXPECT_GT(flood.max_file_bytes, kMaxSize - 64 * 1024);

  // The last lines arrived, after the long line in 16 KiB pieces marked partial.
  EXPECT_TRUE(flood.lines_done);
  EXPECT_TRUE(flood.long_done);
  EXPECT_GT(flood.partial_lines, 0u);
  ASSERT_FALSE(flood.a_partial_line.empty());
  auto partial = json::parse(flood.a_partial_line).as_object();
  EXPECT_EQ(partial.at("stream").as_string(), "stderr");
  EXPECT_EQ(partial.at("log").as_string(), std::string(16 * 1024, 'x'));
  for (const auto& line : flood.last_lines) {
    boost::system::error_code ec;
    auto value = json::parse(line, ec);
    EXPECT_FALSE(ec) << "not JSON: " << line.substr(0, 200);
  }
  EXPECT_LT(flood.seconds, 90);
}

TEST_F(OutputFloodTest, AFloodingHealthCheckIsCappedOnDiskAndStillPasses) {
  constexpr uint64_t kHealthOutputCap = 64 * 1024;  // runtime::kExecOutputLimits
  // 100 MB of short lines on stdout, then 100 MB without a newline on stderr: far past the cap,
  // and a check that passes only if all of it is read (a writer that stopped reading would
  // block it until its timeout).
  const std::string check =
      "echo health-start; yes | head -c 100000000; head -c 100000000 /dev/zero | tr '\\0' x >&2; "
      "echo; echo health-end";
  json::object container{
      {"name", "flood"},
      {"image", harnessEnv().registry() + "/test/busybox:oci"},
      {"memory", 64},
      {"command",
       json::array{"sh", "-c", "echo uri=$ECS_CONTAINER_METADATA_URI_V4; sleep 26; echo done"}},
      {"healthCheck", json::object{{"command", json::array{"CMD-SHELL", check}},
                                   {"interval", 5},
                                   {"timeout", 30},
                                   {"retries", 3}}}};
  json::object definition{{"family", "health-flood"},
                          {"containerDefinitions", json::array{std::move(container)}}};
  const auto path = data_dir_ / "taskdef-health.json";
  std::ofstream(path) << json::serialize(definition);

  ecs::testing::BackgroundProcess run({agent_, "run", path.string(), "--output", "json"},
                                      agentEnv(), data_dir_.string());
  ASSERT_TRUE(run.started());
  struct StopAgent {
    ecs::testing::BackgroundProcess& run;
    ~StopAgent() {
      if (!run.exitStatus()) (void)run.stop(SIGTERM, std::chrono::seconds(30));
    }
  } stop_agent{run};
  auto uri_line = run.waitForJson(
      [](const json::object& l) {
        return l.at("type") == "log" && l.at("log").as_string().starts_with("uri=");
      },
      std::chrono::seconds(120));
  ASSERT_TRUE(uri_line) << run.out() << run.err();
  // The container just started: the first check is an interval away.
  const uint64_t rss_before_checks = statusKib(run.pid(), "VmRSS");
  const std::string uri = std::string(uri_line->at("log").as_string()).substr(4);
  const std::string metadata_path = uri.substr(uri.find("/v4/"));

  // While the container runs: the check's output file whenever it is there, the agent's peak
  // memory, and the container's health once it is reported.
  uint64_t max_health_bytes = 0;
  int samples_with_file = 0;
  uint64_t agent_peak_kib = 0;
  std::string health_json;
  const bool exited = ecs::testing::pollUntil(
      [&] {
        std::error_code ec;
        for (const auto& task : fs::directory_iterator(data_dir_ / "tasks", ec)) {
          const auto size = fs::file_size(task.path() / "flood" / "health.log", ec);
          if (ec) continue;  // between checks, the engine removes it
          ++samples_with_file;
          max_health_bytes = std::max<uint64_t>(max_health_bytes, size);
        }
        agent_peak_kib = std::max(agent_peak_kib, statusKib(run.pid(), "VmHWM"));
        // Metadata follows the engine's snapshots: asked again until it has caught up.
        if (health_json.find(R"("status":"HEALTHY")") == std::string::npos) {
          for (const auto& l : run.jsonLines()) {
            if (l.at("type") == "state" && l.contains("healthStatus") &&
                l.at("healthStatus") == "HEALTHY") {
              health_json = httpGet(endpoint_port_, metadata_path);
              break;
            }
          }
        }
        return run.exitStatus().has_value();
      },
      std::chrono::seconds(120));
  ASSERT_TRUE(exited) << "`run` did not finish within 120 s: " << run.err();
  EXPECT_EQ(*run.exitStatus(), 0) << run.err();
  RecordProperty("health_samples", std::to_string(samples_with_file));
  RecordProperty("max_health_bytes", std::to_string(max_health_bytes));
  RecordProperty("agent_peak_kib", std::to_string(agent_peak_kib));
  std::cout << fmt::format(
      "health.log: at most {} bytes in {} looks; agent RSS {} KiB before the checks, peak {} KiB\n",
      max_health_bytes, samples_with_file, rss_before_checks, agent_peak_kib);

  // Disk: the file was seen while checks ran, and never past the cap.
  EXPECT_GT(samples_with_file, 0) << "no look found health.log: nothing was measured";
  EXPECT_LE(max_health_bytes, kHealthOutputCap);

  // The check passed, and what metadata reports is the output's start.
  ASSERT_FALSE(health_json.empty()) << "the container never turned HEALTHY: " << run.out();
  auto metadata = json::parse(health_json).as_object();
  ASSERT_TRUE(metadata.contains("Health")) << health_json;
  const auto& health = metadata.at("Health").as_object();
  EXPECT_EQ(health.at("status"), "HEALTHY") << health_json;
  ASSERT_TRUE(health.contains("output")) << health_json;
  EXPECT_TRUE(health.at("output").as_string().starts_with("health-start\ny\ny\n")) << health_json;

  // Memory: the agent never holds the output.
  EXPECT_GT(rss_before_checks, 0u);
  EXPECT_LT(agent_peak_kib, rss_before_checks + 16 * 1024);
}

}  // namespace
