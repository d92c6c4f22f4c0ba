#include "agent/daemon/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/acs/acs_session.h"
#include "agent/aws/credentials.h"
#include "agent/aws/imds_client.h"
#include "agent/common/replace_file.h"
#include "agent/common/stop_wait.h"
#include "agent/daemon/acs_handler.h"
#include "agent/daemon/registration.h"
#include "agent/daemon/state_reporter.h"
#include "agent/ecs/ecs_client.h"
#include "agent/node/node.h"
#include "agent/tcs/tcs_session.h"

namespace ecs::daemon {

namespace fs = std::filesystem;

namespace {

struct SavedInstance {
  std::string cluster;
  std::string container_instance_arn;
};

std::optional<SavedInstance> loadInstance(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto value = boost::json::parse(text.str(), ec);
  if (ec || !value.is_object()) {
    spdlog::warn("{}: not a saved instance, registering anew", path);
    return std::nullopt;
  }
  const auto& o = value.as_object();
  SavedInstance saved;
  if (auto* v = o.if_contains("cluster"); v && v->is_string()) saved.cluster = v->as_string();
  if (auto* v = o.if_contains("containerInstanceArn"); v && v->is_string()) {
    saved.container_instance_arn = v->as_string();
  }
  if (saved.container_instance_arn.empty()) return std::nullopt;
  return saved;
}

Result<void> saveInstance(const std::string& path, const SavedInstance& saved) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  boost::json::object o{{"cluster", saved.cluster},
                        {"containerInstanceArn", saved.container_instance_arn}};
  return replaceFile(path, boost::json::serialize(o) + "\n");
}

bool imdsAllowed(const config::Config& config) {
  return !config.external && !config.ec2_metadata_disabled;
}

// The getenv the credential chain reads: on a host outside EC2, IMDS is never asked.
std::function<std::optional<std::string>(const std::string&)> chainEnvironment(
    const config::Config& config) {
  bool imds = imdsAllowed(config);
  return [imds](const std::string& name) -> std::optional<std::string> {
    if (!imds && name == "AWS_EC2_METADATA_DISABLED") return std::string("true");
    return aws::processGetenv(name);
  };
}

// Blocks SIGTERM and SIGINT in this thread and every thread it starts, so that sigwait takes them.
sigset_t blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Waits for SIGTERM/SIGINT on a thread of its own; `stop` is requested when one arrives.
class StopSignal {
 public:
  explicit StopSignal(sigset_t set)
      : thread_([this, set] {
          int signal = 0;
          sigwait(&set, &signal);
          if (signal == SIGUSR2) return;  // our own wake-up at destruction
          spdlog::info("{} received: stopping", strsignal(signal));
          source_.request_stop();
        }) {}
  ~StopSignal() {
    if (!source_.stop_requested()) pthread_kill(thread_.native_handle(), SIGUSR2);
    thread_.join();
  }
  std::stop_token token() const { return source_.get_token(); }
  void wait() const { waitForStop(source_.get_token()); }

 private:
  std::stop_source source_;
  std::thread thread_;
};

// One session's endpoint from DiscoverPollEndpoint (the client caches the answer for both).
std::function<Result<std::string>()> pollEndpoint(ecsapi::EcsClient& client,
                                                  std::string instance_arn,
                                                  std::string ecsapi::PollEndpoints::*field,
                                                  std::string what) {
  return [&client, instance_arn = std::move(instance_arn), field,
          what = std::move(what)]() -> Result<std::string> {
    auto endpoints = client.discoverPollEndpoint(instance_arn);
    if (!endpoints) return fail(endpoints.error().asError());
    if (((*endpoints).*field).empty()) {
      return fail(ErrorCode::kUnavailable, "DiscoverPollEndpoint named no {} endpoint", what);
    }
    return (*endpoints).*field;
  };
}

std::string userAgent(const DaemonOptions& options) {
  return fmt::format(
      "Amazon ECS Agent - v{} ({}) (linux; ecs-node-agent) (+http://aws.amazon.com/ecs/)",
      options.version, options.commit);
}

}  // namespace

std::string instanceStatePath(const config::Config& config) {
  return (fs::path(config.data_dir) / "instance.json").string();
}

int runDaemon(const config::Config& base_config, const DaemonOptions& options) {
  // SIGUSR2 is only the stop thread's wake-up; SIGTERM/SIGINT go to sigwait.
  sigset_t set = blockStopSignals();
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  StopSignal stop_signal(set);

  config::Config config = base_config;
  std::optional<aws::ImdsClient> imds;
  if (imdsAllowed(config))
    imds.emplace(aws::ImdsClient::optionsFromEnvironment(aws::processGetenv));
  if (config.region.empty() && imds) {
    if (auto region = imds->region()) config.region = *region;
  }
  if (config.region.empty()) {
    spdlog::critical("AWS_REGION: no region configured (set AWS_REGION or AWS_DEFAULT_REGION{})",
                     imds ? ", or run on EC2 where IMDS names it" : "");
    return kExitTerminal;
  }

  aws::CredentialChainOptions chain_options;
  chain_options.getenv = chainEnvironment(config);
  std::shared_ptr<aws::CredentialsProvider> chain = aws::makeDefaultCredentialChain(chain_options);
  auto credentials = [chain] { return chain->credentials(); };

  ecsapi::EcsClientOptions client_options;
  client_options.cluster = config.cluster;
  client_options.region = config.region;
  client_options.backend_host = config.backend_host;
  client_options.user_agent = userAgent(options);
  client_options.credentials = credentials;
  ecsapi::EcsClient client(client_options);

  // ---- registration ----
  auto resources = hostResources(config);
  if (!resources) {
    spdlog::critical("{}", resources.error().message);
    return kExitTerminal;
  }
  ecsapi::RegistrationRequest request;
  request.cluster = config.cluster;
  request.resources = *resources;

  for (const auto& [key, value] : config.container_instance_tags) {
    request.tags.push_back({key, value});
  }
  auto state_path = instanceStatePath(config);
  if (auto saved = loadInstance(state_path); saved && saved->cluster == config.cluster) {
    request.container_instance_arn = saved->container_instance_arn;
    spdlog::info("registering again as {}", saved->container_instance_arn);
  }
  // Custom attributes go with the first registration only, as the real agent sends them: the
  // cluster keeps them, and an operator may have changed them there since.
  request.attributes = instanceAttributes(config, !request.container_instance_arn);
  if (imds) {
    if (auto document = imds->get("/latest/dynamic/instance-identity/document")) {
      request.instance_identity_document = *document;
      if (auto signature = imds->get("/latest/dynamic/instance-identity/signature")) {
        request.instance_identity_signature = *signature;
      }
    }
  }
  auto registered = registerInstance(client, request, stop_signal.token());
  if (!registered) {
    const auto& error = registered.error();
    if (error.kind == RegistrationFailure::kCancelled) return kExitSuccess;
    spdlog::critical("registration with cluster {} failed: {}", config.cluster, error.message);
    return error.kind == RegistrationFailure::kFatal ? kExitTerminal : kExitRestart;
  }
  const std::string instance_arn = registered->container_instance_arn;
  spdlog::info("registered as {} in cluster {}", instance_arn, config.cluster);
  if (auto saved = saveInstance(state_path, {config.cluster, instance_arn}); !saved) {
    spdlog::warn("{}: {} (the next start registers a new instance)", state_path,
                 saved.error().message);
  }

  // ---- the node ----
  credentials::CredentialsStore* store = nullptr;
  StateReporterOptions reporter_options;
  reporter_options.cluster = config.cluster;
  reporter_options.on_task_stopped = [&store](const std::string& task_arn) {
    // A stopped task's credentials are revoked at once, not when its containers are cleaned up.
    if (store) store->revokeTask(task_arn);
  };
  StateReporter reporter(
      [&client](const ecsapi::TaskStateChange& change, std::stop_token stop) {
        return client.submitTaskStateChange(change, stop);
      },
      reporter_options);

  boost::asio::io_context io;
  node::NodeOptions node_options;
  node_options.container_instance_arn = instance_arn;
  node_options.availability_zone = registered->availability_zone.value_or("");
  node_options.task_cleanup_wait = true;
  node_options.image_cleanup = true;
  auto node = node::Node::create(config, io, reporter, node_options);
  if (!node) {
    spdlog::critical("{}", node.error().message);
    return kExitRestart;
  }
  store = &(*node)->credentials();
  EngineTaskSink sink((*node)->engine());
  DaemonAcsHandler handler(sink, *store, reporter);
  (*node)->engine().addSnapshotListener(
      [&handler](const engine::TaskSnapshotPtr& task) { handler.onSnapshot(task); });
  reporter.start();
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&io] { io.run(); });

  // ---- the cluster session ----
  boost::asio::io_context acs_io;
  acs::AcsSessionOptions acs_options;
  acs_options.cluster = config.cluster;
  acs_options.container_instance_arn = instance_arn;
  acs_options.agent_version = options.version;
  acs_options.agent_hash = options.commit;
  acs_options.region = config.region;
  acs_options.credentials = credentials;
  acs_options.endpoint =
      pollEndpoint(client, instance_arn, &ecsapi::PollEndpoints::endpoint, "ACS");
  acs::AcsSession session(acs_io, acs_options, handler);

  tcs::TcsSessionOptions tcs_options;
  tcs_options.cluster = config.cluster;
  tcs_options.container_instance_arn = instance_arn;
  tcs_options.agent_version = options.version;
  tcs_options.agent_hash = options.commit;
  tcs_options.region = config.region;
  tcs_options.credentials = credentials;
  tcs_options.endpoint =
      pollEndpoint(client, instance_arn, &ecsapi::PollEndpoints::telemetry_endpoint, "telemetry");
  tcs_options.publish_interval = config.metrics_publish_interval;
  tcs_options.metrics_enabled = !config.disable_metrics;
  tcs::TcsSession telemetry(acs_io, tcs_options, (*node)->stats());
  (*node)->engine().addSnapshotListener(
      [&telemetry](const engine::TaskSnapshotPtr& task) { telemetry.update(task); });
  telemetry.setInstanceStatus("Agent", tcs::InstanceStatusValue::kOk, "");
  telemetry.setInstanceStatus("ContainerRuntime", tcs::InstanceStatusValue::kOk, "");

  auto acs_work = boost::asio::make_work_guard(acs_io);
  std::thread acs_loop([&acs_io] { acs_io.run(); });
  session.start();
  telemetry.start();

  stop_signal.wait();

  // ---- shutdown ----
  session.stop();
  telemetry.stop();
  acs_work.reset();
  acs_io.stop();
  acs_loop.join();
  // Stop what runs (the agent cannot take it over after a restart yet) and tell the cluster.
  auto deadline = std::chrono::steady_clock::now() + options.shutdown_timeout;
  // Stopped tasks waiting out ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION go now too.
  (*node)->engine().stopAndRemoveAll("The agent was stopped");
  if (!handler.waitUntilNoTasks(deadline)) {
    spdlog::warn("{} task(s) still stopping at shutdown", handler.knownTasks().size());
  }
  reporter.stop(options.flush_timeout);
  if (auto pending = reporter.pending(); !pending.empty()) {
    spdlog::warn("{} state change(s) not delivered at shutdown", pending.size());
  }
  (*node)->stop();
  work.reset();
  io.stop();
  loop.join();
  return kExitSuccess;
}

}  // namespace ecs::daemon
