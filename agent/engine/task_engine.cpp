#include "agent/engine/task_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "agent/common/failpoint.h"
#include "agent/engine/container_spec.h"
#include "agent/engine/image_user.h"

namespace ecs::engine {
namespace fs = std::filesystem;
using Clock = EngineClock;
using SystemClock = std::chrono::system_clock;

namespace {

constexpr size_t kHealthOutputLimit = 1024;

bool isTerminal(ContainerStatus status) {
  return status == ContainerStatus::kStopped;
}

std::string sanitizeName(std::string_view name) {
  std::string out;
  for (char c : name) {
    out.push_back((std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '-');
  }
  return out.substr(0, 40);
}

int signalNumber(std::string_view name) {
  static const std::map<std::string, int, std::less<>> kSignals = {
      {"SIGTERM", SIGTERM}, {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGKILL", SIGKILL},
      {"SIGHUP", SIGHUP},   {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGWINCH", SIGWINCH}};
  if (name.empty()) return SIGTERM;
  std::string upper(name);
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!upper.starts_with("SIG")) upper = "SIG" + upper;
  if (auto it = kSignals.find(upper); it != kSignals.end()) return it->second;
  int number = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), number);
  if (ec == std::errc() && end == name.data() + name.size() && number > 0 && number < NSIG) {
    return number;
  }
  return SIGTERM;
}

// "2h", "90s", "1500ms": for messages naming a configured duration.
std::string describeDuration(std::chrono::milliseconds d) {
  using namespace std::chrono;
  if (d.count() % 3600000 == 0) return fmt::format("{}h", duration_cast<hours>(d).count());
  if (d.count() % 60000 == 0) return fmt::format("{}m", duration_cast<minutes>(d).count());
  if (d.count() % 1000 == 0) return fmt::format("{}s", duration_cast<seconds>(d).count());
  return fmt::format("{}ms", d.count());
}

// What the task's resources gave a container, into the inputs of its OCI spec.
void withResources(ContainerSpecInputs& inputs, const ContainerResources& given) {
  inputs.netns_path = given.netns_path;
  inputs.ip_address = given.ip_address;
  inputs.extra_env = given.env;
  inputs.extra_mounts = given.mounts;
  inputs.cgroups_path = given.cgroups_path;
}

}  // namespace

std::string_view toString(ContainerStatus status) {
  switch (status) {
    case ContainerStatus::kNone:
      return "NONE";
    case ContainerStatus::kManifestPulled:
      return "MANIFEST_PULLED";
    case ContainerStatus::kPulled:
      return "PULLED";
    case ContainerStatus::kCreated:
      return "CREATED";
    case ContainerStatus::kRunning:
      return "RUNNING";
    case ContainerStatus::kStopped:
      return "STOPPED";
  }
  return "NONE";
}

std::string_view toString(HealthStatus status) {
  switch (status) {
    case HealthStatus::kUnknown:
      return "UNKNOWN";
    case HealthStatus::kHealthy:
      return "HEALTHY";
    case HealthStatus::kUnhealthy:
      return "UNHEALTHY";
  }
  return "UNKNOWN";
}

std::string taskIdFromArn(std::string_view task_arn) {
  auto slash = task_arn.rfind('/');
  return std::string(slash == std::string_view::npos ? task_arn : task_arn.substr(slash + 1));
}

struct TaskEngine::Container {
  const ContainerDefinition* def = nullptr;
  std::string runtime_id;
  std::string dir;
  ContainerStatus known = ContainerStatus::kNone;
  ContainerStatus desired = ContainerStatus::kRunning;
  bool busy = false;     // a transition is in flight on a pool
  bool pulling = false;  // the transition in flight is a pull (a stop does not wait for it)
  bool created = false;  // a containerd container exists
  bool stop_sent = false;
  bool restarting = false;  // exited; a new task is being started under the restart policy
  std::shared_ptr<std::atomic<bool>> cancel_pull;
  std::optional<uint32_t> pending_exit;  // an exit that arrived while the start was in flight
  std::optional<int> exit_code;
  std::string reason;
  bool oom = false;
  images::ResolvedImage image;
  runtime::ImageConfig image_config;
  ContainerSpecInputs spec_inputs;
  ContainerResources resources;  // what the task's resources gave it
  std::optional<SystemClock::time_point> created_at, started_wall_at, finished_at;
  std::optional<SystemClock::time_point> health_checked_at;
  HealthStatus health = HealthStatus::kUnknown;
  int health_failures = 0;
  uint64_t health_generation = 0;  // bumps on every (re)start: stale checks are ignored
  std::string health_output;
  Clock::time_point started_at{};
  std::optional<Clock::time_point> last_restart_at;
  int restart_count = 0;
  std::unique_ptr<EngineTimer> stop_timer;
  std::unique_ptr<EngineTimer> health_timer;
  std::unique_ptr<EngineTimer> start_timeout_timer;
  std::unique_ptr<EngineTimer> pull_timer;

  void cancelTimers() {
    stop_timer->cancel();
    health_timer->cancel();
    start_timeout_timer->cancel();
    pull_timer->cancel();
  }
};

struct TaskEngine::Task {
  std::string arn;
  std::string id;
  TaskDefinition definition;
  std::string role_credentials_id;
  std::string execution_role_credentials_id;
  std::string document;
  std::vector<std::unique_ptr<Container>> containers;
  ContainerStatus known = ContainerStatus::kNone;
  ContainerStatus desired = ContainerStatus::kRunning;
  std::string stop_reason;
  std::string dir;
  std::vector<std::unique_ptr<TaskResource>> resources;  // created in order, cleaned in reverse
  std::optional<SystemClock::time_point> pull_started_at, pull_stopped_at, started_at, stopped_at;
  bool resources_ready = false;
  bool resources_busy = false;
  bool releasing = false;       // releaseOnStop() is running on a worker
  bool remove_at_once = false;  // stopAndRemove(): no cleanup wait
  bool cleaning = false;
  std::unique_ptr<EngineTimer> cleanup_timer;  // the cleanup wait of a STOPPED task

  Container* container(std::string_view name) {
    for (auto& c : containers) {
      if (c->def->name == name) return c.get();
    }
    return nullptr;
  }
  // The task's resources for a worker to call, in creation order.
  std::vector<TaskResource*> resourcePointers() const {
    std::vector<TaskResource*> out;
    for (const auto& r : resources) out.push_back(r.get());
    return out;
  }
  TaskInfo info() const {
    return TaskInfo{arn, id, dir, &definition, role_credentials_id, execution_role_credentials_id};
  }
};

std::map<std::string, std::string> TaskEngine::containerLabels(const Task& task,
                                                               const Container& c) const {
  auto labels = c.def->docker_labels;
  labels["com.amazonaws.ecs.task-arn"] = task.arn;
  labels["com.amazonaws.ecs.container-name"] = c.def->name;
  labels["com.amazonaws.ecs.task-definition-family"] = task.definition.family;
  labels["com.amazonaws.ecs.task-definition-version"] = std::to_string(task.definition.revision);
  labels["com.amazonaws.ecs.cluster"] = options_.cluster;
  labels[runtime::kLabelManagedBy] = runtime::kManagedByValue;
  return labels;
}

ContainerInfo TaskEngine::containerInfo(const Task&, const Container& c) const {
  return ContainerInfo{c.def, c.runtime_id, c.dir};
}

TaskEngine::TaskEngine(boost::asio::io_context& io, EngineDependencies deps, EngineOptions options)
    : io_(io),
      deps_(std::move(deps)),
      options_(std::move(options)),
      workers_(static_cast<size_t>(std::max(1, options_.workers))),
      pulls_(static_cast<size_t>(std::max(1, options_.pull_workers))),
      listener_thread_(1),
      listener_strand_(boost::asio::make_strand(listener_thread_.get_executor())),
      alive_(std::make_shared<bool>(true)) {
  std::weak_ptr<bool> alive = alive_;
  event_gate_ = std::make_shared<EventGate>();
  event_gate_->io = &io_;
  deps_.runtime->onExit([this, alive, gate = event_gate_](const std::string& id, uint32_t status) {
    std::lock_guard lock(gate->mutex);
    if (!gate->io) return;
    boost::asio::post(*gate->io, [this, alive, id, status] {
      if (alive.lock()) handleExit(id, status);
    });
  });
  deps_.runtime->onOom([this, alive, gate = event_gate_](const std::string& id) {
    std::lock_guard lock(gate->mutex);
    if (!gate->io) return;
    boost::asio::post(*gate->io, [this, alive, id] {
      if (alive.lock()) handleOom(id);
    });
  });
}

TaskEngine::~TaskEngine() {
  {
    std::lock_guard lock(event_gate_->mutex);
    event_gate_->io = nullptr;
  }
  *alive_ = false;
  alive_.reset();
  drain();
}

void TaskEngine::drain() {
  shutting_down_->store(true);
  workers_.join();
  pulls_.join();
  listener_thread_.join();
}

void TaskEngine::addSnapshotListener(std::function<void(const TaskSnapshotPtr&)> listener) {
  snapshot_listeners_.push_back(std::move(listener));
}

void TaskEngine::upsert(TaskSpec spec) {
  boost::asio::post(io_, [this, spec = std::move(spec)]() mutable { apply(std::move(spec)); });
}

void TaskEngine::stopTask(const std::string& task_arn, std::string reason) {
  boost::asio::post(io_, [this, task_arn, reason = std::move(reason)]() mutable {
    if (auto* task = findTask(task_arn)) setDesiredStopped(*task, std::move(reason));
  });
}

void TaskEngine::stopAndRemove(const std::string& task_arn, std::string reason) {
  boost::asio::post(io_, [this, task_arn, reason = std::move(reason)]() mutable {
    if (auto* task = findTask(task_arn)) markForRemoval(*task, std::move(reason));
  });
}

void TaskEngine::stopAndRemoveAll(std::string reason) {
  boost::asio::post(io_, [this, reason = std::move(reason)] {
    std::vector<std::string> arns;
    for (const auto& [arn, task] : tasks_) arns.push_back(arn);
    // ARNs first: the loop over tasks_ must not depend on what stopping a task does to it.
    for (const auto& arn : arns) {
      if (auto* task = findTask(arn)) markForRemoval(*task, reason);
    }
  });
}

void TaskEngine::markForRemoval(Task& task, std::string reason) {
  task.remove_at_once = true;
  if (task.known != ContainerStatus::kStopped) return setDesiredStopped(task, std::move(reason));
  // Already stopped: waiting out the cleanup wait, or still releasing (which then cleans up).
  if (task.releasing || task.cleaning) return;
  task.cleanup_timer->cancel();
  cleanup(task);
}

std::string TaskEngine::logPath(const std::string& task_arn, const std::string& container_name,
                                bool stderr_stream) const {
  return (fs::path(options_.data_dir) / "tasks" / taskIdFromArn(task_arn) /
          sanitizeName(container_name) / (stderr_stream ? "stderr.log" : "stdout.log"))
      .string();
}

TaskEngine::Task* TaskEngine::findTask(const std::string& task_arn) {
  auto it = tasks_.find(task_arn);
  return it == tasks_.end() ? nullptr : it->second.get();
}

template <typename Pool, typename Work, typename Done>
void TaskEngine::offload(Pool& pool, const std::string& task_arn, Work work, Done done) {
  std::weak_ptr<bool> alive = alive_;
  pool.post([this, alive, task_arn, work = std::move(work), done = std::move(done)]() mutable {
    auto result = work();
    boost::asio::post(
        io_, [this, alive, task_arn, result = std::move(result), done = std::move(done)]() mutable {
          if (!alive.lock()) return;
          if (auto* task = findTask(task_arn)) done(*task, std::move(result));
        });
  });
}

void TaskEngine::apply(TaskSpec spec) {
  if (finished_.contains(spec.arn)) {
    spdlog::debug("task {} has already finished; ignoring it (desired {})", spec.arn,
                  toString(spec.desired));
    return;
  }
  auto* task = findTask(spec.arn);
  if (!task) return addTask(std::move(spec));
  if (!spec.role_credentials_id.empty()) task->role_credentials_id = spec.role_credentials_id;
  if (!spec.execution_role_credentials_id.empty())
    task->execution_role_credentials_id = spec.execution_role_credentials_id;
  // Desired status only rises: a RUNNING redelivered after a stop changes nothing.
  if (spec.desired == ContainerStatus::kStopped && task->desired != ContainerStatus::kStopped) {
    setDesiredStopped(*task, "");
  }
}

void TaskEngine::rememberFinished(const std::string& task_arn) {
  if (!finished_.insert(task_arn).second) return;
  finished_order_.push_back(task_arn);
  while (finished_order_.size() > std::max<size_t>(1, options_.finished_memory)) {
    finished_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

TaskEngine::Task& TaskEngine::makeTask(TaskSpec& spec) {
  auto task = std::make_unique<Task>();
  task->arn = spec.arn;
  task->id = taskIdFromArn(spec.arn);
  task->definition = std::move(spec.definition);
  task->role_credentials_id = std::move(spec.role_credentials_id);
  task->execution_role_credentials_id = std::move(spec.execution_role_credentials_id);
  task->document = std::move(spec.document);
  task->dir = (fs::path(options_.data_dir) / "tasks" / task->id).string();
  task->cleanup_timer = std::make_unique<EngineTimer>(io_);
  size_t index = 0;
  for (const auto& def : task->definition.container_definitions) {
    auto c = std::make_unique<Container>();
    c->def = &def;
    c->runtime_id = fmt::format("{}-{}-{}", task->id, index++, sanitizeName(def.name));
    c->dir = (fs::path(task->dir) / sanitizeName(def.name)).string();
    c->stop_timer = std::make_unique<EngineTimer>(io_);
    c->health_timer = std::make_unique<EngineTimer>(io_);
    c->start_timeout_timer = std::make_unique<EngineTimer>(io_);
    c->pull_timer = std::make_unique<EngineTimer>(io_);
    by_runtime_id_[c->runtime_id] = {task->arn, def.name};
    task->containers.push_back(std::move(c));
  }
  auto& ref = *task;
  tasks_.emplace(ref.arn, std::move(task));
  return ref;
}

void TaskEngine::addTask(TaskSpec spec) {
  auto& ref = makeTask(spec);
  if (spec.desired == ContainerStatus::kStopped) {
    spdlog::info("task {}: arrived already stopped; reporting it stopped", ref.arn);
    return setDesiredStopped(ref, "");
  }
  spdlog::info("task {}: starting ({} containers)", ref.arn, ref.containers.size());
  step(ref);
}

void TaskEngine::adopt(AdoptedTask task, std::function<void(Result<Adoption>)> done) {
  boost::asio::post(io_, [this, task = std::move(task), done = std::move(done)]() mutable {
    adoptOnLoop(std::move(task), std::move(done));
  });
}

// What a worker found of an adopted task: its resources recovered, each container's state in
// the runtime, and what a running container needs (its image, its resources' contributions).
struct AdoptedState {
  bool afresh = false;  // nothing of it runs: started again from the beginning
  Result<void> resources_status;
  std::vector<std::unique_ptr<TaskResource>> resources;
  struct Container {
    Result<RuntimeContainerState> state = RuntimeContainerState{};
    images::ResolvedImage image;
    runtime::ImageConfig image_config;
    std::optional<ContainerResources> given;
    ContainerSpecInputs inputs;
  };
  std::vector<Container> containers;
};

void TaskEngine::adoptOnLoop(AdoptedTask adopted, std::function<void(Result<Adoption>)> done) {
  auto finish = [done = std::move(done)](Result<Adoption> result) {
    if (done) done(std::move(result));
  };
  if (findTask(adopted.spec.arn)) {
    return finish(
        fail(ErrorCode::kAlreadyExists, "task {} is already running here", adopted.spec.arn));
  }
  const auto desired = adopted.spec.desired;
  auto& task = makeTask(adopted.spec);
  task.known = adopted.known;
  task.stop_reason = adopted.stop_reason;
  task.resources_busy = true;                      // nothing moves until the worker has looked
  for (auto& c : task.containers) c->busy = true;  // an exit meanwhile waits in pending_exit
  spdlog::info("task {}: adopting it ({} containers, last reported {})", task.arn,
               task.containers.size(), toString(task.known));

  struct Wanted {
    std::string runtime_id;
    const ContainerDefinition* def;
    ContainerInfo info;
  };
  std::vector<Wanted> wanted;
  for (const auto& c : task.containers) {
    wanted.push_back({c->runtime_id, c->def, containerInfo(task, *c)});
  }
  const bool stopped = task.known == ContainerStatus::kStopped;
  offload(
      task.arn,
      [this, info = task.info(), wanted, stopped, known = task.known,
       definition = &task.definition]() -> std::shared_ptr<AdoptedState> {
        auto found = std::make_shared<AdoptedState>();
        std::vector<Result<RuntimeContainerState>> states;
        bool any = false;
        for (const auto& w : wanted) {
          states.push_back(deps_.runtime->inspect(w.runtime_id));
          if (!states.back() || states.back()->exists) any = true;
        }
        if (!any && known < ContainerStatus::kRunning && !stopped) {
          found->afresh = true;
          return found;
        }
        // Resources: recovered in creation order; after a failure the rest are only obtained,
        // so that cleanup() can release what they left.
        for (auto* factory : deps_.resources) {
          auto resource = factory->resourceFor(info);
          if (!resource) {
            if (found->resources_status) found->resources_status = fail(resource.error());
            continue;
          }
          if (!*resource) continue;
          found->resources.push_back(std::move(*resource));
          if (!found->resources_status || stopped) continue;
          if (auto recovered = found->resources.back()->recover(); !recovered) {
            found->resources_status =
                fail(recovered.error().wrap(std::string(found->resources.back()->name())));
          }
        }
        for (size_t i = 0; i < wanted.size(); ++i) {
          const auto& w = wanted[i];
          auto& c = found->containers.emplace_back();
          c.state = std::move(states[i]);
          if (!c.state || !c.state->exists) continue;
          if (c.state->process == runtime::TaskStatus::kCreated) {
            // Killed between creating the process and starting it: start it afresh — unless
            // the start it had sent lands now, and the process runs after all.
            if (auto deleted = deps_.runtime->deleteTask(w.runtime_id); deleted) {
              c.state->process = runtime::TaskStatus::kUnknown;
            } else {
              spdlog::warn("adopt: {}", deleted.error().message);
              c.state = deps_.runtime->inspect(w.runtime_id);
              if (c.state && c.state->process == runtime::TaskStatus::kCreated) {
                c.state->process = runtime::TaskStatus::kUnknown;
              }
              if (!c.state || !c.state->exists) continue;
            }
          }
          if (stopped || !found->resources_status) continue;
          // What health checks, stop signals and metadata need of a running container.
          if (auto reference = images::ImageReference::parse(w.def->image)) {
            if (auto image = deps_.images->resolveLocal(*reference)) {
              if (auto config = runtime::parseImageConfig(image->config_json)) {
                c.image_config = std::move(*config);
              }
              c.image = std::move(*image);
            }
          }
          ContainerResources given;
          bool ok = true;
          for (const auto& resource : found->resources) {
            if (auto added = resource->contribute(w.info, given); !added) {
              spdlog::warn("adopt: {}: {}", resource->name(), added.error().message);
              ok = false;
            }
          }
          if (!ok) continue;
          c.inputs.task = definition;
          c.inputs.container = w.def;
          c.inputs.environment_files_dir = options_.environment_files_dir;
          c.inputs.image = c.image_config;
          c.inputs.task_id = info.id;
          c.inputs.runtime_id = w.runtime_id;
          c.inputs.container_dir = w.info.dir;
          withResources(c.inputs, given);
          c.inputs.resolve_user = [runtime = deps_.runtime, chain_id = c.image.chain_id,
                                   id = w.runtime_id](const std::string& user) {
            return runtime->resolveUser(id, chain_id, user);
          };
          c.given = std::move(given);
        }
        return found;
      },
      [this, desired, finish](Task& t, std::shared_ptr<AdoptedState> found) mutable {
        if (found->afresh) {
          spdlog::info("task {}: nothing of it runs yet; it starts afresh", t.arn);
          for (auto& c : t.containers) by_runtime_id_.erase(c->runtime_id);
          tasks_.erase(t.arn);  // `t` is gone
          return finish(Adoption::kStartAfresh);
        }
        t.resources_busy = false;
        t.resources = std::move(found->resources);
        t.resources_ready = static_cast<bool>(found->resources_status);
        std::vector<std::pair<std::string, uint32_t>> exited;
        for (size_t i = 0; i < t.containers.size(); ++i) {
          auto& c = *t.containers[i];
          auto& seen = found->containers[i];
          c.busy = false;
          if (!seen.state) {
            spdlog::warn("task {}: container {}: {}", t.arn, c.def->name,
                         seen.state.error().message);
            seen.state = RuntimeContainerState{};
          }
          const auto& state = *seen.state;
          c.image = std::move(seen.image);
          c.image_config = std::move(seen.image_config);
          if (seen.given) {
            c.resources = std::move(*seen.given);
            c.spec_inputs = std::move(seen.inputs);
          }
          if (!state.exists) {
            if (t.known >= ContainerStatus::kRunning) {
              // It ran, and is gone: something removed it while no agent was watching.
              c.known = ContainerStatus::kStopped;
              c.reason = "the container was removed while the agent was not running";
            }
            continue;  // otherwise it is pulled and created as in a first start
          }
          c.created = true;
          c.created_at = SystemClock::now();
          switch (state.process) {
            case runtime::TaskStatus::kRunning:
            case runtime::TaskStatus::kPaused:
            case runtime::TaskStatus::kPausing:
              c.known = ContainerStatus::kRunning;
              c.started_wall_at = state.started_at.value_or(SystemClock::now());
              // The same instant on the steady clock (restart policy, health start period).
              c.started_at = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                                std::max(SystemClock::now() - *c.started_wall_at,
                                                         SystemClock::duration::zero()));
              ++c.health_generation;
              if (c.pending_exit) {  // it exited while the worker looked
                exited.emplace_back(c.runtime_id, *c.pending_exit);
              } else if (const auto& hc = c.def->health_check;
                         hc && !hc->command.empty() && hc->command[0] != "NONE" && seen.given) {
                scheduleHealthCheck(t, c, std::chrono::seconds(hc->interval_seconds));
              }
              break;
            case runtime::TaskStatus::kStopped:
              // It exited while no agent was watching: reported below, with its exit code.
              c.known = ContainerStatus::kRunning;
              exited.emplace_back(c.runtime_id, state.exit_status);
              break;
            default:
              c.known = ContainerStatus::kCreated;
              break;
          }
          c.pending_exit.reset();
        }
        spdlog::info("task {}: adopted", t.arn);
        if (t.known == ContainerStatus::kStopped) {
          // It had stopped and was waiting for its cleanup: removed now.
          t.desired = ContainerStatus::kStopped;
          for (auto& c : t.containers) {
            c->desired = ContainerStatus::kStopped;
            c->known = ContainerStatus::kStopped;
          }
          publish(t);
          cleanup(t);
          return finish(Adoption::kAdopted);
        }
        // What the earlier process may not have reported yet; the reporter drops what the
        // cluster already has.
        for (auto& c : t.containers) {
          if (c->known == ContainerStatus::kRunning || c->known == ContainerStatus::kStopped)
            emit(t, c.get());
        }
        publish(t);
        for (const auto& [id, status] : exited) handleExit(id, status);
        if (!found->resources_status) {
          setDesiredStopped(t,
                            "ResourceInitializationError: could not take the task over after "
                            "an agent restart: " +
                                found->resources_status.error().message);
        } else if (desired == ContainerStatus::kStopped) {
          setDesiredStopped(t, t.stop_reason);
        } else {
          for (auto& c : t.containers) {
            if (c->known == ContainerStatus::kStopped && c->def->essential)
              setDesiredStopped(t, c->reason);
          }
        }
        step(t);
        finish(Adoption::kAdopted);
      });
}

void TaskEngine::emit(Task& task, Container* container, std::optional<HealthStatus> health) {
  StateChange change;
  change.time = SystemClock::now();
  change.task_arn = task.arn;
  if (container) {
    change.container_name = container->def->name;
    change.status = container->known;
    change.exit_code = container->exit_code;
    change.reason = container->reason;
    change.runtime_id = container->runtime_id;
    change.image_digest = container->image.target.digest;
    change.health = health;
    if (container->known == ContainerStatus::kCreated && !container->created_at)
      container->created_at = change.time;
    // An adopted container came with its real start time; a started one gets the emit's.
    if (container->known == ContainerStatus::kRunning && !health && !container->started_wall_at)
      container->started_wall_at = change.time;
    if (container->known == ContainerStatus::kStopped && !container->finished_at)
      container->finished_at = change.time;
    if (container->known == ContainerStatus::kRunning ||
        container->known == ContainerStatus::kStopped) {
      change.network_bindings = container->resources.network_bindings;
    }
  } else {
    if (task.known == ContainerStatus::kRunning && !task.started_at) task.started_at = change.time;
    if (task.known == ContainerStatus::kStopped && !task.stopped_at) task.stopped_at = change.time;
    change.status = task.known;
    change.reason = task.known == ContainerStatus::kStopped ? task.stop_reason : std::string();
    change.pull_started_at = task.pull_started_at;
    change.pull_stopped_at = task.pull_stopped_at;
    if (task.known == ContainerStatus::kStopped) change.execution_stopped_at = task.stopped_at;
  }
  if (deps_.outbox) deps_.outbox->submit(change);
  publish(task);
}

void TaskEngine::publish(Task& task, bool removed) {
  if (snapshot_listeners_.empty()) return;
  auto snapshot = std::make_shared<TaskSnapshot>();
  const auto& def = task.definition;
  snapshot->arn = task.arn;
  snapshot->id = task.id;
  snapshot->cluster = options_.cluster;
  snapshot->family = def.family;
  snapshot->revision = def.revision;
  snapshot->task_role_arn = def.task_role_arn;
  snapshot->execution_role_arn = def.execution_role_arn;
  snapshot->network_mode = def.network_mode;
  snapshot->known = task.known;
  snapshot->desired = task.desired;
  snapshot->stop_reason = task.stop_reason;
  snapshot->cpu_units = def.cpu_units;
  snapshot->memory_mib = def.memory_mib;
  snapshot->pull_started_at = task.pull_started_at;
  snapshot->pull_stopped_at = task.pull_stopped_at;
  snapshot->started_at = task.started_at;
  snapshot->stopped_at = task.stopped_at;
  snapshot->removed = removed;
  for (const auto& c : task.containers) {
    if (snapshot->cgroup_path.empty()) snapshot->cgroup_path = c->resources.task_cgroups_path;
    ContainerSnapshot cs;
    cs.name = c->def->name;
    cs.runtime_id = c->runtime_id;
    cs.image = c->def->image;
    cs.image_id = c->image.config.digest;
    cs.image_name = c->image.name;
    cs.known = c->known;
    cs.desired = c->desired;
    cs.exit_code = c->exit_code;
    cs.reason = c->reason;
    cs.essential = c->def->essential;
    cs.labels = containerLabels(task, *c);
    cs.created_at = c->created_at;
    cs.started_at = c->started_wall_at;
    cs.finished_at = c->finished_at;
    cs.cpu = c->def->cpu;
    cs.memory_mib = c->def->memory_mib;
    cs.memory_reservation_mib = c->def->memory_reservation_mib;
    cs.health = c->health;
    cs.health_output = c->health_output;
    cs.health_checked_at = c->health_checked_at;
    cs.restart_count = c->restart_count;
    if (const auto& log = c->def->log_configuration) {
      cs.log_driver = log->log_driver;
      cs.log_options = log->options;
    }
    cs.cgroup_path = c->resources.cgroups_path;
    cs.resources = c->resources;
    snapshot->containers.push_back(std::move(cs));
  }
  TaskSnapshotPtr published = std::move(snapshot);
  // Listeners may write files: they run off the loop, one at a time, in publication order.
  boost::asio::post(listener_strand_, [this, published] {
    for (const auto& listener : snapshot_listeners_) listener(published);
  });
}

void TaskEngine::setDesiredStopped(Task& task, std::string reason) {
  if (task.desired == ContainerStatus::kStopped) return;
  spdlog::info("task {}: stopping{}{}", task.arn,
               reason.empty() ? " (desired by the cluster)" : ": ", reason);
  task.desired = ContainerStatus::kStopped;
  task.stop_reason = std::move(reason);
  for (auto& c : task.containers) {
    c->desired = ContainerStatus::kStopped;
    c->health_timer->cancel();
    c->start_timeout_timer->cancel();
  }
  step(task);
}

// A container that failed before it ran: STOPPED with `reason`; an essential one stops the task.
void TaskEngine::stopContainerWithError(Task& task, Container& c, std::string reason) {
  c.reason = std::move(reason);
  c.known = ContainerStatus::kStopped;
  c.pull_timer->cancel();
  emit(task, &c);
  if (c.def->essential) setDesiredStopped(task, c.reason);
  step(task);
}

void TaskEngine::step(Task& task) {
  // While the task's resources are being created nothing else moves, even a stop: cleanup must
  // not race the creation of the cgroup it is meant to remove.
  if (task.cleaning || task.resources_busy) return;
  if (!task.resources_ready && task.desired == ContainerStatus::kRunning) {
    return createTaskResources(task);
  }
  for (auto& c : task.containers) stepContainer(task, *c);
  updateTaskStatus(task);
}

void TaskEngine::createTaskResources(Task& task) {
  task.resources_busy = true;
  struct Made {
    Result<void> status;
    std::vector<std::unique_ptr<TaskResource>> resources;
  };
  offload(
      task.arn,
      [this, info = task.info()]() -> std::shared_ptr<Made> {
        auto made = std::make_shared<Made>();
        made->status = createResources(info, made->resources);
        return made;
      },
      [this](Task& t, std::shared_ptr<Made> made) {
        t.resources_busy = false;
        t.resources = std::move(made->resources);
        auto& result = made->status;
        if (!result) {
          for (auto& c : t.containers)
            c->reason = "ResourceInitializationError: " + result.error().message;
          setDesiredStopped(t, "ResourceInitializationError: " + result.error().message);
          return step(t);  // also when a stop was already asked for while creating
        }
        t.resources_ready = true;
        step(t);
      });
}

Result<void> TaskEngine::createResources(const TaskInfo& info,
                                         std::vector<std::unique_ptr<TaskResource>>& made) {
  for (auto* factory : deps_.resources) {
    auto resource = factory->resourceFor(info);
    if (!resource) return fail(resource.error());
    if (!*resource) continue;
    made.push_back(std::move(*resource));
    if (auto created = made.back()->create(); !created) {
      return fail(created.error().wrap(std::string(made.back()->name())));
    }
  }
  return {};
}

void TaskEngine::stepContainer(Task& task, Container& c) {
  if (isTerminal(c.known)) return;
  // A stop does not wait for a pull: the pull is cancelled and its result ignored.
  if (c.busy && !(c.pulling && c.desired == ContainerStatus::kStopped)) return;
  if (c.desired == ContainerStatus::kStopped) return stepStop(task, c);
  std::string why;
  auto gated = [&](ContainerStatus next, void (TaskEngine::*action)(Task&, Container&)) {
    switch (dependenciesFor(task, c, next, &why)) {
      case Gate::kOpen:
        return (this->*action)(task, c);
      case Gate::kWait:
        return;
      case Gate::kNever:
        c.reason = "DependencyError: " + why;
        c.known = ContainerStatus::kStopped;
        emit(task, &c);
        return setDesiredStopped(task, "TaskDependencyError: " + why);
    }
  };
  switch (c.known) {
    case ContainerStatus::kNone:
    case ContainerStatus::kManifestPulled:
      if (task.resources_ready) pull(task, c);
      return;
    case ContainerStatus::kPulled:
      return gated(ContainerStatus::kCreated, &TaskEngine::create);
    case ContainerStatus::kCreated:
      return gated(ContainerStatus::kRunning, &TaskEngine::start);
    case ContainerStatus::kRunning:
    case ContainerStatus::kStopped:
      return;
  }
}

// Containers that must stop before `container` may: those that depend on it.
std::vector<TaskEngine::Container*> TaskEngine::dependentsOf(Task& task,
                                                             const Container& container) {
  std::vector<Container*> out;
  const auto& name = container.def->name;
  for (auto& c : task.containers) {
    const auto& def = *c->def;
    bool depends =
        std::any_of(def.depends_on.begin(), def.depends_on.end(),
                    [&](const auto& d) { return d.container_name == name; }) ||
        std::find(def.links.begin(), def.links.end(), name) != def.links.end() ||
        std::any_of(def.links.begin(), def.links.end(),
                    [&](const std::string& l) { return l.substr(0, l.find(':')) == name; }) ||
        std::any_of(def.volumes_from.begin(), def.volumes_from.end(),
                    [&](const auto& v) { return v.source_container == name; });
    if (depends) out.push_back(c.get());
  }
  return out;
}

void TaskEngine::stepStop(Task& task, Container& c) {
  if (c.known < ContainerStatus::kRunning) {
    // Never started: nothing to signal. A pull in flight is told to give up.
    if (c.pulling && c.cancel_pull) c.cancel_pull->store(true);
    c.pull_timer->cancel();
    c.known = ContainerStatus::kStopped;
    if (c.reason.empty()) c.reason = task.stop_reason;
    emit(task, &c);
    return;
  }
  if (c.stop_sent) return;
  for (auto* dependent : dependentsOf(task, c)) {
    if (dependent->known == ContainerStatus::kRunning ||
        (dependent->busy && dependent->known == ContainerStatus::kCreated)) {
      return;  // reverse dependency order: it stops first
    }
  }
  stopContainer(task, c);
}

TaskEngine::Gate TaskEngine::dependenciesFor(Task& task, Container& c, ContainerStatus next,
                                             std::string* why) {
  auto timed_out = [&](const Container& dep) {
    if (!dep.def->start_timeout_seconds || dep.known != ContainerStatus::kRunning) return false;
    return Clock::now() - dep.started_at > std::chrono::seconds(*dep.def->start_timeout_seconds);
  };
  Gate gate = Gate::kOpen;
  auto wait = [&] {
    if (gate == Gate::kOpen) gate = Gate::kWait;
  };
  auto never = [&](std::string reason) {
    *why = std::move(reason);
    gate = Gate::kNever;
  };
  for (const auto& dependency : c.def->depends_on) {
    Container* dep = task.container(dependency.container_name);
    if (!dep) {
      never(fmt::format("{} depends on unknown container {}", c.def->name,
                        dependency.container_name));
      break;
    }
    const auto& dn = dep->def->name;
    switch (dependency.condition) {
      case ContainerDependency::Condition::kStart: {
        auto need = next == ContainerStatus::kCreated ? ContainerStatus::kCreated
                                                      : ContainerStatus::kRunning;
        if (dep->known >= need) break;
        if (dep->desired == ContainerStatus::kStopped) {
          never(fmt::format("{} depends on {} (START), which stopped before it started",
                            c.def->name, dn));
        } else {
          wait();
        }
        break;
      }
      case ContainerDependency::Condition::kComplete:
        if (dep->known == ContainerStatus::kStopped) {
          if (!dep->exit_code)
            never(fmt::format("{} depends on {} (COMPLETE), which stopped without running: {}",
                              c.def->name, dn, dep->reason));
        } else if (timed_out(*dep)) {
          never(fmt::format(
              "{} depends on {} (COMPLETE), which did not complete within its startTimeout of {}s",
              c.def->name, dn, *dep->def->start_timeout_seconds));
        } else {
          wait();
        }
        break;
      case ContainerDependency::Condition::kSuccess:
        if (dep->known == ContainerStatus::kStopped) {
          if (!dep->exit_code) {
            never(fmt::format("{} depends on {} (SUCCESS), which stopped without running: {}",
                              c.def->name, dn, dep->reason));
          } else if (*dep->exit_code != 0) {
            never(fmt::format("{} depends on {} (SUCCESS), which exited with code {}", c.def->name,
                              dn, *dep->exit_code));
          }
        } else if (timed_out(*dep)) {
          never(fmt::format(
              "{} depends on {} (SUCCESS), which did not exit within its startTimeout of {}s",
              c.def->name, dn, *dep->def->start_timeout_seconds));
        } else {
          wait();
        }
        break;
      case ContainerDependency::Condition::kHealthy:
        if (dep->health == HealthStatus::kHealthy) break;
        if (dep->known == ContainerStatus::kStopped) {
          never(fmt::format("{} depends on {} (HEALTHY), which stopped before it was healthy",
                            c.def->name, dn));
        } else if (timed_out(*dep)) {
          never(fmt::format(
              "{} depends on {} (HEALTHY), which was not healthy within its startTimeout of {}s",
              c.def->name, dn, *dep->def->start_timeout_seconds));
        } else {
          wait();
        }
        break;
    }
    if (gate == Gate::kNever) return gate;
  }
  // links need the linked container started; volumesFrom needs the source created.
  for (const auto& link : c.def->links) {
    Container* dep = task.container(link.substr(0, link.find(':')));
    if (!dep) continue;
    if (dep->known < ContainerStatus::kRunning) {
      if (dep->desired == ContainerStatus::kStopped) {
        never(fmt::format("{} links to {}, which stopped before it started", c.def->name,
                          dep->def->name));
        return gate;
      }
      wait();
    }
  }
  for (const auto& from : c.def->volumes_from) {
    Container* dep = task.container(from.source_container);
    if (!dep) continue;
    if (dep->known < ContainerStatus::kCreated) {
      if (dep->desired == ContainerStatus::kStopped) {
        never(fmt::format("{} takes volumes from {}, which was never created", c.def->name,
                          dep->def->name));
        return gate;
      }
      wait();
    }
  }
  return gate;
}

void TaskEngine::updateTaskStatus(Task& task) {
  if (task.containers.empty()) return;
  ContainerStatus lowest = ContainerStatus::kStopped;
  for (const auto& c : task.containers) {
    auto mapped =
        c->known == ContainerStatus::kManifestPulled ? ContainerStatus::kPulled : c->known;
    lowest = std::min(lowest, mapped);
  }
  if (lowest <= task.known) return;
  task.known = lowest;
  if (lowest == ContainerStatus::kCreated || lowest == ContainerStatus::kRunning ||
      lowest == ContainerStatus::kStopped) {
    emit(task, nullptr);
  }
  if (lowest == ContainerStatus::kStopped) taskStopped(task);
}

void TaskEngine::pull(Task& task, Container& c) {
  c.busy = true;
  c.pulling = true;
  c.cancel_pull = std::make_shared<std::atomic<bool>>(false);
  if (!task.pull_started_at) task.pull_started_at = SystemClock::now();
  PullLimits limits;
  limits.timeout = options_.pull_timeout;
  limits.cancelled = [cancel = c.cancel_pull, stopping = shutting_down_] {
    return cancel->load() || stopping->load();
  };
  // The pull pool may be slow to notice a hung registry: the engine keeps its own deadline.
  c.pull_timer->expires_after(options_.pull_timeout);
  c.pull_timer->async_wait(
      [this, arn = task.arn, name = c.def->name](boost::system::error_code ec) {
        if (ec) return;
        auto* t = findTask(arn);
        Container* ct = t ? t->container(name) : nullptr;
        if (!ct || !ct->pulling || ct->known == ContainerStatus::kStopped) return;
        ct->cancel_pull->store(true);
        stopContainerWithError(
            *t, *ct,
            fmt::format("CannotPullContainerError: pull of {} did not finish within {} "
                        "(ECS_IMAGE_PULL_TIMEOUT)",
                        ct->def->image, describeDuration(options_.pull_timeout)));
      });
  auto behavior = options_.pull_behavior;
  offload(
      pulls_, task.arn,
      [this, image = c.def->image, behavior,
       limits]() -> Result<std::pair<images::ResolvedImage, runtime::ImageConfig>> {
        auto reference = images::ImageReference::parse(image);
        if (!reference) return fail(reference.error());
        Result<images::ResolvedImage> resolved = fail(ErrorCode::kNotFound, "not resolved");
        bool cached_first =
            behavior == PullBehavior::kOnce || behavior == PullBehavior::kPreferCached;
        if (cached_first) resolved = deps_.images->resolveLocal(*reference);
        if (!resolved) {
          failpoint("image-pulling");
          auto pulled = deps_.images->pull(*reference, limits);
          if (pulled) {
            resolved = std::move(*pulled);
          } else if (behavior == PullBehavior::kDefault && !limits.cancelled()) {
            // default: a failed pull falls back to an image already here.
            resolved = deps_.images->resolveLocal(*reference);
            if (resolved) {
              spdlog::warn("{}; using the cached image", pulled.error().message);
            } else {
              return fail(pulled.error());
            }
          } else {
            return fail(pulled.error());
          }
        }
        auto config = runtime::parseImageConfig(resolved->config_json);
        if (!config) return fail(config.error().wrap("image config of " + reference->str()));
        return std::make_pair(std::move(*resolved), std::move(*config));
      },
      [this, name = c.def->name](Task& t, auto result) {
        Container& ct = *t.container(name);
        ct.busy = false;
        ct.pulling = false;
        ct.pull_timer->cancel();
        if (ct.known == ContainerStatus::kStopped) return step(t);  // stopped while pulling
        if (!result) {
          return stopContainerWithError(t, ct,
                                        "CannotPullContainerError: " + result.error().message);
        }
        t.pull_stopped_at = SystemClock::now();
        ct.image = std::move(result->first);
        ct.image_config = std::move(result->second);
        ct.known = ContainerStatus::kPulled;
        emit(t, &ct);
        step(t);
      });
}

void TaskEngine::create(Task& task, Container& c) {
  c.busy = true;
  ContainerSpecInputs inputs;
  inputs.task = &task.definition;
  inputs.container = c.def;
  inputs.environment_files_dir = options_.environment_files_dir;
  inputs.image = c.image_config;
  inputs.task_id = task.id;
  inputs.runtime_id = c.runtime_id;
  inputs.container_dir = c.dir;
  // Names resolve against the image's own /etc/passwd and /etc/group. Cached per container,
  // since every health check builds an exec process (and so resolves the user) again;
  // serialized, since the runtime's lookup is per container.
  struct UserCache {
    std::mutex mutex;
    std::map<std::string, UserIds> ids;
  };
  auto cache = std::make_shared<UserCache>();
  inputs.resolve_user = [runtime = deps_.runtime, chain_id = c.image.chain_id, id = c.runtime_id,
                         cache](const std::string& user) -> Result<UserIds> {
    std::lock_guard lock(cache->mutex);
    if (auto it = cache->ids.find(user); it != cache->ids.end()) return it->second;
    auto ids = runtime->resolveUser(id, chain_id, user);
    if (ids) cache->ids.emplace(user, *ids);
    return ids;
  };

  runtime::ContainerSpec spec;
  spec.id = c.runtime_id;
  spec.image = c.image.name;
  spec.snapshot_parent = c.image.chain_id;
  spec.labels = containerLabels(task, c);
  spec.task_document = task.document;
  auto resources = task.resourcePointers();
  offload(
      task.arn,
      [this, inputs, spec, resources, info = containerInfo(task, c)]() mutable
      -> Result<std::pair<ContainerResources, ContainerSpecInputs>> {
        ContainerResources given;
        for (auto* resource : resources) {
          if (auto added = resource->contribute(info, given); !added)
            return fail(added.error().wrap(std::string(resource->name())));
        }
        withResources(inputs, given);
        auto json = buildContainerSpec(inputs);
        if (!json) return fail(json.error());
        spec.oci_spec_json = std::move(*json);
        if (auto created = deps_.runtime->createContainer(spec); !created) {
          return fail(created.error());
        }
        return std::make_pair(std::move(given), std::move(inputs));
      },
      [this, name = c.def->name](Task& t, auto result) {
        Container& ct = *t.container(name);
        ct.busy = false;
        if (!result) {
          return stopContainerWithError(t, ct,
                                        "CannotCreateContainerError: " + result.error().message);
        }
        ct.resources = std::move(result->first);
        // Health-check execs build their process from the same inputs.
        ct.spec_inputs = std::move(result->second);
        ct.created = true;
        ct.known = ContainerStatus::kCreated;
        emit(t, &ct);
        failpoint("container-created");
        step(t);
      });
}

void TaskEngine::start(Task& task, Container& c) {
  c.busy = true;
  offload(
      task.arn,
      [this, id = c.runtime_id, out = (fs::path(c.dir) / "stdout.log").string(),
       err = (fs::path(c.dir) / "stderr.log").string(),
       log = c.def->log_configuration && c.def->log_configuration->log_driver == "json-file"
                 ? c.def->log_configuration->options
                 : std::map<std::string, std::string>()]() {
        return deps_.runtime->startTask(id, out, err, log);
      },
      [this, name = c.def->name](Task& t, Result<uint32_t> result) {
        Container& ct = *t.container(name);
        ct.busy = false;
        if (!result) {
          ct.restarting = false;
          return stopContainerWithError(t, ct,
                                        "CannotStartContainerError: " + result.error().message);
        }
        const bool restarted = ct.restarting;
        ct.restarting = false;
        ct.known = ContainerStatus::kRunning;
        ct.started_at = Clock::now();
        ct.started_wall_at.reset();  // set when RUNNING is emitted, on every (re)start
        ct.stop_sent = false;
        ++ct.health_generation;
        // Timers are armed before anyone hears of RUNNING.
        if (const auto& hc = ct.def->health_check;
            hc && !hc->command.empty() && hc->command[0] != "NONE") {
          scheduleHealthCheck(t, ct, std::chrono::seconds(hc->interval_seconds));
        }
        if (ct.def->start_timeout_seconds) {
          ct.start_timeout_timer->expires_after(
              std::chrono::seconds(*ct.def->start_timeout_seconds) + std::chrono::milliseconds(10));
          ct.start_timeout_timer->async_wait([this, arn = t.arn](boost::system::error_code ec) {
            if (ec) return;
            if (auto* task = findTask(arn)) step(*task);
          });
        }
        if (!restarted) emit(t, &ct);
        if (ct.pending_exit) {
          // It exited as it started: the task still passes through RUNNING first, so the
          // cluster hears RUNNING then STOPPED, as it would of a container that ran longer.
          auto status = *ct.pending_exit;
          ct.pending_exit.reset();
          updateTaskStatus(t);
          return handleExit(ct.runtime_id, status);
        }
        step(t);
      });
}

void TaskEngine::stopContainer(Task& task, Container& c) {
  c.stop_sent = true;
  c.health_timer->cancel();
  const int signal = signalNumber(c.image_config.stop_signal);
  auto timeout = c.def->stop_timeout_seconds
                     ? std::chrono::milliseconds(std::chrono::seconds(*c.def->stop_timeout_seconds))
                     : options_.default_stop_timeout;
  spdlog::info("task {}: stopping container {} (signal {}, SIGKILL after {} ms)", task.arn,
               c.def->name, signal, timeout.count());
  offload(
      task.arn,
      [this, id = c.runtime_id, signal] {
        auto killed = deps_.runtime->killTask(id, signal, false);
        failpoint("container-stop-sent");
        return killed;
      },
      [](Task&, Result<void> result) {
        if (!result && result.error().code != ErrorCode::kNotFound) {
          spdlog::warn("stop: {}", result.error().message);
        }
      });
  c.stop_timer->expires_after(timeout);
  c.stop_timer->async_wait(
      [this, arn = task.arn, name = c.def->name](boost::system::error_code ec) {
        if (ec) return;
        auto* t = findTask(arn);
        if (!t) return;
        Container* ct = t->container(name);
        if (!ct || ct->known != ContainerStatus::kRunning) return;
        spdlog::info("task {}: container {} ignored the stop signal; sending SIGKILL", arn, name);
        offload(
            arn, [this, id = ct->runtime_id] { return deps_.runtime->killTask(id, SIGKILL, true); },
            [](Task&, Result<void> result) {
              if (!result && result.error().code != ErrorCode::kNotFound) {
                spdlog::warn("kill: {}", result.error().message);
              }
            });
      });
}

void TaskEngine::handleOom(const std::string& runtime_id) {
  auto it = by_runtime_id_.find(runtime_id);
  if (it == by_runtime_id_.end()) return;
  if (auto* task = findTask(it->second.first)) {
    if (auto* c = task->container(it->second.second)) c->oom = true;
  }
}

void TaskEngine::handleExit(const std::string& runtime_id, uint32_t exit_status) {
  auto it = by_runtime_id_.find(runtime_id);
  if (it == by_runtime_id_.end()) return;
  auto* task = findTask(it->second.first);
  if (!task) return;
  Container* c = task->container(it->second.second);
  if (!c) return;
  if (c->busy) {
    c->pending_exit = exit_status;  // its start (or restart) is still being recorded
    return;
  }
  if (c->known != ContainerStatus::kRunning) return;
  c->stop_timer->cancel();
  c->health_timer->cancel();
  c->busy = true;
  // The runtime's task is deleted before the exit is recorded, so a restart can start a new one
  // and the OOM event (which containerd sends just before the exit) has been seen.
  auto resources = task->resourcePointers();
  offload(
      task->arn,
      [this, id = c->runtime_id, resources, info = containerInfo(*task, *c)]() -> bool {
        if (auto deleted = deps_.runtime->deleteTask(id);
            !deleted && deleted.error().code != ErrorCode::kNotFound) {
          spdlog::warn("delete task of {}: {}", id, deleted.error().message);
        }
        ContainerExit exit;
        for (auto* resource : resources) resource->inspectExit(info, exit);
        return exit.oom_killed;
      },
      [this, name = c->def->name, exit_status](Task& t, bool oom_killed) {
        Container& ct = *t.container(name);
        ct.busy = false;
        ct.exit_code = static_cast<int>(exit_status);
        if (ct.oom || oom_killed) {
          ct.reason = "OutOfMemoryError: Container killed due to memory usage";
        }
        if (maybeRestart(t, ct)) return;
        ct.known = ContainerStatus::kStopped;
        emit(t, &ct);
        if (ct.def->essential) setDesiredStopped(t, "Essential container in task exited");
        step(t);
      });
}

bool TaskEngine::maybeRestart(Task& task, Container& c) {
  const auto& policy = c.def->restart_policy;
  if (!policy || !policy->enabled || task.desired == ContainerStatus::kStopped || !c.exit_code)
    return false;
  if (std::find(policy->ignored_exit_codes.begin(), policy->ignored_exit_codes.end(),
                *c.exit_code) != policy->ignored_exit_codes.end()) {
    return false;
  }
  auto since = c.last_restart_at.value_or(c.started_at);
  if (Clock::now() - since < std::chrono::seconds(policy->restart_attempt_period_seconds))
    return false;
  ++c.restart_count;
  c.last_restart_at = Clock::now();
  spdlog::info("task {}: restarting container {} (exit code {}, restart {})", task.arn, c.def->name,
               *c.exit_code, c.restart_count);
  c.reason =
      fmt::format("restarted after exit code {} (restart {})", *c.exit_code, c.restart_count);
  c.restarting = true;  // known stays RUNNING: the task does not stop while it restarts
  c.oom = false;
  c.health = HealthStatus::kUnknown;
  c.health_failures = 0;
  emit(task, &c);
  c.exit_code.reset();
  start(task, c);
  return true;
}

void TaskEngine::scheduleHealthCheck(Task& task, Container& c, std::chrono::milliseconds delay) {
  c.health_timer->expires_after(delay);
  c.health_timer->async_wait([this, arn = task.arn, name = c.def->name,
                              generation = c.health_generation](boost::system::error_code ec) {
    if (ec) return;
    auto* t = findTask(arn);
    if (!t) return;
    Container* ct = t->container(name);
    if (!ct || ct->known != ContainerStatus::kRunning || ct->health_generation != generation ||
        ct->desired == ContainerStatus::kStopped) {
      return;
    }
    runHealthCheck(*t, *ct);
  });
}

void TaskEngine::runHealthCheck(Task& task, Container& c) {
  const auto& hc = *c.def->health_check;
  std::vector<std::string> args;
  if (hc.command[0] == "CMD-SHELL") {
    args = {"/bin/sh", "-c", hc.command.size() > 1 ? hc.command[1] : ""};
  } else {
    args.assign(hc.command.begin() + 1, hc.command.end());
  }
  static std::atomic<uint64_t> counter{0};
  const std::string exec_id = fmt::format("health-{}", ++counter);
  const auto timeout = std::chrono::seconds(hc.timeout_seconds);
  offload(
      task.arn,
      [this, inputs = c.spec_inputs, args, exec_id, timeout, id = c.runtime_id,
       out = (fs::path(c.dir) / "health.log").string()]() -> std::pair<int, std::string> {
        auto process = buildExecProcess(inputs, args);
        if (!process) return {-1, process.error().message};
        std::error_code ec;
        fs::remove(out, ec);
        auto exit = deps_.runtime->exec(id, exec_id, *process, out, timeout);
        std::ifstream in(out);
        std::string text(kHealthOutputLimit, '\0');
        in.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
        fs::remove(out, ec);
        if (!exit) {
          if (exit.error().code == ErrorCode::kUnavailable)
            return {-1, fmt::format("health check timed out after {}s", timeout.count())};
          return {-1, exit.error().message.substr(0, kHealthOutputLimit)};
        }
        return {*exit, text};
      },
      [this, name = c.def->name, generation = c.health_generation](
          Task& t, std::pair<int, std::string> result) {
        Container& ct = *t.container(name);
        if (ct.known != ContainerStatus::kRunning || ct.health_generation != generation ||
            ct.desired == ContainerStatus::kStopped) {
          return;
        }
        const auto& hc = *ct.def->health_check;
        ct.health_output = result.second;
        ct.health_checked_at = SystemClock::now();
        auto before = ct.health;
        if (result.first == 0) {
          ct.health_failures = 0;
          ct.health = HealthStatus::kHealthy;
        } else if (Clock::now() - ct.started_at >= std::chrono::seconds(hc.start_period_seconds)) {
          // Failures inside the start period do not count (Docker's rule).
          if (++ct.health_failures >= hc.retries) ct.health = HealthStatus::kUnhealthy;
        }
        // The next check is armed before anyone hears of this one.
        scheduleHealthCheck(t, ct, std::chrono::seconds(hc.interval_seconds));
        if (ct.health != before) {
          spdlog::info("task {}: container {} is {}", t.arn, name, toString(ct.health));
          emit(t, &ct, ct.health);
          step(t);
        }
      });
}

// The task has just become STOPPED: it is removed now, or its network is released and its
// containers stay until the cleanup wait is over.
void TaskEngine::taskStopped(Task& task) {
  const auto wait = options_.task_cleanup_wait;
  if (wait <= std::chrono::milliseconds::zero() || task.remove_at_once) return cleanup(task);
  const auto cleanup_at = Clock::now() + wait;
  task.releasing = true;
  for (auto& c : task.containers) c->cancelTimers();
  auto resources = task.resourcePointers();
  std::reverse(resources.begin(), resources.end());
  offload(
      task.arn,
      [resources]() -> bool {
        for (auto* resource : resources) resource->releaseOnStop();
        return true;
      },
      [this, cleanup_at, wait](Task& t, bool) {
        t.releasing = false;
        if (t.remove_at_once) return cleanup(t);  // stopAndRemove() came while releasing
        spdlog::info("task {}: stopped; removing its containers in {}", t.arn,
                     describeDuration(wait));
        t.cleanup_timer->expires_at(cleanup_at);
        t.cleanup_timer->async_wait([this, arn = t.arn](boost::system::error_code ec) {
          if (ec) return;
          auto* task = findTask(arn);
          if (task && !task->cleaning) cleanup(*task);
        });
      });
}

void TaskEngine::cleanup(Task& task) {
  task.cleaning = true;
  task.cleanup_timer->cancel();
  std::vector<std::string> ids;
  for (auto& c : task.containers) {
    c->cancelTimers();
    if (c->created) ids.push_back(c->runtime_id);
  }
  auto resources = task.resourcePointers();
  std::reverse(resources.begin(), resources.end());  // cleaned up in reverse
  offload(
      task.arn,
      [this, ids, resources]() -> bool {
        for (const auto& runtime_id : ids) {
          auto deleted = deps_.runtime->deleteTask(runtime_id);
          if (!deleted && deleted.error().code != ErrorCode::kNotFound) {
            // A process still runs (a start that landed after the agent that sent it died):
            // it goes with its task.
            (void)deps_.runtime->killTask(runtime_id, SIGKILL, /*all=*/true);
            for (int i = 0; i < 50 && !deleted && deleted.error().code != ErrorCode::kNotFound;
                 ++i) {
              std::this_thread::sleep_for(std::chrono::milliseconds(100));
              deleted = deps_.runtime->deleteTask(runtime_id);
            }
            if (!deleted && deleted.error().code != ErrorCode::kNotFound) {
              spdlog::warn("cleanup: {}", deleted.error().message);
            }
          }
          if (auto deleted = deps_.runtime->deleteContainer(runtime_id); !deleted) {
            spdlog::warn("cleanup: {}", deleted.error().message);
          }
        }
        failpoint("task-cleanup");
        for (auto* resource : resources) resource->cleanup();
        return true;
      },
      [this](Task& t, bool) {
        const std::string arn = t.arn;
        t.resources.clear();
        publish(t, /*removed=*/true);
        for (auto& c : t.containers) by_runtime_id_.erase(c->runtime_id);
        tasks_.erase(arn);
        rememberFinished(arn);
        spdlog::info("task {}: cleaned up", arn);
        if (deps_.outbox) deps_.outbox->taskRemoved(arn);
      });
}

}  // namespace ecs::engine
