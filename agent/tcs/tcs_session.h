// TcsSession: the agent's telemetry websocket session with ECS's Telemetry service (TCS), over
// which it publishes each running container's CPU and memory use (what service auto scaling and
// CloudWatch's ECS metrics are made of), the health of containers with a health check, and the
// instance's own status.
//
// Every publish_interval (and once as soon as the first connection opens) the session builds, from
// the StatsSampler's per-second samples since the last publish that went out, one
// PublishMetricsRequest (split into chunks of at most 10 tasks and 1 MiB sharing one messageId; an
// instance without tasks sends one idle request) and PublishHealthRequests; instance statuses go
// out on the same tick after they change. Every outbound frame is the header block of a
// SigV4-signed GET of the session URL with the envelope as its body, a blank line, and the
// envelope: that is how TCS authenticates each message, not only the upgrade.
//
// The session connects to the telemetryEndpoint DiscoverPollEndpoint names and keeps reconnecting
// until stop(): immediately after a clean close (close code 1000, 1001, 1006 or 1011 from the
// server, or our own close when the connection reaches its maximum age or hears nothing for the
// heartbeat timeout), after a backoff otherwise (1 s growing ×2 to 1 min, +0–20 % jitter, reset
// by a clean close or by staying connected). Heartbeats and acknowledgements get no answer.
//
// Threading: update(), setInstanceStatus(), start() and stop() may be called from any thread; the
// session runs on a strand of the io_context. The StatsSampler must outlive the session.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/aws/credentials.h"
#include "agent/common/result.h"
#include "agent/engine/task_snapshot.h"
#include "agent/metadata/stats_sampler.h"
#include "agent/tcs/tcs_messages.h"

namespace ecs::tcs {

struct TcsSessionOptions {
  std::string cluster;                 // as configured (a name or an ARN)
  std::string container_instance_arn;  // from RegisterContainerInstance
  std::string agent_version;           // "1.0.0", no "v"
  std::string agent_hash;              // git short hash
  std::string region;                  // signing region
  // The dockerVersion query value; empty (the default: the runtime is containerd) leaves it out.
  std::string docker_version;

  // The agent's own credentials, asked before every connection attempt and every publish.
  std::function<Result<aws::Credentials>()> credentials;
  // The TCS endpoint: DiscoverPollEndpoint's telemetryEndpoint, asked before every connection
  // attempt. Runs on the session's thread, so it should not block for long.
  std::function<Result<std::string>()> endpoint;

  std::chrono::milliseconds publish_interval{20000};
  bool metrics_enabled = true;  // ECS_DISABLE_METRICS=false
  bool health_enabled = true;   // container health checks reported to the cluster

  std::chrono::milliseconds heartbeat_timeout{60000};  // plus up to heartbeat_jitter
  std::chrono::milliseconds heartbeat_jitter{60000};
  std::chrono::milliseconds max_connection_age{30 * 60000};  // plus up to connection_age_jitter
  std::chrono::milliseconds connection_age_jitter{5 * 60000};
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{60000};
  double backoff_multiplier = 2.0;
  double backoff_jitter = 0.2;  // up to this fraction of the delay is added
  // Connected at least this long (default: the heartbeat timeout) resets the backoff.
  std::optional<std::chrono::milliseconds> backoff_reset_after;
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds close_timeout{5000};
  std::size_t max_message_bytes = 1024 * 1024;  // inbound; TCS only sends small messages
  ChunkLimits limits;
};

class TcsSessionState;

class TcsSession {
 public:
  // `sampler` must outlive the session; the session only reads it.
  TcsSession(boost::asio::io_context& io, TcsSessionOptions options,
             const metadata::StatsSampler& sampler);
  // Stops (see stop()).
  ~TcsSession();
  TcsSession(const TcsSession&) = delete;
  TcsSession& operator=(const TcsSession&) = delete;

  // The task's latest snapshot (the one with `removed` set forgets it). Any thread.
  void update(const engine::TaskSnapshotPtr& task);
  // The instance's status of `type` ("ContainerRuntime", "Agent"). A status that differs from the
  // last one set for the type is published on the next tick; the same status again only
  // refreshes lastUpdated. Any thread.
  void setInstanceStatus(const std::string& type, InstanceStatusValue status,
                         const std::string& reason = {});

  // Starts connecting and publishing; the io_context must be running (or run later).
  void start();
  // Stops reconnecting and publishing, gives up a connection attempt in flight and closes an open
  // connection with close code 1000 (bounded by close_timeout). Called from another thread than
  // the io_context's, it waits (at most close_timeout + 2 s) until the session has ended; from that
  // thread it only starts it. The io_context must be running.
  void stop();

  // Connections made so far; whether one is open now; publishes (all chunks written) so far.
  int connections() const;
  bool connected() const;
  int publishes() const;

 private:
  std::shared_ptr<TcsSessionState> state_;
};

// The upgrade URL's query, sorted and encoded as signed and sent (exposed for tests).
std::string tcsQuery(const TcsSessionOptions& options);

// One outbound frame: the header block of a SigV4-signed GET of `http_url` (service "ecs") with
// `envelope` as its body, sorted by name as Go's http.Header.Write orders them, a blank line, and
// the envelope. Exposed for tests.
Result<std::string> signedFrame(const std::string& http_url, const std::string& envelope,
                                const std::string& region, const aws::Credentials& credentials,
                                std::chrono::system_clock::time_point now);

}  // namespace ecs::tcs
