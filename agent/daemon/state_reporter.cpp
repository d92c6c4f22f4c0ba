#include "agent/daemon/state_reporter.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <random>

#include "agent/common/failpoint.h"
#include "agent/common/stop_wait.h"

namespace ecs::daemon {

namespace {

using ecsapi::ReportedStatus;

// At most this many unreadable task arns are remembered against reporting one twice.
constexpr std::size_t kUnrecognizedMemory = 1000;

std::optional<ReportedStatus> reported(engine::ContainerStatus status) {
  switch (status) {
    case engine::ContainerStatus::kRunning:
      return ReportedStatus::kRunning;
    case engine::ContainerStatus::kStopped:
      return ReportedStatus::kStopped;
    default:
      return std::nullopt;
  }
}

// "8000-8010" or "8000".
std::optional<ecsapi::PortRange> parseRange(const std::string& text) {
  auto number = [](std::string_view s) -> std::optional<uint16_t> {
    uint16_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
  };
  auto dash = text.find('-');
  auto first = number(std::string_view(text).substr(0, dash));
  auto last = dash == std::string::npos ? first : number(std::string_view(text).substr(dash + 1));
  if (!first || !last) return std::nullopt;
  return ecsapi::PortRange{*first, *last};
}

std::vector<ecsapi::NetworkBinding> bindings(const std::vector<engine::NetworkBinding>& in) {
  std::vector<ecsapi::NetworkBinding> out;
  for (const auto& b : in) {
    ecsapi::NetworkBinding binding;
    binding.bind_ip = b.bind_ip.empty() ? "0.0.0.0" : b.bind_ip;
    binding.protocol =
        b.protocol == "udp" ? ecsapi::TransportProtocol::kUdp : ecsapi::TransportProtocol::kTcp;
    if (!b.container_port_range.empty()) {
      auto container = parseRange(b.container_port_range);
      auto host = parseRange(b.host_port_range);
      if (!container || !host) continue;
      binding.container_ports = *container;
      binding.host_ports = *host;
    } else {
      binding.container_ports = {static_cast<uint16_t>(b.container_port),
                                 static_cast<uint16_t>(b.container_port)};
      binding.host_ports = {static_cast<uint16_t>(b.host_port), static_cast<uint16_t>(b.host_port)};
    }
    out.push_back(binding);
  }
  return out;
}

}  // namespace

std::optional<ecsapi::ContainerStateChange> containerChange(const engine::StateChange& change) {
  if (change.container_name.empty() || change.health) return std::nullopt;
  auto status = reported(change.status);
  if (!status) return std::nullopt;
  ecsapi::ContainerStateChange out;
  out.container_name = change.container_name;
  out.status = *status;
  if (!change.runtime_id.empty()) out.runtime_id = change.runtime_id;
  if (!change.image_digest.empty()) out.image_digest = change.image_digest;
  if (*status == ReportedStatus::kStopped) {
    out.exit_code = change.exit_code;
    if (!change.reason.empty()) out.reason = change.reason;
  }
  out.network_bindings = bindings(change.network_bindings);
  return out;
}

StateReporter::StateReporter(TaskChangeSink sink, StateReporterOptions options)
    : sink_(std::move(sink)), options_(std::move(options)) {
  if (!options_.random) {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    auto mutex = std::make_shared<std::mutex>();
    options_.random = [engine, mutex] {
      std::lock_guard lock(*mutex);
      return std::uniform_real_distribution<double>(0.0, 1.0)(*engine);
    };
  }
  if (options_.senders < 1) options_.senders = 1;
}

StateReporter::~StateReporter() {
  stop();
}

std::chrono::milliseconds StateReporter::flushDelay() {
  auto span = options_.container_flush_max - options_.container_flush_min;
  if (span.count() <= 0) return options_.container_flush_min;
  return options_.container_flush_min +
         std::chrono::milliseconds(static_cast<int64_t>(span.count() * options_.random()));
}

void StateReporter::queueTaskChange(TaskQueue& queue, const std::string& arn, ReportedStatus status,
                                    const engine::StateChange* change) {
  ecsapi::TaskStateChange out;
  out.cluster = queue.cluster;
  out.task_arn = arn;
  out.status = status;
  if (change) {
    if (status == ReportedStatus::kStopped) out.reason = change->reason;
    out.pull_started_at = change->pull_started_at;
    out.pull_stopped_at = change->pull_stopped_at;
    out.execution_stopped_at = change->execution_stopped_at;
  }
  for (auto& [name, container] : queue.containers) {
    queue.container_sent[name] = container.status;
    out.containers.push_back(std::move(container));
  }
  queue.containers.clear();
  queue.flush_at.reset();
  queue.task_sent = status;
  ReporterEntry entry;
  entry.seq = options_.journal ? options_.journal->queued(out) : 0;
  entry.change = std::move(out);
  queue.changes.push_back(std::move(entry));
}

void StateReporter::restore(const std::vector<ReporterTask>& tasks,
                            std::vector<ReporterEntry> pending) {
  std::lock_guard lock(mutex_);
  for (const auto& t : tasks) {
    auto& queue = tasks_[t.arn];
    queue.cluster = t.cluster.empty() ? options_.cluster : t.cluster;
    queue.task_sent = t.task_sent;
    queue.container_sent = t.container_sent;
    queue.removed = t.removed;
  }
  for (auto& entry : pending) {
    auto& queue = tasks_[entry.change.task_arn];
    if (queue.cluster.empty()) queue.cluster = options_.cluster;
    if (!queue.task_sent || *queue.task_sent < entry.change.status)
      queue.task_sent = entry.change.status;
    for (const auto& c : entry.change.containers) {
      auto& sent = queue.container_sent[c.container_name];
      sent = std::max(sent, c.status);
    }
    queue.changes.push_back(std::move(entry));
  }
  std::vector<std::string> done;
  for (const auto& [arn, queue] : tasks_) {
    if (queue.removed && queue.changes.empty()) done.push_back(arn);
  }
  for (const auto& arn : done) forgetIfDone(arn);
  ++generation_;
}

void StateReporter::forgetIfDone(const std::string& arn) {
  auto it = tasks_.find(arn);
  if (it == tasks_.end() || !it->second.removed || !it->second.changes.empty() || it->second.busy ||
      !it->second.containers.empty()) {
    return;
  }
  tasks_.erase(it);
  if (options_.journal) options_.journal->finished(arn);
}

void StateReporter::submit(const engine::StateChange& change) {
  bool stopped = false;
  {
    std::lock_guard lock(mutex_);
    auto& queue = tasks_[change.task_arn];
    if (queue.cluster.empty()) queue.cluster = options_.cluster;
    if (!change.container_name.empty()) {
      auto container = containerChange(change);
      if (!container) return;
      auto sent = queue.container_sent.find(change.container_name);
      if (sent != queue.container_sent.end() && sent->second >= container->status) return;
      queue.containers[change.container_name] = std::move(*container);
      // A change while the task keeps running goes out on its own after a while.
      if (queue.task_sent == ReportedStatus::kRunning && !queue.flush_at) {
        queue.flush_at = std::chrono::steady_clock::now() + flushDelay();
      }
    } else {
      auto status = reported(change.status);
      if (!status) return;
      if (queue.task_sent && *queue.task_sent >= *status) return;  // never twice
      queueTaskChange(queue, change.task_arn, *status, &change);
      stopped = *status == ReportedStatus::kStopped;
    }
    ++generation_;
  }
  wake_.notify_all();
  if (stopped && options_.on_task_stopped) options_.on_task_stopped(change.task_arn);
}

void StateReporter::taskRemoved(const std::string& task_arn) {
  std::lock_guard lock(mutex_);
  auto it = tasks_.find(task_arn);
  if (it == tasks_.end()) {
    if (options_.journal) options_.journal->finished(task_arn);
    return;
  }
  it->second.removed = true;
  // Container changes never sent with a task change go no further once the task is gone.
  if (it->second.changes.empty()) it->second.containers.clear();
  forgetIfDone(task_arn);
}

void StateReporter::reportUnrecognized(const std::string& task_arn, const std::string& cluster,
                                       const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (!unrecognized_.insert(task_arn).second) return;
    unrecognized_order_.push_back(task_arn);
    if (unrecognized_order_.size() > kUnrecognizedMemory) {
      unrecognized_.erase(unrecognized_order_.front());
      unrecognized_order_.pop_front();
    }
    auto& queue = tasks_[task_arn];
    queue.cluster = cluster.empty() ? options_.cluster : cluster;
    if (queue.task_sent == ReportedStatus::kStopped) return;
    ecsapi::TaskStateChange out;
    out.cluster = queue.cluster;
    out.task_arn = task_arn;
    out.status = ReportedStatus::kStopped;
    out.reason = reason;
    queue.task_sent = ReportedStatus::kStopped;
    queue.removed = true;  // the engine never had it
    ReporterEntry entry;
    entry.seq = options_.journal ? options_.journal->queued(out) : 0;
    entry.change = std::move(out);
    queue.changes.push_back(std::move(entry));
    ++generation_;
  }
  wake_.notify_all();
}

void StateReporter::start() {
  std::lock_guard lock(mutex_);
  if (!senders_.empty()) return;
  for (int i = 0; i < options_.senders; ++i) {
    senders_.emplace_back([this](std::stop_token stop) { senderLoop(stop); });
  }
}

void StateReporter::stop(std::chrono::milliseconds flush) {
  {
    std::unique_lock lock(mutex_);
    if (senders_.empty()) return;
    auto deadline = std::chrono::steady_clock::now() + flush;
    wake_.wait_until(lock, deadline, [this] {
      for (const auto& [arn, queue] : tasks_) {
        if (!queue.changes.empty()) return false;
      }
      return true;
    });
  }
  for (auto& sender : senders_) sender.request_stop();
  {
    std::lock_guard lock(mutex_);
    ++generation_;
  }
  wake_.notify_all();
  senders_.clear();  // joins
}

StateReporter::Delivery StateReporter::deliver(const ecsapi::TaskStateChange& change,
                                               std::stop_token stop) {
  for (int retry = 0; !stop.stop_requested(); ++retry) {
    auto result = sink_(change, stop);
    if (result) return Delivery::kAccepted;
    const auto& error = result.error();
    if (error.cancelled || stop.stop_requested()) return Delivery::kStopped;
    if (error.type == "InvalidParameterException") {
      spdlog::warn("task {}: the cluster refused state change {} and will not take it: {}",
                   change.task_arn, ecsapi::toString(change.status), error.message);
      return Delivery::kDropped;
    }
    auto delay = options_.retry.delay(retry, options_.random());
    spdlog::warn("task {}: state change {} not delivered ({}); retrying in {} ms", change.task_arn,
                 ecsapi::toString(change.status), error.asError().message, delay.count());
    (void)sleepFor(delay, stop);  // a stop ends the loop
  }
  return Delivery::kStopped;
}

void StateReporter::senderLoop(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    auto now = std::chrono::steady_clock::now();
    std::optional<std::chrono::steady_clock::time_point> next_flush;
    std::string chosen;
    for (auto& [arn, queue] : tasks_) {
      if (queue.busy) continue;
      if (queue.changes.empty() && queue.flush_at) {
        if (*queue.flush_at <= now && queue.task_sent == ReportedStatus::kRunning) {
          queueTaskChange(queue, arn, ReportedStatus::kRunning, nullptr);
        } else if (!next_flush || *queue.flush_at < *next_flush) {
          next_flush = queue.flush_at;
        }
      }
      if (!queue.changes.empty()) {
        chosen = arn;
        break;
      }
    }
    if (chosen.empty()) {
      auto seen = generation_;
      auto changed = [this, seen] { return generation_ != seen; };
      if (next_flush) {
        wake_.wait_until(lock, stop, *next_flush, changed);
      } else {
        wake_.wait(lock, stop, changed);
      }
      continue;
    }
    auto& queue = tasks_[chosen];
    queue.busy = true;
    auto entry = queue.changes.front();
    lock.unlock();
    failpoint("state-change-sending");
    auto delivery = deliver(entry.change, stop);
    if (delivery == Delivery::kAccepted) failpoint("state-change-accepted");
    lock.lock();
    auto& after = tasks_[chosen];
    after.busy = false;
    if (delivery != Delivery::kStopped) {
      if (options_.journal) {
        options_.journal->delivered(entry.seq, entry.change, delivery == Delivery::kDropped);
      }
      after.changes.pop_front();
      ++delivered_;
      forgetIfDone(chosen);
    }
    ++generation_;
    wake_.notify_all();
  }
}

std::vector<ecsapi::TaskStateChange> StateReporter::pending() const {
  std::lock_guard lock(mutex_);
  std::vector<ecsapi::TaskStateChange> out;
  for (const auto& [arn, queue] : tasks_)
    for (const auto& entry : queue.changes) out.push_back(entry.change);
  return out;
}

std::uint64_t StateReporter::delivered() const {
  std::lock_guard lock(mutex_);
  return delivered_;
}

}  // namespace ecs::daemon
