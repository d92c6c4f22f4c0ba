#include "agent/daemon/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "agent/acs/acs_session.h"
#include "agent/aws/credentials.h"
#include "agent/aws/imds_client.h"
#include "agent/common/replace_file.h"
#include "agent/common/stop_wait.h"
#include "agent/daemon/acs_handler.h"
#include "agent/daemon/daemon_state.h"
#include "agent/daemon/registration.h"
#include "agent/daemon/state_reporter.h"
#include "agent/ecs/ecs_client.h"
#include "agent/node/node.h"
#include "agent/state/state_store.h"
#include "agent/tcs/tcs_session.h"

namespace ecs::daemon {

namespace fs = std::filesystem;

namespace {

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

// Adopts every task, waiting until the engine has taken each over (or a minute has passed).
// Returns the tasks nothing of which runs yet: they start afresh after the sweep.
// With the state store lost: the tasks whose containers still carry their documents, one per
// task. A document that cannot be read leaves its containers to the sweep.
std::vector<DocumentTask> tasksInContainerd(const config::Config& config) {
  auto containers = node::listAgentContainers(config);
  if (!containers) {
    spdlog::warn("could not list containerd's containers to take tasks over: {}",
                 containers.error().message);
    return {};
  }
  std::vector<DocumentTask> out;
  std::set<std::string> seen;
  for (const auto& container : *containers) {
    auto arn = container.labels.find("com.amazonaws.ecs.task-arn");
    if (arn == container.labels.end() || seen.contains(arn->second)) continue;
    if (container.task_document.empty()) continue;
    auto task = taskFromDocument(container.task_document);
    if (!task || task->adopted.spec.arn != arn->second) {
      spdlog::warn("container {}: its task document cannot be read ({}); leaving it to the sweep",
                   container.id, task ? "another task's" : task.error().message);
      continue;
    }
    seen.insert(arn->second);
    out.push_back(std::move(*task));
  }
  return out;
}

bool sameCluster(const std::string& cluster_arn, const std::string& cluster) {
  return cluster_arn.empty() || cluster_arn == cluster || cluster_arn.ends_with("/" + cluster);
}

std::vector<engine::TaskSpec> adoptAll(engine::TaskEngine& engine,
                                       std::vector<engine::AdoptedTask> tasks) {
  if (tasks.empty()) return {};
  const auto started = std::chrono::steady_clock::now();
  struct Count {
    std::mutex mutex;
    std::condition_variable done;
    size_t left = 0;
    std::vector<engine::TaskSpec> afresh;
  };
  auto count = std::make_shared<Count>();
  count->left = tasks.size();
  const size_t total = tasks.size();
  for (auto& task : tasks) {
    auto spec = task.spec;
    engine.adopt(std::move(task),
                 [count, spec = std::move(spec)](Result<engine::Adoption> result) mutable {
                   if (!result) {
                     spdlog::warn("task {}: not adopted: {}", spec.arn, result.error().message);
                   }
                   std::lock_guard lock(count->mutex);
                   if (result && *result == engine::Adoption::kStartAfresh)
                     count->afresh.push_back(std::move(spec));
                   if (--count->left == 0) count->done.notify_all();
                 });
  }
  std::unique_lock lock(count->mutex);
  if (!count->done.wait_for(lock, std::chrono::minutes(1), [&] { return count->left == 0; })) {
    spdlog::warn("{} of {} task(s) still being adopted; sweeping anyway", count->left, total);
  }
  spdlog::info("took over {} task(s) in {} ms", total,
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - started)
                   .count());
  return std::move(count->afresh);
}

std::string userAgent(const DaemonOptions& options) {
  return fmt::format(
      "Amazon ECS Agent - v{} ({}) (linux; ecs-node-agent) (+http://aws.amazon.com/ecs/)",
      options.version, options.commit);
}

}  // namespace

std::string stateStorePath(const config::Config& config) {
  return (fs::path(config.data_dir) / "state.db").string();
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

  // ---- the state store ----
  std::error_code dir_error;
  fs::create_directories(config.data_dir, dir_error);
  state::OpenReport opened;
  auto store = state::StateStore::open(stateStorePath(config), &opened);
  if (!store) {
    spdlog::critical("state store: {}", store.error().message);
    return kExitRestart;
  }
  if (!opened.moved_aside.empty()) {
    spdlog::error(
        "state store {} could not be used ({}); moved it aside to {} and starting with an empty "
        "one",
        stateStorePath(config), opened.reason, opened.moved_aside);
  } else if (opened.created) {
    spdlog::info("state store {} created", stateStorePath(config));
  }
  DaemonState state(**store);
  // A store lost (or never made): containerd may still run tasks an earlier process started.
  std::vector<DocumentTask> from_containerd;
  if (opened.created || !opened.moved_aside.empty()) {
    from_containerd = tasksInContainerd(config);
    std::erase_if(from_containerd,
                  [&](const DocumentTask& t) { return !sameCluster(t.cluster, config.cluster); });
  }

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
  std::string saved = state.instanceArn(config.cluster);
  if (saved.empty()) {
    for (const auto& t : from_containerd) {
      if (t.instance_arn.empty()) continue;
      saved = t.instance_arn;
      spdlog::info("container instance {}: found on the containers of task {}", saved,
                   t.adopted.spec.arn);
      break;
    }
  }
  if (!saved.empty()) {
    request.container_instance_arn = saved;
    spdlog::info("registering again as {}", saved);
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
  state.saveInstance(config.cluster, instance_arn);
  auto recovered = state.recover();
  if (!recovered) {
    spdlog::error("state store: {} (taking over nothing an earlier start left)",
                  recovered.error().message);
    recovered = RecoveredState{};
  }
  if (!from_containerd.empty()) {
    std::set<std::string> known;
    for (const auto& t : recovered->tasks) known.insert(t.spec.arn);
    std::erase_if(from_containerd,
                  [&](const DocumentTask& t) { return known.contains(t.adopted.spec.arn); });
    state.keepFromContainerd(from_containerd);
    for (auto& t : from_containerd) {
      spdlog::warn(
          "task {}: not in the state store; taking it over from its containers (its credentials "
          "are served again once the cluster refreshes them)",
          t.adopted.spec.arn);
      recovered->tasks.push_back(std::move(t.adopted));
    }
  }

  // ---- the node ----
  credentials::CredentialsStore* credentials_store = nullptr;
  StateReporterOptions reporter_options;
  reporter_options.cluster = config.cluster;
  reporter_options.on_task_stopped = [&credentials_store](const std::string& task_arn) {
    // A stopped task's credentials are revoked at once, not when its containers are cleaned up.
    if (credentials_store) credentials_store->revokeTask(task_arn);
  };
  reporter_options.journal = &state;
  StateReporter reporter(
      [&client](const ecsapi::TaskStateChange& change, std::stop_token stop) {
        return client.submitTaskStateChange(change, stop);
      },
      reporter_options);
  reporter.restore(recovered->reporter_tasks, std::move(recovered->pending));
  for (const auto& arn : recovered->unreadable) {
    reporter.reportUnrecognized(arn, "",
                                "UnrecognizedTaskError: kept by an earlier agent, but this agent "
                                "cannot read it");
  }

  boost::asio::io_context io;
  node::NodeOptions node_options;
  node_options.container_instance_arn = instance_arn;
  node_options.availability_zone = registered->availability_zone.value_or("");
  node_options.task_cleanup_wait = true;
  node_options.image_cleanup = true;
  // When each image was last used outlives this process: the cleaner's order holds after a restart.
  images::StoredImageUsage image_usage(**store);
  node_options.image_usage_records = &image_usage;
  node_options.defer_sweep = true;
  auto node = node::Node::create(config, io, reporter, node_options);
  if (!node) {
    spdlog::critical("{}", node.error().message);
    return kExitRestart;
  }
  credentials_store = &(*node)->credentials();
  auto& engine = (*node)->engine();
  EngineTaskSink sink(engine);
  DaemonAcsHandler handler(sink, *credentials_store, reporter, &state);
  handler.restore(recovered->manifest_timeline, recovered->credentials);
  engine.addSnapshotListener([&handler, &state](const engine::TaskSnapshotPtr& task) {
    state.onSnapshot(task);
    handler.onSnapshot(task);
  });
  reporter.start();
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&io] { io.run(); });

  // ---- recovery: take over what an earlier process left, then sweep what nothing owns ----
  auto afresh = adoptAll(engine, std::move(recovered->tasks));
  (*node)->sweep();
  for (auto& spec : afresh) engine.upsert(std::move(spec));

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
  // Tasks keep running for the next start to take over, unless told otherwise.
  if (config.stop_tasks_on_exit) {
    auto deadline = std::chrono::steady_clock::now() + options.shutdown_timeout;
    // Stopped tasks waiting out ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION go now too.
    engine.stopAndRemoveAll("The agent was stopped");
    if (!handler.waitUntilNoTasks(deadline)) {
      spdlog::warn("{} task(s) still stopping at shutdown", handler.knownTasks().size());
    }
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
