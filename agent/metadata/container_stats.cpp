#include "agent/metadata/container_stats.h"

#include <unistd.h>

#include <charconv>

#include "agent/metadata/task_metadata.h"
#include "cgroups/cgroupfs.h"

namespace ecs::metadata::stats {
namespace {

namespace json = boost::json;
namespace cgfs = ecs::cgroups::cgroupfs;

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

uint64_t toUint(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

uint64_t ticksToNs(uint64_t ticks) {
  static const long hz = [] {
    long v = sysconf(_SC_CLK_TCK);
    return v > 0 ? v : 100;
  }();
  return ticks * (1'000'000'000ULL / static_cast<uint64_t>(hz));
}

// "8:0 Read 4096" lines (v1 blkio), the Total line dropped as Docker does.
std::vector<BlkioEntry> parseBlkioV1(std::string_view text) {
  std::vector<BlkioEntry> out;
  for (auto line : lines(text)) {
    auto f = fields(line);
    if (f.size() != 3) continue;
    auto colon = f[0].find(':');
    if (colon == std::string_view::npos) continue;
    out.push_back({toUint(f[0].substr(0, colon)), toUint(f[0].substr(colon + 1)), std::string(f[1]),
                   toUint(f[2])});
  }
  return out;
}

// v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") in Docker's v2 mapping:
// bytes and ios as "read"/"write" entries.
void parseIoStatV2(std::string_view text, Sample& s) {
  for (auto line : lines(text)) {
    auto f = fields(line);
    if (f.empty()) continue;
    auto colon = f[0].find(':');
    if (colon == std::string_view::npos) continue;
    uint64_t major = toUint(f[0].substr(0, colon)), minor = toUint(f[0].substr(colon + 1));
    for (size_t i = 1; i < f.size(); ++i) {
      auto eq = f[i].find('=');
      if (eq == std::string_view::npos) continue;
      auto key = f[i].substr(0, eq);
      uint64_t value = toUint(f[i].substr(eq + 1));
      if (key == "rbytes") s.io_service_bytes.push_back({major, minor, "read", value});
      if (key == "wbytes") s.io_service_bytes.push_back({major, minor, "write", value});
      if (key == "rios") s.io_serviced.push_back({major, minor, "read", value});
      if (key == "wios") s.io_serviced.push_back({major, minor, "write", value});
    }
  }
}

std::vector<std::pair<std::string, uint64_t>> parseKeyed(std::string_view text) {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto line : lines(text)) {
    auto f = fields(line);
    if (f.size() == 2) out.emplace_back(std::string(f[0]), toUint(f[1]));
  }
  return out;
}

// A counter file; "max" (no limit) and a missing file are 0.
Result<uint64_t> counter(const std::string& path) {
  auto text = cgfs::readOptionalFile(path);
  if (!text) return fail(text.error());
  return cgfs::parseUint(*text).value_or(0);
}

#define TRY_ASSIGN(lhs, expr)             \
  do {                                    \
    auto tmp_ = (expr);                   \
    if (!tmp_) return fail(tmp_.error()); \
    lhs = std::move(*tmp_);               \
  } while (0)

Result<void> readV1(const std::string& root, const std::string& path, Sample& s) {
  auto dir = [&](const char* controller) { return root + "/" + controller + path; };
  // The cpuacct hierarchy is the one every container has; its absence means the container is gone.
  if (!cgfs::isDirectory(dir("cpuacct")) && !cgfs::isDirectory(dir("memory"))) {
    return fail(ErrorCode::kNotFound, "no cgroup {} under {}", path, root);
  }
  std::string text;
  TRY_ASSIGN(s.cpu.total_ns, counter(dir("cpuacct") + "/cpuacct.usage"));
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir("cpuacct") + "/cpuacct.usage_percpu"));
  std::string_view first_line = std::string_view(text).substr(0, text.find('\n'));
  for (auto f : fields(first_line)) s.cpu.percpu_ns.push_back(toUint(f));
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir("cpuacct") + "/cpuacct.stat"));
  s.cpu.user_ns = ticksToNs(cgfs::keyedValue(text, "user").value_or(0));
  s.cpu.kernel_ns = ticksToNs(cgfs::keyedValue(text, "system").value_or(0));
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir("cpu") + "/cpu.stat"));
  s.cpu.periods = cgfs::keyedValue(text, "nr_periods").value_or(0);
  s.cpu.throttled_periods = cgfs::keyedValue(text, "nr_throttled").value_or(0);
  s.cpu.throttled_ns = cgfs::keyedValue(text, "throttled_time").value_or(0);

  TRY_ASSIGN(s.memory.usage, counter(dir("memory") + "/memory.usage_in_bytes"));
  TRY_ASSIGN(s.memory.max_usage, counter(dir("memory") + "/memory.max_usage_in_bytes"));
  TRY_ASSIGN(s.memory.failcnt, counter(dir("memory") + "/memory.failcnt"));
  TRY_ASSIGN(s.memory.limit, counter(dir("memory") + "/memory.limit_in_bytes"));
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir("memory") + "/memory.stat"));
  s.memory.stats = parseKeyed(text);

  // The CFQ files (blkio.io_*) have data only with the CFQ/BFQ scheduler; otherwise the throttle
  // files, recursive where the kernel has them, as runc does.
  auto blkio = [&](const std::string& name) -> Result<std::vector<BlkioEntry>> {
    for (auto file : {"blkio." + name + "_recursive", "blkio.throttle." + name + "_recursive",
                      "blkio.throttle." + name}) {
      auto content = cgfs::readOptionalFile(dir("blkio") + "/" + file);
      if (!content) return fail(content.error());
      auto entries = parseBlkioV1(*content);
      if (!entries.empty()) return entries;
    }
    return std::vector<BlkioEntry>{};
  };
  TRY_ASSIGN(s.io_service_bytes, blkio("io_service_bytes"));
  TRY_ASSIGN(s.io_serviced, blkio("io_serviced"));

  TRY_ASSIGN(s.pids_current, counter(dir("pids") + "/pids.current"));
  TRY_ASSIGN(s.pids_limit, counter(dir("pids") + "/pids.max"));
  return {};
}

Result<void> readV2(const std::string& root, const std::string& path, Sample& s) {
  std::string dir = root + path;
  if (!cgfs::isDirectory(dir))
    return fail(ErrorCode::kNotFound, "no cgroup {} under {}", path, root);
  std::string text;
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir + "/cpu.stat"));
  s.cpu.total_ns = cgfs::keyedValue(text, "usage_usec").value_or(0) * 1000;
  s.cpu.user_ns = cgfs::keyedValue(text, "user_usec").value_or(0) * 1000;
  s.cpu.kernel_ns = cgfs::keyedValue(text, "system_usec").value_or(0) * 1000;
  s.cpu.periods = cgfs::keyedValue(text, "nr_periods").value_or(0);
  s.cpu.throttled_periods = cgfs::keyedValue(text, "nr_throttled").value_or(0);
  s.cpu.throttled_ns = cgfs::keyedValue(text, "throttled_usec").value_or(0) * 1000;
  TRY_ASSIGN(s.memory.usage, counter(dir + "/memory.current"));
  TRY_ASSIGN(s.memory.limit, counter(dir + "/memory.max"));
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir + "/memory.stat"));
  s.memory.stats = parseKeyed(text);
  TRY_ASSIGN(text, cgfs::readOptionalFile(dir + "/io.stat"));
  parseIoStatV2(text, s);
  TRY_ASSIGN(s.pids_current, counter(dir + "/pids.current"));
  TRY_ASSIGN(s.pids_limit, counter(dir + "/pids.max"));
  return {};
}

json::value blkioArray(const std::vector<BlkioEntry>& entries) {
  if (entries.empty()) return nullptr;  // Docker's nil slice
  json::array out;
  for (const auto& e : entries) {
    out.push_back(
        json::object{{"major", e.major}, {"minor", e.minor}, {"op", e.op}, {"value", e.value}});
  }
  return out;
}

json::object cpuJson(const CpuSample& c) {
  json::object usage{{"total_usage", c.total_ns}};
  if (!c.percpu_ns.empty()) {
    json::array percpu;
    for (auto v : c.percpu_ns) percpu.push_back(v);
    usage["percpu_usage"] = std::move(percpu);
  }
  usage["usage_in_kernelmode"] = c.kernel_ns;
  usage["usage_in_usermode"] = c.user_ns;
  json::object out{{"cpu_usage", std::move(usage)}};
  if (c.system_ns > 0) out["system_cpu_usage"] = c.system_ns;
  if (c.online_cpus > 0) out["online_cpus"] = c.online_cpus;
  out["throttling_data"] = json::object{{"periods", c.periods},
                                        {"throttled_periods", c.throttled_periods},
                                        {"throttled_time", c.throttled_ns}};
  return out;
}

// Go's zero time, which Docker writes as preread before it has a previous frame.
constexpr std::string_view kZeroTime = "0001-01-01T00:00:00Z";

}  // namespace

CgroupLayout CgroupLayout::detect(const std::string& root) {
  return CgroupLayout{cgfs::exists(root + "/cgroup.controllers"), root};
}

Result<HostSample> readHost(const std::string& proc_root) {
  HostSample host;
  auto stat = cgfs::readFile(proc_root + "/stat");
  if (!stat) return fail(stat.error());
  for (auto line : lines(*stat)) {
    auto f = fields(line);
    if (f.empty() || !f[0].starts_with("cpu")) continue;
    if (f[0] == "cpu") {
      // user nice system idle iowait irq softirq, as Docker sums them
      uint64_t ticks = 0;
      for (size_t i = 1; i < f.size() && i <= 7; ++i) ticks += toUint(f[i]);
      host.system_cpu_ns = ticksToNs(ticks);
    } else {
      ++host.online_cpus;
    }
  }
  auto meminfo = cgfs::readOptionalFile(proc_root + "/meminfo");
  if (!meminfo) return fail(meminfo.error());
  // "MemTotal:       16384 kB"
  for (auto line : lines(*meminfo)) {
    auto f = fields(line);
    if (f.size() >= 2 && f[0] == "MemTotal:") host.mem_total = toUint(f[1]) * 1024;
  }
  return host;
}

Result<Sample> readCgroup(const CgroupLayout& layout, const std::string& cgroup_path,
                          const HostSample& host) {
  if (cgroup_path.empty() || cgroup_path.front() != '/' ||
      cgroup_path.find("..") != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "cgroup path '{}' is not absolute", cgroup_path);
  }
  Sample s;
  s.read = std::chrono::system_clock::now();
  auto read = layout.v2 ? readV2(layout.root, cgroup_path, s) : readV1(layout.root, cgroup_path, s);
  if (!read) return fail(read.error().wrap(fmt::format("read cgroup {}", cgroup_path)));
  s.cpu.system_ns = host.system_cpu_ns;
  s.cpu.online_cpus = host.online_cpus;
  if (s.cpu.online_cpus == 0) s.cpu.online_cpus = static_cast<uint32_t>(s.cpu.percpu_ns.size());
  if (host.mem_total > 0 && (s.memory.limit == 0 || s.memory.limit > host.mem_total)) {
    s.memory.limit = host.mem_total;
  }
  return s;
}

json::object toJson(const Sample& cur, const Sample* prev, const std::string& id, bool v4) {
  json::object o;
  o["read"] = rfc3339(cur.read);
  o["preread"] = prev ? json::string(rfc3339(prev->read)) : json::string(kZeroTime);
  json::object pids{{"current", cur.pids_current}};
  if (cur.pids_limit > 0) pids["limit"] = cur.pids_limit;
  o["pids_stats"] = std::move(pids);
  json::object blkio;
  blkio["io_service_bytes_recursive"] = blkioArray(cur.io_service_bytes);
  blkio["io_serviced_recursive"] = blkioArray(cur.io_serviced);
  for (auto key : {"io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                   "io_merged_recursive", "io_time_recursive", "sectors_recursive"}) {
    blkio[key] = nullptr;
  }
  o["blkio_stats"] = std::move(blkio);
  o["num_procs"] = 0;
  o["storage_stats"] = json::object{};
  o["cpu_stats"] = cpuJson(cur.cpu);
  o["precpu_stats"] = cpuJson(prev ? prev->cpu : CpuSample{});
  json::object memory{{"usage", cur.memory.usage}};
  if (cur.memory.max_usage > 0) memory["max_usage"] = cur.memory.max_usage;
  json::object stats;
  for (const auto& [k, v] : cur.memory.stats) stats[k] = v;
  memory["stats"] = std::move(stats);
  if (cur.memory.failcnt > 0) memory["failcnt"] = cur.memory.failcnt;
  memory["limit"] = cur.memory.limit;
  o["memory_stats"] = std::move(memory);
  o["name"] = "/" + id;
  o["id"] = id;
  uint64_t rx = 0, tx = 0;
  if (cur.networks && !cur.networks->empty()) {
    json::object nets;
    for (const auto& [name, n] : *cur.networks) {
      nets[name] = json::object{{"rx_bytes", n.rx_bytes},   {"rx_packets", n.rx_packets},
                                {"rx_errors", n.rx_errors}, {"rx_dropped", n.rx_dropped},
                                {"tx_bytes", n.tx_bytes},   {"tx_packets", n.tx_packets},
                                {"tx_errors", n.tx_errors}, {"tx_dropped", n.tx_dropped}};
      rx += n.rx_bytes;
      tx += n.tx_bytes;
    }
    o["networks"] = std::move(nets);
  }
  if (v4) {
    double rx_rate = 0, tx_rate = 0;
    if (prev && prev->networks && cur.networks) {
      uint64_t prx = 0, ptx = 0;
      for (const auto& [name, n] : *prev->networks) {
        prx += n.rx_bytes;
        ptx += n.tx_bytes;
      }
      double seconds = std::chrono::duration<double>(cur.read - prev->read).count();
      // Counters that went back (an interface replaced) give no rate rather than a negative one.
      if (seconds > 0 && rx >= prx) rx_rate = static_cast<double>(rx - prx) / seconds;
      if (seconds > 0 && tx >= ptx) tx_rate = static_cast<double>(tx - ptx) / seconds;
    }
    o["network_rate_stats"] =
        json::object{{"rx_bytes_per_sec", rx_rate}, {"tx_bytes_per_sec", tx_rate}};
  }
  return o;
}

}  // namespace ecs::metadata::stats
