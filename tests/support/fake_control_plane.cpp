#include "tests/support/fake_control_plane.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "tests/support/wait_for.h"

extern char** environ;

#ifndef ECS_FAKE_CONTROL_PLANE_DIR
#define ECS_FAKE_CONTROL_PLANE_DIR ""
#endif

namespace ecs::testing {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

constexpr const char* kPython = "/usr/bin/python3";
// How much longer than a long-poll's own timeout its HTTP exchange may take.
constexpr std::chrono::seconds kPollMargin(10);

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::optional<int> reapBefore(pid_t pid, std::chrono::milliseconds timeout) {
  std::optional<int> status;
  const bool done = pollUntil(
      [&] {
        int raw = 0;
        const pid_t r = ::waitpid(pid, &raw, WNOHANG);
        if (r == pid) status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
        return r == pid || (r < 0 && errno == ECHILD);
      },
      timeout);
  return done ? status : std::nullopt;
}

// One HTTP/1.1 exchange with the control API on 127.0.0.1:`port`, bounded by `timeout`.
ControlResponse exchange(int port, const std::string& method, const std::string& target,
                         const json::value& body, std::chrono::milliseconds timeout) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  http::request<http::string_body> request{http::string_to_verb(method), target, 11};
  request.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  if (!body.is_null()) {
    request.set(http::field::content_type, "application/json");
    request.body() = json::serialize(body);
  }
  request.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  beast::flat_buffer buffer;
  beast::error_code failure;

  stream.expires_after(timeout);
  stream.async_connect(
      tcp::endpoint(boost::asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)),
      [&](beast::error_code ec) {
        if (ec) {
          failure = ec;
          return;
        }
        http::async_write(stream, request, [&](beast::error_code ec, std::size_t) {
          if (ec) {
            failure = ec;
            return;
          }
          http::async_read(stream, buffer, parser,
                           [&](beast::error_code ec, std::size_t) { failure = ec; });
        });
      });
  io.run();
  if (failure) {
    throw std::runtime_error(method + " " + target + ": " + failure.message());
  }
  ControlResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  boost::system::error_code ec;
  response.body = json::parse(parser.get().body(), ec);
  if (ec) {
    throw std::runtime_error(method + " " + target +
                             ": answer is not JSON: " + parser.get().body().substr(0, 500));
  }
  return response;
}

std::vector<json::object> objects(const json::value& list) {
  std::vector<json::object> out;
  for (const auto& item : list.as_array()) out.push_back(item.as_object());
  return out;
}

json::object frameFilter(const std::string& channel, const std::string& type,
                         const json::object& match, std::int64_t after) {
  json::object filter{{"kind", "frame"}, {"channel", channel}, {"after", after}};
  if (!type.empty()) filter["type"] = type;
  if (!match.empty()) filter["match"] = match;
  return filter;
}

}  // namespace

std::string FakeControlPlane::scriptDir() {
  if (const char* dir = std::getenv("ECS_TEST_FAKE_CONTROL_PLANE_DIR"); dir && *dir) return dir;
  return ECS_FAKE_CONTROL_PLANE_DIR;
}

FakeControlPlane::FakeControlPlane(FakeControlPlaneOptions options) : options_(std::move(options)) {
  try {
    start();
  } catch (...) {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
    throw;
  }
}

void FakeControlPlane::start() {
  const std::string server = scriptDir() + "/server.py";
  if (scriptDir().empty() || !std::filesystem::exists(server)) {
    throw std::runtime_error("FakeControlPlane: no server.py in '" + scriptDir() +
                             "' (set ECS_TEST_FAKE_CONTROL_PLANE_DIR)");
  }
  std::string pattern =
      (std::filesystem::temp_directory_path() / "fake-control-plane-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("FakeControlPlane: mkdtemp: " + std::string(std::strerror(errno)));
  }
  dir_ = pattern;
  const std::string ports_file = dir_ + "/ports.json";
  const std::string log_file = dir_ + "/server.log";

  std::vector<std::string> args = {kPython,
                                   "-B",
                                   server,
                                   "--region",
                                   options_.region,
                                   "--account",
                                   options_.account,
                                   "--access-key",
                                   options_.access_key,
                                   "--secret-key",
                                   options_.secret_key,
                                   "--session-token",
                                   options_.session_token,
                                   "--max-events",
                                   std::to_string(options_.max_events),
                                   "--ports-file",
                                   ports_file,
                                   "--exit-on-stdin-eof"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The stand-in's stdin is a pipe only this process writes to (close-on-exec, so no other
  // child inherits it): when the test dies, the pipe closes and the stand-in exits.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error("FakeControlPlane: pipe2: " + std::string(std::strerror(errno)));
  }
  stdin_fd_ = fds[1];
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  const int rc = ::posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[0]);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("FakeControlPlane: cannot start " + std::string(kPython) + ": " +
                             std::strerror(rc));
  }

  std::string ready;
  bool exited = false;
  const bool ended = pollUntil(
      [&] {
        ready = readAll(ports_file);
        if (!ready.empty()) return true;
        int status = 0;
        exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
        return exited;
      },
      options_.start_timeout);
  if (exited) pid_ = -1;
  if (!ended) fail("FakeControlPlane: server.py did not start within the start timeout");
  boost::system::error_code ec;
  const json::value ports = json::parse(ready, ec);
  if (ready.empty() || ec || !ports.is_object()) fail("FakeControlPlane: server.py did not start");
  api_port_ = static_cast<int>(ports.at("api_port").as_int64());
  control_port_ = static_cast<int>(ports.at("control_port").as_int64());
  endpoint_ = "http://127.0.0.1:" + std::to_string(api_port_);
}

FakeControlPlane::~FakeControlPlane() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int FakeControlPlane::stop(std::chrono::milliseconds timeout) {
  int result = -1;
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (auto status = reapBefore(pid_, timeout)) {
      result = *status;
    } else {
      ::kill(pid_, SIGKILL);
      reapBefore(pid_, std::chrono::seconds(10));
    }
    pid_ = -1;
  }
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
    stdin_fd_ = -1;
  }
  return result;
}

std::string FakeControlPlane::controlUrl() const {
  return "http://127.0.0.1:" + std::to_string(control_port_);
}

std::string FakeControlPlane::log() const {
  return dir_.empty() ? std::string() : readAll(dir_ + "/server.log");
}

void FakeControlPlane::fail(const std::string& what) const {
  throw std::runtime_error(what + "\n--- stand-in log ---\n" + log());
}

std::vector<std::string> FakeControlPlane::credentialsEnv() const {
  std::vector<std::string> env = {
      "AWS_ACCESS_KEY_ID=" + options_.access_key,
      "AWS_SECRET_ACCESS_KEY=" + options_.secret_key,
      "AWS_REGION=" + options_.region,
      "AWS_DEFAULT_REGION=" + options_.region,
      "AWS_EC2_METADATA_DISABLED=true",
      "AWS_CONFIG_FILE=/dev/null",
      "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
      "AWS_PAGER=",
  };
  env.push_back("AWS_SESSION_TOKEN=" + options_.session_token);
  return env;
}

ControlResponse FakeControlPlane::control(const std::string& method, const std::string& path,
                                          const json::value& body,
                                          std::chrono::milliseconds timeout) {
  if (control_port_ == 0) fail("FakeControlPlane: not running");
  try {
    return exchange(control_port_, method, path, body, timeout);
  } catch (const std::runtime_error& e) {
    fail(std::string("FakeControlPlane: ") + e.what());
  }
}

json::object FakeControlPlane::expectOk(const std::string& method, const std::string& path,
                                        const json::value& body) {
  ControlResponse response = control(method, path, body);
  if (response.status != 200 || !response.body.is_object()) {
    fail("FakeControlPlane: " + method + " " + path + " answered " +
         std::to_string(response.status) + ": " + json::serialize(response.body));
  }
  return response.body.as_object();
}

// --- events

std::vector<json::object> FakeControlPlane::events(const json::object& filter) {
  return objects(expectOk("POST", "/events", filter).at("events"));
}

std::optional<std::vector<json::object>> FakeControlPlane::waitForEvents(
    json::object filter, std::size_t count, std::chrono::milliseconds timeout) {
  filter["count"] = count;
  filter["timeout_ms"] = timeout.count();
  ControlResponse response = control("POST", "/wait", filter, timeout + kPollMargin);
  if (response.status == 408) return std::nullopt;
  if (response.status != 200) {
    fail("FakeControlPlane: POST /wait answered " + std::to_string(response.status) + ": " +
         json::serialize(response.body));
  }
  return objects(response.body.at("events"));
}

std::optional<json::object> FakeControlPlane::waitForEvent(const json::object& filter,
                                                           std::chrono::milliseconds timeout) {
  auto found = waitForEvents(filter, 1, timeout);
  if (!found) return std::nullopt;
  return found->front();
}

std::int64_t FakeControlPlane::lastSeq() {
  return expectOk("GET", "/stats").at("last_seq").as_int64();
}

// --- ECS API

std::vector<json::object> FakeControlPlane::calls(const std::string& op) {
  return events({{"kind", "api"}, {"op", op}});
}

std::optional<json::object> FakeControlPlane::waitForCall(const std::string& op,
                                                          const json::object& match,
                                                          std::chrono::milliseconds timeout,
                                                          std::int64_t after) {
  json::object filter{{"kind", "api"}, {"op", op}, {"after", after}};
  if (!match.empty()) filter["match"] = match;
  return waitForEvent(filter, timeout);
}

void FakeControlPlane::failNext(const std::string& op, int count, int status,
                                const std::string& type, const std::string& message) {
  expectOk(
      "POST", "/api/faults",
      json::object{
          {"op", op}, {"count", count}, {"status", status}, {"type", type}, {"message", message}});
}

void FakeControlPlane::dropNext(const std::string& op, int count) {
  expectOk("POST", "/api/faults", json::object{{"op", op}, {"count", count}, {"drop", true}});
}

void FakeControlPlane::clearFaults() {
  expectOk("DELETE", "/api/faults");
}

std::vector<json::object> FakeControlPlane::instances() {
  return objects(expectOk("GET", "/instances").at("instances"));
}

// --- ACS and TCS

json::object FakeControlPlane::push(const std::string& channel, const json::object& envelope,
                                    bool fill, std::chrono::milliseconds timeout) {
  const std::string path = "/" + channel + "/send";
  ControlResponse response =
      control("POST", path,
              json::object{{"message", envelope}, {"fill", fill}, {"timeout_ms", timeout.count()}},
              timeout + kPollMargin);
  if (response.status == 409) {
    fail("FakeControlPlane: no open " + channel + " session within " +
         std::to_string(timeout.count()) + " ms to push " + json::serialize(envelope));
  }
  if (response.status != 200) {
    fail("FakeControlPlane: POST " + path + " answered " + std::to_string(response.status) + ": " +
         json::serialize(response.body));
  }
  return response.body.at("event").at("message").as_object();
}

json::object FakeControlPlane::pushAcs(const json::object& envelope, bool fill,
                                       std::chrono::milliseconds timeout) {
  return push("acs", envelope, fill, timeout);
}

json::object FakeControlPlane::pushTcs(const json::object& envelope, bool fill,
                                       std::chrono::milliseconds timeout) {
  return push("tcs", envelope, fill, timeout);
}

std::optional<json::object> FakeControlPlane::waitForFrame(const std::string& channel,
                                                           const std::string& type,
                                                           const json::object& match,
                                                           std::chrono::milliseconds timeout,
                                                           std::int64_t after) {
  return waitForEvent(frameFilter(channel, type, match, after), timeout);
}

std::optional<json::object> FakeControlPlane::waitForAcsFrame(const std::string& type,
                                                              const json::object& match,
                                                              std::chrono::milliseconds timeout,
                                                              std::int64_t after) {
  return waitForFrame("acs", type, match, timeout, after);
}

std::optional<json::object> FakeControlPlane::waitForTcsFrame(const std::string& type,
                                                              const json::object& match,
                                                              std::chrono::milliseconds timeout,
                                                              std::int64_t after) {
  return waitForFrame("tcs", type, match, timeout, after);
}

std::vector<json::object> FakeControlPlane::acsFrames(const std::string& type) {
  return events(frameFilter("acs", type, {}, 0));
}

std::vector<json::object> FakeControlPlane::tcsFrames(const std::string& type) {
  return events(frameFilter("tcs", type, {}, 0));
}

std::optional<json::object> FakeControlPlane::waitForAcsConnection(
    std::chrono::milliseconds timeout, std::int64_t after) {
  return waitForEvent(
      {{"kind", "connect"}, {"channel", "acs"}, {"accepted", true}, {"after", after}}, timeout);
}

std::optional<json::object> FakeControlPlane::waitForTcsConnection(
    std::chrono::milliseconds timeout, std::int64_t after) {
  return waitForEvent(
      {{"kind", "connect"}, {"channel", "tcs"}, {"accepted", true}, {"after", after}}, timeout);
}

int FakeControlPlane::closeSessions(const std::string& channel, json::object how) {
  return static_cast<int>(
      expectOk("POST", "/" + channel + "/close", how).at("closed").as_array().size());
}

int FakeControlPlane::dropAcs(int code, const std::string& reason) {
  return closeSessions("acs", {{"code", code}, {"reason", reason}});
}

int FakeControlPlane::dropTcs(int code, const std::string& reason) {
  return closeSessions("tcs", {{"code", code}, {"reason", reason}});
}

int FakeControlPlane::abortAcs() {
  return closeSessions("acs", {{"abrupt", true}});
}

int FakeControlPlane::abortTcs() {
  return closeSessions("tcs", {{"abrupt", true}});
}

void FakeControlPlane::refuse(const std::string& channel, int count, int status,
                              const json::object& body) {
  json::object request{{"count", count}, {"status", status}};
  if (!body.empty()) request["body"] = body;
  expectOk("POST", "/" + channel + "/refuse", request);
}

void FakeControlPlane::refuseAcs(int count, int status, const json::object& body) {
  refuse("acs", count, status, body);
}

void FakeControlPlane::refuseTcs(int count, int status, const json::object& body) {
  refuse("tcs", count, status, body);
}

// --- failures and steering

std::vector<json::object> FakeControlPlane::signatureFailures() {
  return objects(expectOk("GET", "/signature-failures").at("failures"));
}

std::vector<json::object> FakeControlPlane::violations() {
  return objects(expectOk("GET", "/violations").at("violations"));
}

void FakeControlPlane::settings(const json::object& values) {
  expectOk("POST", "/settings", values);
}

void FakeControlPlane::reset(bool instances) {
  expectOk("POST", "/reset", json::object{{"instances", instances}});
}

}  // namespace ecs::testing
