// FakeControlPlane: the stand-in ECS control plane (tests/support/fake_control_plane/server.py)
// as a child process for the lifetime of one object. The agent under test is pointed at
// endpointUrl() (ECS_BACKEND_HOST) with credentialsEnv(); the stand-in serves the ECS API, ACS and
// TCS there, verifies every SigV4 signature with botocore and records every call and frame. The
// test steers and inspects it through the control API on a second loopback port.
//
// Waits are long-polls answered by the stand-in when the event arrives, never sleeps. Calls that
// cannot reach the stand-in throw std::runtime_error (failing the test with the process's log);
// waits that time out return nullopt. Not thread-safe: use one object from one test thread.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace ecs::testing {

struct FakeControlPlaneOptions {
  // The credentials and region the stand-in accepts signatures for.
  std::string region = "us-west-2";
  std::string access_key = "AKIDFAKECONTROLPLANE";
  std::string secret_key = "fake/control+plane/secret";
  std::string session_token;  // empty: requests must carry none
  std::string account = "123456789012";
  // Events kept in memory (older ones are dropped; counters keep counting).
  int max_events = 10000;
  std::chrono::milliseconds start_timeout{20000};
};

struct ControlResponse {
  int status = 0;
  boost::json::value body;
};

class FakeControlPlane {
 public:
  // Starts the stand-in and waits until it listens. Throws std::runtime_error if it cannot.
  explicit FakeControlPlane(FakeControlPlaneOptions options = {});
  // SIGTERM and wait (SIGKILL after 10 s); removes its working directory.
  ~FakeControlPlane();
  FakeControlPlane(const FakeControlPlane&) = delete;
  FakeControlPlane& operator=(const FakeControlPlane&) = delete;

  const FakeControlPlaneOptions& options() const { return options_; }
  // http://127.0.0.1:PORT: the ECS API; DiscoverPollEndpoint answers with acsEndpoint() and
  // tcsEndpoint() on the same port (the agent appends "/ws?...").
  const std::string& endpointUrl() const { return endpoint_; }
  std::string acsEndpoint() const { return endpoint_; }
  std::string tcsEndpoint() const { return endpoint_ + "/tcs"; }
  std::string controlUrl() const;
  int apiPort() const { return api_port_; }
  // A directory of this stand-in's own, removed by the destructor: for the test's scratch files.
  const std::string& workdir() const { return dir_; }
  // The stand-in's stdout and stderr so far, for assertion messages.
  std::string log() const;
  // Sends SIGTERM and waits; the exit status (0 for a clean stop), -1 if it had to be killed.
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // The environment of an AWS client (the agent, the AWS CLI) that signs with the test's
  // credentials and region and reads nothing else: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  // AWS_SESSION_TOKEN (empty when there is none, hiding the environment's), AWS_REGION,
  // AWS_DEFAULT_REGION, AWS_EC2_METADATA_DISABLED=true, AWS_CONFIG_FILE and
  // AWS_SHARED_CREDENTIALS_FILE=/dev/null, AWS_PAGER empty.
  std::vector<std::string> credentialsEnv() const;
  // The directory of server.py and ws_client.py (a signed websocket client for tests).
  static std::string scriptDir();

  // --- the control API, raw: `path` as in the stand-in's README; `body` null for none ----------
  ControlResponse control(const std::string& method, const std::string& path,
                          const boost::json::value& body = nullptr,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // --- events -----------------------------------------------------------------------------------
  // Recorded events matching `filter` (kind, channel, op, type, conn, accepted, status, after,
  // match, where, limit — see the README).
  std::vector<boost::json::object> events(const boost::json::object& filter);
  // The first `count` events matching `filter`, once there are that many; nullopt on timeout.
  std::optional<std::vector<boost::json::object>> waitForEvents(boost::json::object filter,
                                                                std::size_t count,
                                                                std::chrono::milliseconds timeout);
  std::optional<boost::json::object> waitForEvent(const boost::json::object& filter,
                                                  std::chrono::milliseconds timeout);
  // The sequence number of the latest event: pass as "after" to wait only for what follows.
  std::int64_t lastSeq();

  // --- ECS API ----------------------------------------------------------------------------------
  // Recorded calls of `op` (e.g. "RegisterContainerInstance"): events with body, status,
  // response, signed_headers.
  std::vector<boost::json::object> calls(const std::string& op);
  // The first call of `op` whose body contains `match`, after sequence number `after`.
  std::optional<boost::json::object> waitForCall(
      const std::string& op, const boost::json::object& match = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10), std::int64_t after = 0);
  // The next `count` calls of `op` fail with HTTP `status` and {"__type": type, "message"}
  // (count -1: every call until clearFaults).
  void failNext(const std::string& op, int count, int status = 500,
                const std::string& type = "ServerException",
                const std::string& message = "injected by the test");
  void throttleNext(const std::string& op, int count) {
    failNext(op, count, 400, "ThrottlingException", "Rate exceeded");
  }
  // The next `count` calls of `op` get no answer: the connection is closed.
  void dropNext(const std::string& op, int count);
  void clearFaults();
  // The registered container instances (ARN, cluster, attributes, registrations, ...).
  std::vector<boost::json::object> instances();

  // --- ACS and TCS ------------------------------------------------------------------------------
  // Sends {"type": ..., "message": {...}} to the newest open session, waiting up to `timeout`
  // for one. With `fill`, messageId, clusterArn, containerInstanceArn, generatedAt and
  // seqNum/timeline are filled in where the shape has them and the test left them out. Returns
  // the message as sent. Throws if no session opened in time.
  boost::json::object pushAcs(const boost::json::object& envelope, bool fill = true,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
  boost::json::object pushTcs(const boost::json::object& envelope, bool fill = true,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The first frame the agent sent of `type` whose message contains `match` (after sequence
  // number `after`); the event has type, message, conn, problems (wire-model violations) and,
  // for TCS, signed and signature_ok.
  std::optional<boost::json::object> waitForAcsFrame(
      const std::string& type, const boost::json::object& match = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10), std::int64_t after = 0);
  std::optional<boost::json::object> waitForTcsFrame(
      const std::string& type, const boost::json::object& match = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(10), std::int64_t after = 0);
  std::optional<boost::json::object> waitForAcsFrame(const std::string& type,
                                                     std::chrono::milliseconds timeout) {
    return waitForAcsFrame(type, {}, timeout);
  }
  std::optional<boost::json::object> waitForTcsFrame(const std::string& type,
                                                     std::chrono::milliseconds timeout) {
    return waitForTcsFrame(type, {}, timeout);
  }
  // The frames recorded so far (of `type`, or all).
  std::vector<boost::json::object> acsFrames(const std::string& type = "");
  std::vector<boost::json::object> tcsFrames(const std::string& type = "");
  // An accepted handshake after sequence number `after` (the "connect" event, with query).
  std::optional<boost::json::object> waitForAcsConnection(
      std::chrono::milliseconds timeout = std::chrono::seconds(10), std::int64_t after = 0);
  std::optional<boost::json::object> waitForTcsConnection(
      std::chrono::milliseconds timeout = std::chrono::seconds(10), std::int64_t after = 0);
  // Closes every open session with a close frame (`code`, `reason`); returns how many.
  int dropAcs(int code = 1000, const std::string& reason = "");
  int dropTcs(int code = 1000, const std::string& reason = "");
  // Closes every open session without a close frame (the TCP connection is aborted).
  int abortAcs();
  int abortTcs();
  // The next `count` handshakes get HTTP `status` with `body` (default an
  // InactiveInstanceException); count -1: every one until reset().
  void refuseAcs(int count, int status = 400, const boost::json::object& body = {});
  void refuseTcs(int count, int status = 400, const boost::json::object& body = {});

  // --- failures ---------------------------------------------------------------------------------
  // Every signature the stand-in rejected: where (api, acs-handshake, tcs-handshake, tcs-frame),
  // error_type, reason, canonical_request, string_to_sign, received/expected_authorization.
  std::vector<boost::json::object> signatureFailures();
  // Protocol violations: bad API input, frames breaking the wire model, bad handshake queries.
  std::vector<boost::json::object> violations();

  // --- steering ---------------------------------------------------------------------------------
  // Merges settings (see the README), e.g. {"rci_drop_attributes": ["ecs.os-type"]}.
  void settings(const boost::json::object& values);
  // Forgets events, failures, violations, faults and refusals; with `instances`, registrations
  // too.
  void reset(bool instances = false);

 private:
  boost::json::object expectOk(const std::string& method, const std::string& path,
                               const boost::json::value& body = nullptr);
  std::optional<boost::json::object> waitForFrame(const std::string& channel,
                                                  const std::string& type,
                                                  const boost::json::object& match,
                                                  std::chrono::milliseconds timeout,
                                                  std::int64_t after);
  boost::json::object push(const std::string& channel, const boost::json::object& envelope,
                           bool fill, std::chrono::milliseconds timeout);
  int closeSessions(const std::string& channel, boost::json::object how);
  void refuse(const std::string& channel, int count, int status, const boost::json::object& body);
  void start();
  [[noreturn]] void fail(const std::string& what) const;

  FakeControlPlaneOptions options_;
  std::string dir_;
  std::string endpoint_;
  int api_port_ = 0;
  int control_port_ = 0;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // the stand-in stops when this closes, even if the test crashes
};

}  // namespace ecs::testing
