#include "netns/ipam.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>

#include "netns/allocation_file.h"

namespace ecs::netns {
namespace {

namespace json = boost::json;

// Addresses are host-order integers inside; dotted quads in the file and the API.
struct IpOwner {
  ProcessIdentity process;
  std::map<std::string, uint32_t> addresses;  // key (e.g. container name) -> address
};

// Sorted, so the file's bytes depend only on its content.
using IpState = std::map<std::string, IpOwner>;

std::optional<uint32_t> parseAddress(std::string_view text) {
  std::string copy(text);
  in_addr address{};
  if (::inet_pton(AF_INET, copy.c_str(), &address) != 1) return std::nullopt;
  return ntohl(address.s_addr);
}

std::string formatAddress(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff,
                     address & 0xff);
}

Result<IpState> parseState(std::string_view content) {
  IpState state;
  auto parsed = parseOwners(content,
                            [&](const std::string& owner, const json::object& record,
                                const ProcessIdentity& process) -> Result<void> {
                              const json::value* addresses = record.if_contains("addresses");
                              if (!addresses || !addresses->is_object()) {
                                return fail(ErrorCode::kDataLoss, "no \"addresses\" object");
                              }
                              IpOwner& entry = state[owner];
                              entry.process = process;
                              for (const auto& [key, address] : addresses->get_object()) {
                                const json::string* text = address.if_string();
                                auto parsed_address = text ? parseAddress(*text) : std::nullopt;
                                if (!parsed_address) {
                                  return fail(ErrorCode::kDataLoss, "key {}: not an IPv4 address",
                                              std::string_view(key));
                                }
                                entry.addresses[std::string(key)] = *parsed_address;
                              }
                              return {};
                            });
  if (!parsed) return fail(parsed.error());
  return state;
}

std::string serializeState(const IpState& state) {
  json::object owners;
  for (const auto& [owner, entry] : state) {
    json::object addresses;
    for (const auto& [key, address] : entry.addresses) addresses[key] = formatAddress(address);
    json::object record;
    processToJson(entry.process, record);
    record["addresses"] = std::move(addresses);
    owners[owner] = std::move(record);
  }
  return json::serialize(json::object{{"owners", std::move(owners)}}) + "\n";
}

struct Subnet {
  uint32_t network = 0;
  int prefix = 0;

  uint32_t broadcast() const {
    uint32_t host_mask = prefix == 0 ? 0xffffffffu : (1u << (32 - prefix)) - 1;
    return network | host_mask;
  }
  bool contains(uint32_t address) const { return address >= network && address <= broadcast(); }
};

// At least a network, a gateway, one task address and a broadcast address.
constexpr int kMaxPrefix = 30;

Result<Subnet> parseSubnet(std::string_view text) {
  size_t slash = text.find('/');
  auto address =
      slash == std::string_view::npos ? std::nullopt : parseAddress(text.substr(0, slash));
  int prefix = -1;
  if (address) {
    std::string_view digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || end != digits.data() + digits.size()) prefix = -1;
  }
  if (!address || prefix < 0 || prefix > 32) {
    return fail(ErrorCode::kInvalidArgument,
                "subnet \"{}\": want an IPv4 CIDR like 172.31.224.0/20", text);
  }
  if (prefix > kMaxPrefix) {
    return fail(ErrorCode::kInvalidArgument,
                "subnet {}: too small for a gateway and a task address (/{} at most)", text,
                kMaxPrefix);
  }
  uint32_t host_mask = (1u << (32 - prefix)) - 1;  // prefix <= 30 here
  if ((*address & host_mask) != 0) {
    uint32_t network = *address & ~host_mask;
    return fail(ErrorCode::kInvalidArgument, "subnet {} has host bits set (the network is {}/{})",
                text, formatAddress(network), prefix);
  }
  return Subnet{*address, prefix};
}

class IpamImpl final : public OwnedStateStore<Ipam, IpState> {
 public:
  IpamImpl(IpamOptions options, Subnet subnet)
      : OwnedStateStore({options.state_path, "addresses", parseState, serializeState}),
        net_(subnet),
        subnet_(fmt::format("{}/{}", formatAddress(subnet.network), subnet.prefix)),
        gateway_(formatAddress(subnet.network + 1)) {}

  using OwnedStateStore::load;

  const std::string& subnet() const override { return subnet_; }
  const std::string& gateway() const override { return gateway_; }
  int prefixLength() const override { return net_.prefix; }

  Result<std::string> allocate(const std::string& owner, const std::string& key) override {
    if (owner.empty()) return fail(ErrorCode::kInvalidArgument, "allocate an address: no owner");
    std::lock_guard lock(mutex_);
    uint32_t result = 0;
    auto updated = file_.update([&](IpState& state) -> Result<void> {
      auto address = pick(state, owner, key);
      if (!address) return fail(address.error());
      IpOwner& entry = state[owner];
      // The latest agent process to allocate for a task answers for all it holds, so a restarted
      // agent adopts a task's addresses by allocating them again.
      entry.process = currentProcess();
      entry.addresses[key] = *address;
      result = *address;
      return {};
    });
    if (!updated) return fail(updated.error());
    return formatAddress(result);
  }

  Result<std::map<std::string, std::string>> addresses(const std::string& owner) const override {
    std::lock_guard lock(mutex_);
    auto state = file_.read();
    if (!state) return fail(state.error());
    std::map<std::string, std::string> out;
    if (auto it = state->find(owner); it != state->end()) {
      for (const auto& [key, address] : it->second.addresses) out[key] = formatAddress(address);
    }
    return out;
  }

 private:
  // The owner's address for `key` if it has one in this subnet (an address from an earlier,
  // different subnet setting is replaced), else the lowest address nobody holds.
  Result<uint32_t> pick(const IpState& state, const std::string& owner, const std::string& key) {
    if (auto it = state.find(owner); it != state.end()) {
      auto existing = it->second.addresses.find(key);
      if (existing != it->second.addresses.end() && usable(existing->second)) {
        return existing->second;
      }
    }
    std::set<uint32_t> held;
    for (const auto& [name, entry] : state) {
      for (const auto& [k, address] : entry.addresses) held.insert(address);
    }
    for (uint32_t address = net_.network + 2; address < net_.broadcast(); ++address) {
      if (!held.contains(address)) return address;
    }
    return fail(ErrorCode::kFailedPrecondition,
                "no free address in subnet {}: all {} task addresses are in use", subnet_,
                net_.broadcast() - net_.network - 2);
  }

  bool usable(uint32_t address) const {
    return net_.contains(address) && address > net_.network + 1 && address < net_.broadcast();
  }

  Subnet net_;
  std::string subnet_;
  std::string gateway_;
};

}  // namespace

Result<std::unique_ptr<Ipam>> Ipam::open(IpamOptions options) {
  if (options.state_path.empty()) {
    return fail(ErrorCode::kInvalidArgument, "ipam: no state file path");
  }
  auto subnet = parseSubnet(options.subnet);
  if (!subnet) return fail(subnet.error().wrap("ipam"));
  auto ipam = std::make_unique<IpamImpl>(std::move(options), *subnet);
  if (auto loaded = ipam->load(); !loaded) return fail(loaded.error().wrap("ipam"));
  return ipam;
}

std::unique_ptr<OwnerStore> openIpamOwners(const std::string& state_path) {
  return openExistingOwners<IpState>(state_path, "addresses", parseState, serializeState);
}

}  // namespace ecs::netns
