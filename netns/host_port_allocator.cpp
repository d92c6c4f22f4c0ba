#include "netns/host_port_allocator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "netns/allocation_file.h"
#include "netns/iptables.h"

namespace ecs::netns {
namespace {

namespace json = boost::json;

constexpr int kMaxPort = 65535;
// Ports below this are privileged and by convention belong to system services.
constexpr int kFirstUnprivilegedPort = 1024;
// The run above ip_local_port_range is preferred when it holds at least this many ports.
constexpr int kMinPreferredRun = 1024;

// One allocation: `count` consecutive host ports from `first`.
struct PortBlock {
  Protocol protocol = Protocol::kTcp;
  int first = 0;
  int count = 1;
};

struct PortOwner {
  ProcessIdentity process;
  std::vector<PortBlock> blocks;
};

// Owner (task ID) to what it holds. Sorted, so the file's bytes depend only on its content.
using PortState = std::map<std::string, PortOwner>;

std::string_view reservedSetting(Protocol protocol) {
  return protocol == Protocol::kUdp ? "ECS_RESERVED_PORTS_UDP" : "ECS_RESERVED_PORTS";
}

std::string describe(Protocol protocol, int first, int count) {
  if (count == 1) return fmt::format("host port {}/{}", first, toString(protocol));
  return fmt::format("host ports {}-{}/{}", first, first + count - 1, toString(protocol));
}

// --- state file ----------------------------------------------------------------------------------

Result<PortBlock> parseBlock(const json::value& value) {
  const json::object* object = value.if_object();
  if (!object) return fail(ErrorCode::kDataLoss, "port entry is not an object");
  PortBlock block;
  const json::value* protocol = object->if_contains("protocol");
  const json::string* name = protocol ? protocol->if_string() : nullptr;
  if (name && *name == "tcp") {
    block.protocol = Protocol::kTcp;
  } else if (name && *name == "udp") {
    block.protocol = Protocol::kUdp;
  } else {
    return fail(ErrorCode::kDataLoss, "port entry without protocol tcp or udp");
  }
  const json::value* first = object->if_contains("first");
  const json::value* count = object->if_contains("count");
  if (!first || !count) return fail(ErrorCode::kDataLoss, "port entry without first or count");
  boost::system::error_code first_ec;
  boost::system::error_code count_ec;
  block.first = first->to_number<int>(first_ec);
  block.count = count->to_number<int>(count_ec);
  if (first_ec || count_ec || block.first < 1 || block.count < 1 ||
      block.first > kMaxPort - block.count + 1) {
    return fail(ErrorCode::kDataLoss, "port entry with a bad first or count");
  }
  return block;
}

Result<PortState> parseState(std::string_view content) {
  PortState state;
  auto parsed = parseOwners(content,
                            [&](const std::string& owner, const json::object& record,
                                const ProcessIdentity& process) -> Result<void> {
                              const json::value* ports = record.if_contains("ports");
                              if (!ports || !ports->is_array())
                                return fail(ErrorCode::kDataLoss, "no \"ports\" array");
                              PortOwner& entry = state[owner];
                              entry.process = process;
                              for (const json::value& port : ports->get_array()) {
                                auto block = parseBlock(port);
                                if (!block) return fail(block.error());
                                entry.blocks.push_back(*block);
                              }
                              return {};
                            });
  if (!parsed) return fail(parsed.error());
  return state;
}

std::string serializeState(const PortState& state) {
  json::object owners;
  for (const auto& [owner, entry] : state) {
    json::array ports;
    for (const PortBlock& block : entry.blocks) {
      ports.push_back(json::object{
          {"protocol", toString(block.protocol)}, {"first", block.first}, {"count", block.count}});
    }
    json::object record;
    processToJson(entry.process, record);
    record["ports"] = std::move(ports);
    owners[owner] = std::move(record);
  }
  return json::serialize(json::object{{"owners", std::move(owners)}}) + "\n";
}

// --- probing the host ----------------------------------------------------------------------------

// Whether binding the wildcard address on `port` fails. Without SO_REUSEADDR this fails for a
// listener, a bound UDP socket, and a connection using the port locally, on any address.
bool bindFails(int family, Protocol protocol, int port) {
  int type = protocol == Protocol::kUdp ? SOCK_DGRAM : SOCK_STREAM;
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, 0));
  // No IPv6 on this host: nothing can hold an IPv6 port. No IPv4 socket at all: say "in use",
  // a port we cannot check is no port to hand out.
  if (!fd) return family == AF_INET;
  int rc = 0;
  if (family == AF_INET6) {
    // The IPv4 side is probed on its own; v6-only keeps this probe to IPv6 sockets.
    int on = 1;
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_any;
    address.sin6_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    if (rc != 0 && errno == EADDRNOTAVAIL) return false;  // IPv6 disabled
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(static_cast<uint16_t>(port));
    rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  }
  return rc != 0;
}

bool portBoundOnHost(Protocol protocol, int port) {
  return bindFails(AF_INET, protocol, port) || bindFails(AF_INET6, protocol, port);
}

// The host ports some agent forwards to a container (the DNAT rules of ECS-HOSTPORTS, whatever
// data directory they came from). A forwarded port is not bound on the host, so the bind probe
// cannot see that another agent on the host gave it to one of its tasks. Read at most once per
// allocation, and only when a port is probed.
class ForwardedPorts {
 public:
  bool contains(Protocol protocol, int port) {
    if (!ports_) ports_ = read();
    return ports_->contains(std::pair(protocol, port));
  }

 private:
  static std::set<std::pair<Protocol, int>> read() {
    std::set<std::pair<Protocol, int>> ports;
    auto rules = Iptables::snapshot();
    if (!rules) {
      spdlog::debug("host ports forwarded by other agents: {}", rules.error().message);
      return ports;
    }
    for (const auto& rule : rules->rules) {
      if (rule.table != "nat" || !rule.text.starts_with("-A ECS-HOSTPORTS ")) continue;
      const auto protocol_at = rule.text.find(" -p ");
      const auto port_at = rule.text.find(" --dport ");
      if (protocol_at == std::string::npos || port_at == std::string::npos) continue;
      const std::string_view text(rule.text);
      const auto protocol = text.substr(protocol_at + 4, 3);
      int port = 0;
      const auto digits = text.substr(port_at + 9);
      std::from_chars(digits.data(), digits.data() + digits.size(), port);
      if (port <= 0) continue;
      if (protocol == "tcp") ports.emplace(Protocol::kTcp, port);
      if (protocol == "udp") ports.emplace(Protocol::kUdp, port);
    }
    return ports;
  }

  std::optional<std::set<std::pair<Protocol, int>>> ports_;
};

// --- allocation ----------------------------------------------------------------------------------

// One allocate() call's view of the host: who holds which port (the file plus what this call has
// taken so far), what is reserved, and what the probe said (asked at most once per port).
class PortMap {
 public:
  PortMap(const PortState& state, const std::set<int>& reserved_tcp,
          const std::set<int>& reserved_udp, const std::function<bool(Protocol, int)>& port_in_use)
      : reserved_tcp_(reserved_tcp), reserved_udp_(reserved_udp), port_in_use_(port_in_use) {
    for (const auto& [owner, entry] : state) {
      for (const PortBlock& block : entry.blocks) take(block, owner);
    }
  }

  void take(const PortBlock& block, const std::string& owner) {
    for (int port = block.first; port < block.first + block.count; ++port) {
      holders_.emplace(std::pair(block.protocol, port), owner);
    }
  }

  bool reserved(Protocol protocol, int port) const {
    return (protocol == Protocol::kUdp ? reserved_udp_ : reserved_tcp_).contains(port);
  }
  const std::string* holder(Protocol protocol, int port) const {
    auto it = holders_.find(std::pair(protocol, port));
    return it == holders_.end() ? nullptr : &it->second;
  }
  bool inUse(Protocol protocol, int port) {
    auto [it, inserted] = probed_.try_emplace(std::pair(protocol, port), false);
    if (inserted) it->second = port_in_use_(protocol, port);
    return it->second;
  }

  // Why `port` cannot be taken; nullopt if it can.
  std::optional<std::string> whyTaken(Protocol protocol, int port) {
    std::string name = describe(protocol, port, 1);
    if (reserved(protocol, port)) {
      return fmt::format("{} is reserved ({})", name, reservedSetting(protocol));
    }
    if (const std::string* owner = holder(protocol, port)) {
      return fmt::format("{} is already used by task {}", name, *owner);
    }
    if (inUse(protocol, port)) return fmt::format("{} is in use on the host", name);
    return std::nullopt;
  }

  // The lowest `count` consecutive ports in `range` that can all be taken. Reserved and held
  // ports are skipped without probing; a port that cannot be taken restarts the search after it.
  std::optional<int> findRun(Protocol protocol, int count, HostPortRange range) {
    int first = range.first;
    while (first <= range.last - count + 1) {
      int blocked = 0;
      for (int port = first; port < first + count && blocked == 0; ++port) {
        if (reserved(protocol, port) || holder(protocol, port)) blocked = port;
      }
      for (int port = first; port < first + count && blocked == 0; ++port) {
        if (inUse(protocol, port)) blocked = port;
      }
      if (blocked == 0) return first;
      first = blocked + 1;
    }
    return std::nullopt;
  }

 private:
  const std::set<int>& reserved_tcp_;
  const std::set<int>& reserved_udp_;
  const std::function<bool(Protocol, int)>& port_in_use_;
  std::map<std::pair<Protocol, int>, std::string> holders_;
  std::map<std::pair<Protocol, int>, bool> probed_;
};

Result<void> checkRequest(const PortRequest& request) {
  if (request.count < 1 || request.count > kMaxPort) {
    return fail(ErrorCode::kInvalidArgument, "port request for {} ports: must be 1 to {}",
                request.count, kMaxPort);
  }
  if (request.host_port && *request.host_port != 0) {
    int first = *request.host_port;
    if (first < 1 || first > kMaxPort - request.count + 1) {
      return fail(ErrorCode::kInvalidArgument, "{} is not a valid host port range",
                  describe(request.protocol, first, request.count));
    }
  }
  return {};
}

bool isStatic(const PortRequest& request) {
  return request.host_port && *request.host_port != 0;
}

class HostPortAllocatorImpl final : public OwnedStateStore<HostPortAllocator, PortState> {
 public:
  explicit HostPortAllocatorImpl(HostPortAllocatorOptions options)
      : OwnedStateStore({options.state_path, "host ports", parseState, serializeState}),
        options_(std::move(options)),
        reserved_tcp_(options_.reserved_tcp.begin(), options_.reserved_tcp.end()),
        reserved_udp_(options_.reserved_udp.begin(), options_.reserved_udp.end()),
        probe_host_(!options_.port_in_use) {}

  using OwnedStateStore::load;

  Result<std::vector<int>> allocate(const std::string& owner,
                                    const std::vector<PortRequest>& requests) override {
    if (owner.empty()) return fail(ErrorCode::kInvalidArgument, "allocate host ports: no owner");
    for (const PortRequest& request : requests) {
      if (auto ok = checkRequest(request); !ok) return fail(ok.error());
    }
    std::lock_guard lock(mutex_);
    std::vector<int> ports(requests.size(), 0);
    auto updated = file_.update([&](PortState& state) -> Result<void> {
      if (requests.empty() && !state.contains(owner)) return {};
      ForwardedPorts forwarded;
      const std::function<bool(Protocol, int)> probe_host = [&](Protocol protocol, int port) {
        return portBoundOnHost(protocol, port) || forwarded.contains(protocol, port);
      };
      PortMap map(state, reserved_tcp_, reserved_udp_,
                  probe_host_ ? probe_host : options_.port_in_use);
      std::vector<PortBlock> taken;
      // Static ports first: a dynamic request earlier in the list must not take a port that a
      // later request names.
      for (bool statics : {true, false}) {
        for (size_t i = 0; i < requests.size(); ++i) {
          const PortRequest& request = requests[i];
          if (isStatic(request) != statics) continue;
          auto first = statics ? takeStatic(map, request) : takeDynamic(map, request);
          if (!first) return fail(first.error());
          PortBlock block{request.protocol, *first, request.count};
          map.take(block, owner);
          taken.push_back(block);
          ports[i] = *first;
        }
      }
      PortOwner& entry = state[owner];
      // The latest agent process to allocate for a task answers for all it holds, so a restarted
      // agent adopts its tasks' ports by allocating again (with no requests, if need be).
      entry.process = currentProcess();
      entry.blocks.insert(entry.blocks.end(), taken.begin(), taken.end());
      return {};
    });
    if (!updated) return fail(updated.error());
    return ports;
  }

  Result<std::vector<HeldPorts>> held(const std::string& owner) const override {
    std::lock_guard lock(mutex_);
    auto state = file_.read();
    if (!state) return fail(state.error());
    std::vector<HeldPorts> out;
    if (auto it = state->find(owner); it != state->end()) {
      for (const PortBlock& block : it->second.blocks) {
        out.push_back({.protocol = block.protocol, .first = block.first, .count = block.count});
      }
    }
    return out;
  }

 private:
  Result<int> takeStatic(PortMap& map, const PortRequest& request) {
    int first = *request.host_port;
    for (int port = first; port < first + request.count; ++port) {
      if (auto why = map.whyTaken(request.protocol, port)) {
        if (request.count == 1) return fail(ErrorCode::kAlreadyExists, "{}", *why);
        return fail(ErrorCode::kAlreadyExists, "{}: {}",
                    describe(request.protocol, first, request.count), *why);
      }
    }
    return first;
  }

  Result<int> takeDynamic(PortMap& map, const PortRequest& request) {
    const HostPortRange& range = options_.dynamic_range;
    if (auto first = map.findRun(request.protocol, request.count, range)) return *first;
    std::string what = request.count == 1
                           ? fmt::format("no free {} host port", toString(request.protocol))
                           : fmt::format("no run of {} free {} host ports", request.count,
                                         toString(request.protocol));
    return fail(ErrorCode::kFailedPrecondition,
                "{} in the dynamic range {}-{} (ECS_DYNAMIC_HOST_PORT_RANGE; reserved, held by "
                "tasks, or in use on the host)",
                what, range.first, range.last);
  }

  HostPortAllocatorOptions options_;
  std::set<int> reserved_tcp_;
  std::set<int> reserved_udp_;
  // No port_in_use given: the bind probe, and the ports other agents on the host forward.
  bool probe_host_;
};

Result<void> checkPortList(const std::vector<int>& ports, std::string_view setting) {
  for (int port : ports) {
    if (port < 1 || port > kMaxPort) {
      return fail(ErrorCode::kInvalidArgument, "{}: {} is not a port (1-{})", setting, port,
                  kMaxPort);
    }
  }
  return {};
}

Result<int> parsePort(std::string_view text, std::string_view whole) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  int port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port < 1 ||
      port > kMaxPort) {
    return fail(ErrorCode::kInvalidArgument, "host port range \"{}\": \"{}\" is not a port (1-{})",
                whole, text, kMaxPort);
  }
  return port;
}

}  // namespace

std::string_view toString(Protocol protocol) {
  return protocol == Protocol::kUdp ? "udp" : "tcp";
}

Result<std::unique_ptr<HostPortAllocator>> HostPortAllocator::open(
    HostPortAllocatorOptions options) {
  if (options.state_path.empty()) {
    return fail(ErrorCode::kInvalidArgument, "host port allocator: no state file path");
  }
  const HostPortRange& range = options.dynamic_range;
  if (range.first < 1 || range.last > kMaxPort || range.first > range.last) {
    return fail(ErrorCode::kInvalidArgument,
                "ECS_DYNAMIC_HOST_PORT_RANGE: {}-{} is not a port range within 1-{}", range.first,
                range.last, kMaxPort);
  }
  if (auto ok = checkPortList(options.reserved_tcp, "ECS_RESERVED_PORTS"); !ok) {
    return fail(ok.error());
  }
  if (auto ok = checkPortList(options.reserved_udp, "ECS_RESERVED_PORTS_UDP"); !ok) {
    return fail(ok.error());
  }
  auto allocator = std::make_unique<HostPortAllocatorImpl>(std::move(options));
  if (auto loaded = allocator->load(); !loaded) {
    return fail(loaded.error().wrap("host port allocator"));
  }
  return allocator;
}

Result<HostPortRange> parseHostPortRange(std::string_view text) {
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "host port range \"{}\": want <first>-<last>, e.g. 61000-65535", text);
  }
  auto first = parsePort(text.substr(0, dash), text);
  if (!first) return fail(first.error());
  auto last = parsePort(text.substr(dash + 1), text);
  if (!last) return fail(last.error());
  if (*first > *last) {
    return fail(ErrorCode::kInvalidArgument, "host port range \"{}\": first port after last", text);
  }
  return HostPortRange{*first, *last};
}

Result<HostPortRange> defaultDynamicPortRange(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(ErrorCode::kNotFound, "read {}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // "32768\t60999\n"
  std::istringstream fields(text);
  long low = 0;
  long high = 0;
  std::string rest;
  if (!(fields >> low >> high) || (fields >> rest) || low < 1 || high > kMaxPort || low > high) {
    return fail(ErrorCode::kInvalidArgument, "{}: \"{}\" is not a local port range", path, text);
  }
  HostPortRange above{static_cast<int>(high) + 1, kMaxPort};
  HostPortRange below{kFirstUnprivilegedPort, static_cast<int>(low) - 1};
  auto size = [](const HostPortRange& r) { return std::max(0, r.last - r.first + 1); };
  // Above the ephemeral range first: the ports there are the conventional dynamic ones, while
  // the ports below are where well-known services (3306, 5432, 8080 ...) listen.
  if (size(above) >= kMinPreferredRun) return above;
  if (size(above) == 0 && size(below) == 0) {
    return fail(ErrorCode::kFailedPrecondition,
                "{}: the kernel's ephemeral port range {}-{} leaves no ports in {}-{} for tasks; "
                "set ECS_DYNAMIC_HOST_PORT_RANGE",
                path, low, high, kFirstUnprivilegedPort, kMaxPort);
  }
  return size(above) >= size(below) ? above : below;
}

std::unique_ptr<OwnerStore> openHostPortOwners(const std::string& state_path) {
  return openExistingOwners<PortState>(state_path, "host ports", parseState, serializeState);
}

}  // namespace ecs::netns
