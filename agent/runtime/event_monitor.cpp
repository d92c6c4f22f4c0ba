#include "agent/runtime/event_monitor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "github.com/containerd/containerd/api/events/task.pb.h"

namespace ecs::runtime::internal {

namespace {

namespace events = ::containerd::services::events::v1;
namespace tasks = ::containerd::services::tasks::v1;

constexpr auto kMinBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::seconds(2);
// A sync event published before containerd has registered the new subscription is lost, and the
// next one goes out after this interval (doubling): short, so a start that loses that race waits
// ~10 ms rather than 100 (`run` took 130 or 230 ms, by that race alone).
constexpr auto kFirstSyncInterval = std::chrono::milliseconds(10);
constexpr auto kMaxSyncInterval = std::chrono::seconds(2);

// containerd's typeurl names events by their proto name ("containerd.events.TaskExit"), with no
// "type.googleapis.com/" prefix; accept either.
bool isType(const std::string& type_url, std::string_view name) {
  if (!type_url.ends_with(name)) return false;
  const auto rest = type_url.size() - name.size();
  return rest == 0 || type_url[rest - 1] == '/';
}

TaskExit exitFromProcess(const std::string& container_id, const std::string& exec_id,
                         const ::containerd::v1::types::Process& p) {
  return TaskExit{container_id, exec_id, p.pid(), p.exit_status(), fromProto(p.exited_at())};
}

}  // namespace

class EventMonitorImpl::ActiveCall {
 public:
  ActiveCall(EventMonitorImpl& monitor, CallContext& ctx) : monitor_(monitor), ctx_(ctx) {
    std::lock_guard lock(monitor_.mutex_);
    if (monitor_.stopping_) ctx_.cancel();
    monitor_.active_calls_.insert(&ctx_);
  }
  ~ActiveCall() {
    std::lock_guard lock(monitor_.mutex_);
    monitor_.active_calls_.erase(&ctx_);
  }
  ActiveCall(const ActiveCall&) = delete;
  ActiveCall& operator=(const ActiveCall&) = delete;

 private:
  EventMonitorImpl& monitor_;
  CallContext& ctx_;
};

EventMonitorImpl::EventMonitorImpl(std::shared_ptr<const Connection> conn)
    : conn_(std::move(conn)) {}

EventMonitorImpl::~EventMonitorImpl() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (stream_ctx_ != nullptr) stream_ctx_->cancel();
    for (auto* ctx : active_calls_) ctx->cancel();
  }
  cv_.notify_all();
  if (reader_.joinable()) reader_.join();
  if (syncer_.joinable()) syncer_.join();
}

void EventMonitorImpl::start() {
  std::lock_guard lock(mutex_);
  if (started_) return;
  started_ = true;
  reader_ = std::thread([this] { readerLoop(); });
  syncer_ = std::thread([this] { syncerLoop(); });
}

bool EventMonitorImpl::waitLive(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return stopping_ || live_generation_ > 0; }) &&
         !stopping_;
}

// --- the stream ---------------------------------------------------------------------------------

void EventMonitorImpl::readerLoop() {
  auto backoff = std::chrono::milliseconds(kMinBackoff);
  const std::string ns_filter = fmt::format("namespace=={:?}", conn_->options.ns);
  while (true) {
    CallContext ctx;
    conn_->prepare(ctx, {}, std::chrono::milliseconds(0));  // a stream: no deadline
    {
      std::unique_lock lock(mutex_);
      cv_.wait_until(lock, hold_until_, [&] { return stopping_; });
      if (stopping_) return;
      stream_ctx_ = &ctx;
    }
    events::SubscribeRequest request;
    for (const char* topic : {"/tasks/exit", "/tasks/oom", kSyncTopic}) {
      request.add_filters(fmt::format("{},topic=={:?}", ns_filter, topic));
    }
    // While containerd is away this fails at once (UNAVAILABLE) and the backoff below paces
    // the retries.
    auto reader = conn_->open(ctx, rpc::kEventsSubscribe);
    const bool subscribed = reader.write(request, true);  // if not, finish() says why
    {
      std::lock_guard lock(mutex_);
      ++generation_;
      ++stats_.subscriptions;
    }
    cv_.notify_all();

    events::Envelope envelope;
    while (subscribed && reader.read(&envelope)) {
      backoff = kMinBackoff;
      handleEnvelope(envelope);
    }
    const GrpcStatus status = reader.finish();
    uint64_t failures = 0;
    {
      std::lock_guard lock(mutex_);
      stream_ctx_ = nullptr;
      if (stopping_) return;
      failures = ++stats_.stream_failures;
    }
    const auto level = backoff == kMinBackoff ? spdlog::level::warn : spdlog::level::debug;
    spdlog::log(level,
                "containerd event stream (namespace {}) broke ({} so far): {}; "
                "resubscribing in {} ms",
                conn_->options.ns, failures, grpcError(status, "subscribe").message,
                backoff.count());
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, backoff, [&] { return stopping_; });
      if (stopping_) return;
    }
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
  }
}

void EventMonitorImpl::handleEnvelope(const events::Envelope& envelope) {
  const auto& topic = envelope.topic();
  const auto& any = envelope.event();
  if (topic == kSyncTopic) {
    {
      std::lock_guard lock(mutex_);
      live_generation_ = generation_;
    }
    cv_.notify_all();
    return;
  }
  if (topic == "/tasks/exit" && isType(any.type_url(), "containerd.events.TaskExit")) {
    ::containerd::events::TaskExit event;
    if (!event.ParseFromString(any.value())) {
      spdlog::warn("containerd event {}: cannot decode {}", topic, any.type_url());
      return;
    }
    // The runc shim sets `id` to the process id: the container id for the init process, the
    // exec id for an exec'd process.
    TaskExit exit{event.container_id(),
                  event.id() == event.container_id() ? std::string() : event.id(), event.pid(),
                  event.exit_status(), fromProto(event.exited_at())};
    bool fresh = false;
    {
      std::lock_guard lock(mutex_);
      ++stats_.exits_received;
      fresh = deliverLocked(exit);
    }
    cv_.notify_all();
    if (fresh && exit.exec_id.empty()) notifyExit(exit);
    return;
  }
  if (topic == "/tasks/oom" && isType(any.type_url(), "containerd.events.TaskOOM")) {
    ::containerd::events::TaskOOM event;
    if (!event.ParseFromString(any.value())) {
      spdlog::warn("containerd event {}: cannot decode {}", topic, any.type_url());
      return;
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.ooms_received;
    }
    std::vector<std::function<void(const std::string&)>> callbacks;
    {
      std::lock_guard lock(callbacks_mutex_);
      callbacks = oom_callbacks_;
    }
    for (const auto& cb : callbacks) cb(event.container_id());
    return;
  }
  spdlog::debug("containerd event {} ({}) ignored", topic, any.type_url());
}

// --- making a new stream trustworthy ------------------------------------------------------------

void EventMonitorImpl::syncerLoop() {
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || generation_ > checked_generation_; });
    if (stopping_) return;
    const uint64_t gen = generation_;
    auto interval = std::chrono::milliseconds(kFirstSyncInterval);
    while (!stopping_ && generation_ == gen && live_generation_ < gen) {
      lock.unlock();
      publishSync();
      lock.lock();
      cv_.wait_for(lock, interval,
                   [&] { return stopping_ || generation_ != gen || live_generation_ >= gen; });
      interval = std::min<std::chrono::milliseconds>(interval * 2, kMaxSyncInterval);
    }
    if (stopping_) return;
    if (live_generation_ < gen) continue;  // replaced by a newer stream before going live
    lock.unlock();
    recheck();
    lock.lock();
    checked_generation_ = std::max(checked_generation_, gen);
  }
}

void EventMonitorImpl::publishSync() {
  CallContext ctx;
  conn_->prepare(ctx);
  ActiveCall active(*this, ctx);
  events::PublishRequest request;
  request.set_topic(kSyncTopic);
  request.mutable_event()->set_type_url("types.googleapis.com/google.protobuf.Empty");
  google::protobuf::Empty response;
  if (auto status = conn_->call(ctx, rpc::kEventsPublish, request, &response); !status.ok()) {
    spdlog::debug("publish {}: {}", kSyncTopic, status.message);
  }
}

// Exits that happened while no stream was live: every stopped init process (one List call) and
// every exec'd process someone waits for (one Get each).
void EventMonitorImpl::recheck() {
  uint64_t listed_after = 0;  // waiters registered later may wait for tasks created after List
  {
    std::lock_guard lock(mutex_);
    listed_after = waiter_serial_;
  }
  CallContext ctx;
  conn_->prepare(ctx);
  ActiveCall active(*this, ctx);
  tasks::ListTasksResponse listed;
  if (auto status = conn_->call(ctx, rpc::kTasksList, tasks::ListTasksRequest(), &listed);
      !status.ok()) {
    spdlog::warn("re-check tasks after subscribing: {}", grpcError(status, "list tasks").message);
    return;  // the waiters' own Tasks.Get and the next subscription cover it
  }
  std::set<std::string> existing;
  std::vector<TaskExit> found;
  for (const auto& p : listed.tasks()) {
    existing.insert(p.id());
    if (p.status() == ::containerd::v1::types::STOPPED)
      found.push_back(exitFromProcess(p.id(), "", p));
  }

  std::vector<Key> exec_keys;
  std::vector<TaskExit> fresh;
  {
    std::lock_guard lock(mutex_);
    for (const auto& exit : found) {
      if (deliverLocked(exit)) {
        ++stats_.exits_synthesized;
        fresh.push_back(exit);
      }
    }
    for (Waiter* w : waiters_) {
      if (w->outcome || w->serial > listed_after) continue;
      if (!existing.contains(w->key.first)) {
        w->outcome = fail(ErrorCode::kNotFound, "container {} has no task any more", w->key.first);
      } else if (!w->key.second.empty()) {
        exec_keys.push_back(w->key);
      }
    }
  }
  cv_.notify_all();
  for (const auto& exit : fresh) {
    spdlog::info("exit of task {} (status {}) found by re-check after subscribing",
                 exit.container_id, exit.exit_status);
    notifyExit(exit);
  }

  for (const auto& key : exec_keys) {
    auto task = probe(key);
    std::lock_guard lock(mutex_);
    if (!task) continue;
    if (!*task) {
      resolveLocked(key, fail(ErrorCode::kNotFound, "process {} of container {} is gone",
                              key.second, key.first));
    } else if ((*task)->status == TaskStatus::kStopped) {
      if (deliverLocked(TaskExit{key.first, key.second, (*task)->pid, (*task)->exit_status,
                                 (*task)->exited_at})) {
        ++stats_.exits_synthesized;
      }
    }
  }
  cv_.notify_all();
}

Result<std::optional<TaskInfo>> EventMonitorImpl::probe(const Key& key) {
  CallContext ctx;
  conn_->prepare(ctx);
  ActiveCall active(*this, ctx);
  tasks::GetRequest request;
  request.set_container_id(key.first);
  request.set_exec_id(key.second);
  tasks::GetResponse response;
  auto status = conn_->call(ctx, rpc::kTasksGet, request, &response);
  if (status.code == GrpcCode::kNotFound) return std::nullopt;
  if (!status.ok()) return grpcFail(status, fmt::format("get task {}", key.first));
  const auto& p = response.process();
  return TaskInfo{key.first, p.pid(), fromProto(p.status()), p.exit_status(),
                  fromProto(p.exited_at())};
}

// --- exits: buffer, waiters, callbacks ----------------------------------------------------------

bool EventMonitorImpl::deliverLocked(const TaskExit& exit) {
  const Key key{exit.container_id, exit.exec_id};
  if (exit.exec_id.empty()) {
    auto pid = init_pids_.find(exit.container_id);
    if (pid != init_pids_.end() && pid->second != 0 && exit.pid != 0 && pid->second != exit.pid) {
      spdlog::debug("stale exit of {} (pid {}, current task pid {}) ignored", exit.container_id,
                    exit.pid, pid->second);
      return false;
    }
  }
  if (auto found = exits_.find(key); found != exits_.end() && found->second.exit.pid == exit.pid) {
    return false;
  }
  exits_[key] = Buffered{exit, ++seq_};
  if (exits_.size() > kMaxBufferedExits) {
    auto oldest = std::min_element(exits_.begin(), exits_.end(), [](const auto& a, const auto& b) {
      return a.second.seq < b.second.seq;
    });
    spdlog::warn("exit buffer full: dropping the unclaimed exit of {}", oldest->first.first);
    exits_.erase(oldest);
    ++stats_.exits_dropped;
  }
  resolveLocked(key, exit);
  return true;
}

void EventMonitorImpl::resolveLocked(const Key& key, const Result<TaskExit>& outcome) {
  for (Waiter* w : waiters_) {
    if (w->key == key && !w->outcome) w->outcome = outcome;
  }
}

void EventMonitorImpl::notifyExit(const TaskExit& exit) {
  std::vector<std::function<void(const TaskExit&)>> callbacks;
  {
    std::lock_guard lock(callbacks_mutex_);
    callbacks = exit_callbacks_;
  }
  for (const auto& cb : callbacks) cb(exit);
}

void EventMonitorImpl::forgetContainerLocked(const std::string& container_id) {
  std::erase_if(exits_, [&](const auto& e) { return e.first.first == container_id; });
  init_pids_.erase(container_id);
}

void EventMonitorImpl::taskCreated(const std::string& container_id, uint32_t pid) {
  std::lock_guard lock(mutex_);
  forgetContainerLocked(container_id);
  init_pids_[container_id] = pid;
}

void EventMonitorImpl::processCreated(const std::string& container_id, const std::string& exec_id) {
  std::lock_guard lock(mutex_);
  exits_.erase(Key{container_id, exec_id});
}

void EventMonitorImpl::taskDeleted(const TaskExit& exit) {
  {
    std::lock_guard lock(mutex_);
    resolveLocked(Key{exit.container_id, ""}, exit);
    for (Waiter* w : waiters_) {
      if (w->key.first == exit.container_id && !w->outcome) {
        w->outcome = fail(ErrorCode::kNotFound, "task {} was deleted", exit.container_id);
      }
    }
    forgetContainerLocked(exit.container_id);
  }
  cv_.notify_all();
}

void EventMonitorImpl::processDeleted(const TaskExit& exit) {
  {
    std::lock_guard lock(mutex_);
    const Key key{exit.container_id, exit.exec_id};
    resolveLocked(key, exit);
    exits_.erase(key);
  }
  cv_.notify_all();
}

void EventMonitorImpl::containerDeleted(const std::string& container_id) {
  {
    std::lock_guard lock(mutex_);
    for (Waiter* w : waiters_) {
      if (w->key.first == container_id && !w->outcome) {
        w->outcome = fail(ErrorCode::kNotFound, "container {} was deleted", container_id);
      }
    }
    forgetContainerLocked(container_id);
  }
  cv_.notify_all();
}

Result<TaskExit> EventMonitorImpl::waitExit(const std::string& container_id,
                                            std::chrono::milliseconds timeout) {
  return wait(Key{container_id, ""}, timeout);
}

Result<TaskExit> EventMonitorImpl::waitExecExit(const std::string& container_id,
                                                const std::string& exec_id,
                                                std::chrono::milliseconds timeout) {
  if (exec_id.empty()) {
    return fail(ErrorCode::kInvalidArgument, "wait for exec exit in {}: empty exec id",
                container_id);
  }
  return wait(Key{container_id, exec_id}, timeout);
}

Result<TaskExit> EventMonitorImpl::wait(const Key& key, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto what = key.second.empty()
                        ? fmt::format("wait for exit of task {}", key.first)
                        : fmt::format("wait for exit of process {} in {}", key.second, key.first);
  Waiter waiter{key, 0, std::nullopt};
  std::unique_lock lock(mutex_);
  if (auto found = exits_.find(key); found != exits_.end()) return found->second.exit;
  waiter.serial = ++waiter_serial_;
  waiters_.push_back(&waiter);
  struct Unregister {
    EventMonitorImpl* self;
    Waiter* w;
    ~Unregister() { self->waiters_.remove(w); }  // runs with mutex_ held (declared after lock)
  } unregister{this, &waiter};

  // Registered first, then asked: an exit is seen either as an event or as a stopped task.
  lock.unlock();
  auto task = probe(key);
  lock.lock();
  if (!waiter.outcome) {
    if (task && !*task) {
      waiter.outcome = fail(ErrorCode::kNotFound, "{}: no such task", what);
    } else if (task && (*task)->status == TaskStatus::kStopped) {
      // Answers this waiter only: the event (or a re-check) still buffers the exit and tells the
      // onExit callbacks, on the monitor's threads.
      waiter.outcome =
          TaskExit{key.first, key.second, (*task)->pid, (*task)->exit_status, (*task)->exited_at};
    } else if (!task) {
      spdlog::debug("{}: {} (waiting for the event)", what, task.error().message);
    }
  }
  cv_.wait_until(lock, deadline, [&] { return waiter.outcome.has_value() || stopping_; });
  if (waiter.outcome) {
    if (!*waiter.outcome) return fail(waiter.outcome->error().wrap(what));
    return **waiter.outcome;
  }
  if (stopping_) return fail(ErrorCode::kUnavailable, "{}: the client is shutting down", what);
  return fail(ErrorCode::kUnavailable, "{}: still running after {} ms", what, timeout.count());
}

void EventMonitorImpl::onExit(std::function<void(const TaskExit&)> callback) {
  std::lock_guard lock(callbacks_mutex_);
  exit_callbacks_.push_back(std::move(callback));
}

void EventMonitorImpl::onOom(std::function<void(const std::string&)> callback) {
  std::lock_guard lock(callbacks_mutex_);
  oom_callbacks_.push_back(std::move(callback));
}

EventMonitorStats EventMonitorImpl::stats() const {
  std::lock_guard lock(mutex_);
  EventMonitorStats s = stats_;
  s.buffered_exits = exits_.size();
  return s;
}

void EventMonitorImpl::dropStreamForTesting(std::chrono::milliseconds pause) {
  std::lock_guard lock(mutex_);
  hold_until_ = std::chrono::steady_clock::now() + pause;
  if (stream_ctx_ != nullptr) stream_ctx_->cancel();
}

}  // namespace ecs::runtime::internal
