#include "agent/metadata/stats_sampler.h"

#include <fcntl.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "agent/metadata/container_stats.h"
#include "cgroups/cgroupfs.h"

namespace ecs::metadata {
namespace {

namespace json = boost::json;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

uint64_t toUint(std::string_view s) {
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') break;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  return v;
}

// Whether the sampler reads a container: only running ones have live counters.
std::chrono::microseconds threadCpuTime() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::duration_cast<std::chrono::microseconds>(
                                               std::chrono::nanoseconds(ts.tv_nsec));
}

bool sampled(const engine::ContainerSnapshot& c) {
  return c.known == engine::ContainerStatus::kRunning && !c.runtime_id.empty();
}

// Containers that /task/stats lists: the ones that exist in the runtime.
bool listedInTaskStats(const engine::ContainerSnapshot& c) {
  if (c.runtime_id.empty()) return false;
  switch (c.known) {
    case engine::ContainerStatus::kCreated:
    case engine::ContainerStatus::kRunning:
      return true;
    case engine::ContainerStatus::kStopped:
      return c.created_at.has_value();
    default:
      return false;
  }
}

}  // namespace

NetDevMap parseProcNetDev(std::string_view text) {
  NetDevMap out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;  // the two header lines have '|', not ':'
    auto name = line.substr(0, colon);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    std::vector<uint64_t> v;
    auto rest = line.substr(colon + 1);
    while (!rest.empty()) {
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      if (rest.empty()) break;
      auto end = rest.find(' ');
      v.push_back(toUint(rest.substr(0, end)));
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    }
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit: bytes
    // packets errs drop fifo colls carrier compressed.
    if (name.empty() || v.size() < 12) continue;
    out[std::string(name)] = NetDevCounters{v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11]};
  }
  return out;
}

Result<NetDevMap> readNetDevInNetns(const std::string& netns_path) {
  Fd own(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (own.get() < 0)
    return fail(cgroups::cgroupfs::errnoError(errno, "open", "/proc/thread-self/ns/net"));
  Fd target(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) return fail(cgroups::cgroupfs::errnoError(errno, "open netns", netns_path));
  if (::setns(target.get(), CLONE_NEWNET) != 0) {
    return fail(cgroups::cgroupfs::errnoError(errno, "setns", netns_path));
  }
  // /proc/net is /proc/self/net, which follows the thread group leader's namespace; this
  // thread's own view is under thread-self.
  auto text = cgroups::cgroupfs::readFile("/proc/thread-self/net/dev");
  if (::setns(own.get(), CLONE_NEWNET) != 0) {
    // Cannot happen short of a kernel bug (we held the fd); the thread's later reads still
    // enter their target explicitly, so log rather than abort.
    spdlog::error("stats: could not return to the agent's network namespace: {}",
                  std::strerror(errno));
  }
  if (!text) return fail(text.error().wrap(fmt::format("read net/dev in {}", netns_path)));
  return parseProcNetDev(*text);
}

struct StatsSampler::Impl {
  StatsSamplerOptions options;
  stats::CgroupLayout layout;

  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread worker;
  std::unordered_map<std::string, engine::TaskSnapshotPtr> tasks;  // by task id (or ARN)
  struct Samples {
    std::optional<stats::Sample> previous;
    stats::Sample current;
  };
  std::unordered_map<std::string, Samples> samples;                // by runtime id
  std::unordered_map<std::string, std::deque<UsageSample>> usage;  // by runtime id, bounded
  uint64_t ticks = 0;
  std::chrono::microseconds last_tick{0};
  std::chrono::microseconds last_tick_cpu{0};
  size_t last_tick_containers = 0;
  std::unordered_set<std::string> warned;  // runtime ids whose read failure was logged

  struct Target {
    std::string runtime_id;
    std::string cgroup_path;
    std::string netns_path;
    bool host_network = false;
  };

  static std::string taskKey(const engine::TaskSnapshot& t) { return t.id.empty() ? t.arn : t.id; }

  std::vector<Target> targets() const {
    std::lock_guard lock(mutex);
    std::vector<Target> out;
    for (const auto& [key, task] : tasks) {
      for (const auto& c : task->containers) {
        if (!sampled(c)) continue;
        Target t{c.runtime_id, c.cgroup_path, c.resources.netns_path, false};
        // The engine lays containers out as <task cgroup>/<runtime id>; a snapshot without the
        // container's own path still finds it there.
        if (t.cgroup_path.empty() && !task->cgroup_path.empty()) {
          t.cgroup_path = task->cgroup_path + "/" + c.runtime_id;
        }
        std::string mode =
            c.resources.network_mode.empty() ? task->network_mode : c.resources.network_mode;
        t.host_network = mode == "host";
        out.push_back(std::move(t));
      }
    }
    return out;
  }

  void tick() {
    auto began = std::chrono::steady_clock::now();
    auto cpu_began = threadCpuTime();
    auto list = targets();
    auto host = stats::readHost(options.proc_root);
    if (!host) {
      spdlog::warn("stats: {}", host.error().message);
      host = stats::HostSample{};
    }
    const NetDevReader& reader =
        options.net_dev_reader ? options.net_dev_reader : NetDevReader(readNetDevInNetns);
    // Containers of one awsvpc task share a namespace: read each namespace once per tick.
    std::unordered_map<std::string, std::optional<NetDevMap>> netns_reads;
    std::vector<std::pair<std::string, Result<stats::Sample>>> read;
    std::vector<std::chrono::steady_clock::time_point> read_at;
    read.reserve(list.size());
    read_at.reserve(list.size());
    for (const auto& t : list) {
      read_at.push_back(std::chrono::steady_clock::now());
      auto sample = stats::readCgroup(layout, t.cgroup_path, *host);
      // Host-mode containers have no interfaces of their own: Docker reports no networks for
      // them, and neither do we (the host's counters would be everyone's traffic). Without a
      // namespace path the container's private namespace is unreachable (no pid in the
      // snapshot), so none are reported either.
      if (sample && !t.host_network && !t.netns_path.empty()) {
        auto [it, fresh] = netns_reads.try_emplace(t.netns_path);
        if (fresh) {
          auto nets = reader(t.netns_path);
          if (nets) {
            nets->erase("lo");
            it->second = std::move(*nets);
          } else {
            spdlog::debug("stats: {}", nets.error().message);
          }
        }
        sample->networks = it->second;
      }
      read.emplace_back(t.runtime_id, std::move(sample));
    }
    auto took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - began);
    auto cpu_took = threadCpuTime() - cpu_began;

    std::lock_guard lock(mutex);
    std::unordered_set<std::string_view> live;
    for (const auto& [key, task] : tasks) {
      for (const auto& c : task->containers) live.insert(c.runtime_id);
    }
    ++ticks;
    for (size_t i = 0; i < read.size(); ++i) {
      auto& [id, sample] = read[i];
      if (!sample) {
        // A container that just stopped races its cgroup's removal: debug, once per container.
        if (warned.insert(id).second)
          spdlog::debug("stats: container {}: {}", id, sample.error().message);
        continue;
      }
      warned.erase(id);
      if (!live.contains(id)) continue;  // its task was removed while we read
      recordUsage(id, *sample, read_at[i]);
      auto& s = samples[id];
      if (s.current.read.time_since_epoch().count() != 0) s.previous = std::move(s.current);
      s.current = std::move(*sample);
    }
    last_tick = took;
    last_tick_cpu = cpu_took;
    last_tick_containers = list.size();
  }

  // Called with the mutex held.
  void recordUsage(const std::string& id, const stats::Sample& sample,
                   std::chrono::steady_clock::time_point at) {
    if (options.usage_history == 0) return;
    UsageSample u;
    u.tick = ticks;
    u.read = at;
    u.cpu_usage_ns = sample.cpu.total_ns;
    u.online_cpus = sample.cpu.online_cpus;
    u.memory_usage_bytes = sample.memory.usage;
    const std::string_view cache_key = layout.v2 ? "inactive_file" : "cache";
    for (const auto& [key, value] : sample.memory.stats) {
      if (key == cache_key) {
        u.memory_cache_bytes = value;
        break;
      }
    }
    auto& queue = usage[id];
    queue.push_back(u);
    while (queue.size() > options.usage_history) queue.pop_front();
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      lock.unlock();
      tick();
      lock.lock();
      wake.wait_for(lock, options.interval, [this] { return stopping; });
    }
  }
};

// The io_context is not used: the timer is the worker's own wait, so a slow cgroup read can never
// hold up the agent's loop, and the sampler keeps ticking however busy that loop is.
StatsSampler::StatsSampler(boost::asio::io_context&, StatsSamplerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  if (impl_->options.interval <= std::chrono::milliseconds::zero()) {
    impl_->options.interval = std::chrono::milliseconds(1000);
  }
  impl_->layout = stats::CgroupLayout::detect(impl_->options.cgroup_root);
}

StatsSampler::~StatsSampler() {
  stop();
}

void StatsSampler::update(const engine::TaskSnapshotPtr& task) {
  if (!task) return;
  std::lock_guard lock(impl_->mutex);
  auto key = Impl::taskKey(*task);
  if (task->removed) {
    impl_->tasks.erase(key);
    for (const auto& c : task->containers) {
      impl_->samples.erase(c.runtime_id);
      impl_->usage.erase(c.runtime_id);
      impl_->warned.erase(c.runtime_id);
    }
    return;
  }
  impl_->tasks[key] = task;
}

void StatsSampler::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->worker.joinable()) return;
  impl_->stopping = false;
  impl_->worker = std::thread([impl = impl_.get()] { impl->run(); });
}

void StatsSampler::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

void StatsSampler::sampleOnce() {
  impl_->tick();
}

std::optional<json::object> StatsSampler::containerStats(std::string_view runtime_id,
                                                         bool v4) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->samples.find(std::string(runtime_id));
  if (it == impl_->samples.end()) return std::nullopt;
  const auto& s = it->second;
  return stats::toJson(s.current, s.previous ? &*s.previous : nullptr, it->first, v4);
}

json::object StatsSampler::taskStats(const engine::TaskSnapshot& task, bool v4) const {
  json::object out;
  for (const auto& c : task.containers) {
    if (!listedInTaskStats(c)) continue;
    auto stats = containerStats(c.runtime_id, v4);
    out[c.runtime_id] = stats ? std::move(*stats) : json::object{};
  }
  return out;
}

std::vector<UsageSample> StatsSampler::usageSamples(std::string_view runtime_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->usage.find(std::string(runtime_id));
  if (it == impl_->usage.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::chrono::microseconds StatsSampler::lastTickDuration() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->last_tick;
}

std::chrono::microseconds StatsSampler::lastTickCpuTime() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->last_tick_cpu;
}

size_t StatsSampler::lastTickContainers() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->last_tick_containers;
}

}  // namespace ecs::metadata
