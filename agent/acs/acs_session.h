// AcsSession: the agent's long-lived websocket session with ECS's Agent Communication Service,
// over which the cluster sends tasks (PayloadMessage), task-role credentials, task manifests and
// heartbeats, and the agent acknowledges them.
//
// The session connects to the endpoint DiscoverPollEndpoint names, with a SigV4-signed upgrade
// (service "ecs"), and keeps reconnecting until stop(): immediately after a clean close (close
// code 1000, 1001, 1006 or 1011 from the server, or our own close at the connection's maximum
// age), after a backoff otherwise (250 ms growing ×1.5 to 2 min, +0–20 % jitter, reset by a clean
// close or by staying connected), and after an hour when the cluster calls the instance inactive.
// A connection that hears nothing for the heartbeat timeout is dropped.
//
// Heartbeats are answered here; everything that needs the engine goes to an AcsHandler, which
// acknowledges through AcsReply once it has acted (a PayloadMessage is acknowledged only after
// its tasks are accepted, and not at all when one of them could not be read). Agent updates are
// refused (NackRequest): updating the agent is the package manager's job.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/acs/acs_frame.h"
#include "agent/acs/acs_task.h"
#include "agent/aws/credentials.h"
#include "agent/common/result.h"

namespace ecs::acs {

struct AcsSessionOptions {
  std::string cluster;                 // as configured (a name or an ARN): the clusterArn key
  std::string container_instance_arn;  // from RegisterContainerInstance
  std::string agent_version;           // "1.0.0", no "v"
  std::string agent_hash;              // git short hash
  std::string region;                  // signing region
  // The dockerVersion query value; empty leaves the key out.
  std::string docker_version = "containerd";

  // The agent's own credentials, asked before every connection attempt.
  std::function<Result<aws::Credentials>()> credentials;
  // The ACS endpoint ("https://ecs-a-1.us-west-2.amazonaws.com"), asked before every connection
  // attempt: DiscoverPollEndpoint's `endpoint` (EcsClient caches it). Runs on the session's
  // thread, so it should not block for long.
  std::function<Result<std::string>()> endpoint;

  std::chrono::milliseconds heartbeat_timeout{60000};  // plus up to heartbeat_jitter
  std::chrono::milliseconds heartbeat_jitter{60000};
  std::chrono::milliseconds max_connection_age{30 * 60000};  // plus up to connection_age_jitter
  std::chrono::milliseconds connection_age_jitter{5 * 60000};
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{120000};
  double backoff_multiplier = 1.5;
  double backoff_jitter = 0.2;  // up to this fraction of the delay is added
  // Connected at least this long (default: the heartbeat timeout) resets the backoff.
  std::optional<std::chrono::milliseconds> backoff_reset_after;
  std::chrono::milliseconds inactive_instance_wait{3600000};
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds close_timeout{5000};
  std::size_t max_message_bytes = 16 * 1024 * 1024;
};

// A task as the cluster names it in manifests and stop verification.
struct TaskIdentifier {
  std::string task_arn;
  std::string task_cluster_arn;
  std::string desired_status;
};

// IAMRoleCredentialsMessage: fresh credentials for a task's role.
struct AcsCredentialsMessage {
  std::string message_id;
  std::string task_arn;
  std::string task_cluster_arn;
  RoleCredentials credentials;  // role_type set from the message's roleType
};

struct AcsTaskManifest {
  std::string message_id;
  std::string cluster_arn;
  std::string container_instance_arn;
  std::int64_t timeline = 0;  // the manifest's sequence number
  std::int64_t generated_at = 0;
  std::vector<TaskIdentifier> tasks;
};

struct AcsStopVerificationAck {
  std::string message_id;
  std::int64_t generated_at = 0;
  std::vector<TaskIdentifier> stop_tasks;
};

class AcsSessionState;

// Sends a handler's answers on the session's current connection; callable from any thread, after
// the handler returned or while it runs. Answers to a session that stopped, or while it is
// between connections, are dropped (the cluster sends the message again).
class AcsReply {
 public:
  AcsReply() = default;
  explicit AcsReply(std::weak_ptr<AcsSessionState> session) : session_(std::move(session)) {}

  // AckRequest plus an IAMRoleCredentialsAckRequest for every credentials set of its tasks; false
  // (and nothing sent) when a task of the payload could not be read.
  bool ackPayload(const AcsPayload& payload) const;
  // IAMRoleCredentialsAckRequest.
  void ackCredentials(const AcsCredentialsMessage& message) const;
  // AckRequest, and TaskStopVerificationMessage when there are candidates (local tasks meant to
  // run that the manifest does not list as RUNNING; desired_status "STOPPED").
  void ackManifest(const AcsTaskManifest& manifest,
                   const std::vector<TaskIdentifier>& stop_candidates) const;

 private:
  std::weak_ptr<AcsSessionState> session_;
};

// Called on the session's thread; a handler that needs long work hands it elsewhere and answers
// through the AcsReply later.
class AcsHandler {
 public:
  virtual ~AcsHandler() = default;
  virtual void onPayload(AcsPayload payload, AcsReply reply) = 0;
  virtual void onCredentials(AcsCredentialsMessage message, AcsReply reply) = 0;
  virtual void onTaskManifest(AcsTaskManifest manifest, AcsReply reply) {
    (void)manifest;
    (void)reply;
  }
  virtual void onStopVerificationAck(AcsStopVerificationAck ack) { (void)ack; }
  // The cluster refused the connection with InactiveInstanceException: the instance was
  // deregistered. The session waits inactive_instance_wait before trying again.
  virtual void onInactiveInstance() {}
  virtual void onConnected() {}
};

class AcsSession {
 public:
  // `handler` must outlive the session.
  AcsSession(boost::asio::io_context& io, AcsSessionOptions options, AcsHandler& handler);
  // Stops (see stop()).
  ~AcsSession();
  AcsSession(const AcsSession&) = delete;
  AcsSession& operator=(const AcsSession&) = delete;

  // Starts connecting; the io_context must be running (or run later).
  void start();
  // Stops reconnecting, gives up a connection attempt in flight and closes an open connection
  // with close code 1000 (the close handshake finishes on the io_context, bounded by
  // close_timeout). Called from another thread than the io_context's, it waits (at most
  // close_timeout + 2 s) until the session's loop has ended; from that thread it only starts it.
  // The io_context must be running.
  void stop();

  // Connections made so far; whether one is open now.
  int connections() const;
  bool connected() const;

 private:
  std::shared_ptr<AcsSessionState> state_;
};

// The upgrade URL's query, sorted and encoded as signed and sent (exposed for tests).
std::string acsQuery(const AcsSessionOptions& options, bool send_credentials);

}  // namespace ecs::acs
