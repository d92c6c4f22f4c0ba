#include "netns/netlink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "netns/network_namespace.h"

namespace ecs::netns {
namespace {

constexpr size_t kAlign = 4;
size_t align(size_t n) {
  return (n + kAlign - 1) & ~(kAlign - 1);
}

// Builds one request: nlmsghdr, the family header, then attributes (nested ones via begin/end).
class MessageBuilder {
 public:
  MessageBuilder(uint16_t type, uint16_t flags) {
    nlmsghdr header{};
    header.nlmsg_type = type;
    header.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    append(&header, sizeof(header));
  }
  template <typename T>
  void header(const T& value) {
    append(&value, sizeof(value));
  }
  void attribute(uint16_t type, const void* data, size_t length) {
    rtattr attr{};
    attr.rta_type = type;
    attr.rta_len = static_cast<uint16_t>(RTA_LENGTH(length));
    append(&attr, sizeof(attr));
    append(data, length);
  }
  void string(uint16_t type, const std::string& value) {
    attribute(type, value.c_str(), value.size() + 1);
  }
  void u32(uint16_t type, uint32_t value) { attribute(type, &value, sizeof(value)); }
  void u8(uint16_t type, uint8_t value) { attribute(type, &value, sizeof(value)); }
  void s32(uint16_t type, int32_t value) { attribute(type, &value, sizeof(value)); }
  size_t begin(uint16_t type) {
    const size_t offset = buffer_.size();
    rtattr attr{};
    attr.rta_type = static_cast<uint16_t>(type | NLA_F_NESTED);
    append(&attr, sizeof(attr));
    return offset;
  }
  void end(size_t offset) {
    const auto length = static_cast<uint16_t>(buffer_.size() - offset);
    std::memcpy(buffer_.data() + offset + offsetof(rtattr, rta_len), &length, sizeof(length));
  }
  std::vector<char> finish() {
    const auto length = static_cast<uint32_t>(buffer_.size());
    std::memcpy(buffer_.data() + offsetof(nlmsghdr, nlmsg_len), &length, sizeof(length));
    return std::move(buffer_);
  }

 private:
  void append(const void* data, size_t length) {
    const size_t start = buffer_.size();
    buffer_.resize(start + align(length), 0);
    if (length > 0) std::memcpy(buffer_.data() + start, data, length);
  }
  std::vector<char> buffer_;
};

// Attributes of a reply as (type, payload) views; reads with memcpy, so alignment never matters.
struct Attribute {
  uint16_t type = 0;
  const char* data = nullptr;
  size_t length = 0;

  std::string str() const { return std::string(data, strnlen(data, length)); }
  uint32_t u32() const {
    uint32_t value = 0;
    if (length >= sizeof(value)) std::memcpy(&value, data, sizeof(value));
    return value;
  }
};

std::vector<Attribute> parseAttributes(const char* data, size_t length) {
  std::vector<Attribute> out;
  size_t offset = 0;
  while (offset + sizeof(rtattr) <= length) {
    rtattr attr{};
    std::memcpy(&attr, data + offset, sizeof(attr));
    if (attr.rta_len < sizeof(rtattr) || offset + attr.rta_len > length) break;
    out.push_back({static_cast<uint16_t>(attr.rta_type & NLA_TYPE_MASK),
                   data + offset + RTA_LENGTH(0), attr.rta_len - RTA_LENGTH(0)});
    offset += align(attr.rta_len);
  }
  return out;
}

ErrorCode codeFor(int error) {
  switch (error) {
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case ENODEV:
    case ENOENT:
    case ESRCH:
      return ErrorCode::kNotFound;
    case EPERM:
    case EACCES:
      return ErrorCode::kUnauthorized;
    default:
      return ErrorCode::kInternal;
  }
}

Result<in_addr> parseIpv4(const std::string& text) {
  in_addr address{};
  if (::inet_pton(AF_INET, text.c_str(), &address) != 1) {
    return fail(ErrorCode::kInvalidArgument, "'{}' is not an IPv4 address", text);
  }
  return address;
}

LinkInfo parseLink(const std::vector<char>& message) {
  LinkInfo link;
  ifinfomsg info{};
  std::memcpy(&info, message.data() + NLMSG_HDRLEN, sizeof(info));
  link.index = info.ifi_index;
  link.up = (info.ifi_flags & IFF_UP) != 0;
  const size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifinfomsg));
  for (const auto& attr : parseAttributes(message.data() + offset, message.size() - offset)) {
    switch (attr.type) {
      case IFLA_IFNAME:
        link.name = attr.str();
        break;
      case IFLA_IFALIAS:
        link.alias = attr.str();
        break;
      case IFLA_MASTER:
        link.master = static_cast<int>(attr.u32());
        break;
      case IFLA_MTU:
        link.mtu = static_cast<int>(attr.u32());
        break;
      case IFLA_LINKINFO:
        for (const auto& inner : parseAttributes(attr.data, attr.length)) {
          if (inner.type == IFLA_INFO_KIND) link.kind = inner.str();
        }
        break;
      default:
        break;
    }
  }
  return link;
}

}  // namespace

Netlink::Netlink(int fd) : fd_(fd) {}

Netlink::Netlink(Netlink&& other) noexcept : fd_(other.fd_), seq_(other.seq_) {
  other.fd_ = -1;
}

Netlink& Netlink::operator=(Netlink&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    seq_ = other.seq_;
    other.fd_ = -1;
  }
  return *this;
}

Netlink::~Netlink() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
Result<Netlink> fromSocket(int fd, auto make) {
  const int one = 1;
  // Extended acks carry the kernel's own words ("Invalid prefix for given prefix length"); capped
  // acks do not echo our request back.
  ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    const int saved = errno;
    ::close(fd);
    return fail(ErrorCode::kInternal, "bind netlink socket: {}", std::strerror(saved));
  }
  return make(fd);
}
}  // namespace

Result<Netlink> Netlink::open() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return fail(ErrorCode::kInternal, "netlink socket: {}", std::strerror(errno));
  return fromSocket(fd, [](int socket) { return Netlink(socket); });
}

Result<Netlink> Netlink::openIn(const std::string& netns_path) {
  auto fd = openSocketInNamespace(netns_path, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (!fd) return fail(fd.error().wrap("netlink socket"));
  return fromSocket(*fd, [](int socket) { return Netlink(socket); });
}

Result<void> Netlink::request(std::vector<char>& message, const std::string& what,
                              std::vector<std::vector<char>>* replies) {
  const uint32_t seq = ++seq_;
  std::memcpy(message.data() + offsetof(nlmsghdr, nlmsg_seq), &seq, sizeof(seq));
  if (::send(fd_, message.data(), message.size(), 0) < 0) {
    return fail(ErrorCode::kInternal, "{}: send: {}", what, std::strerror(errno));
  }
  // Dump replies come in chunks the kernel sizes up to 32 KiB (more with big links); 128 KiB
  // never truncates.
  std::vector<char> buffer(128 * 1024);
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(ErrorCode::kInternal, "{}: recv: {}", what, std::strerror(errno));
    }
    size_t offset = 0;
    while (offset + sizeof(nlmsghdr) <= static_cast<size_t>(n)) {
      nlmsghdr header{};
      std::memcpy(&header, buffer.data() + offset, sizeof(header));
      if (header.nlmsg_len < sizeof(nlmsghdr) ||
          offset + header.nlmsg_len > static_cast<size_t>(n)) {
        return fail(ErrorCode::kInternal, "{}: truncated netlink reply", what);
      }
      const char* body = buffer.data() + offset;
      offset += NLMSG_ALIGN(header.nlmsg_len);
      if (header.nlmsg_seq != seq) continue;  // a late reply to an earlier request
      if (header.nlmsg_type == NLMSG_DONE) return {};
      if (header.nlmsg_type == NLMSG_ERROR) {
        nlmsgerr err{};
        std::memcpy(&err, body + NLMSG_HDRLEN, sizeof(err));
        if (err.error == 0) return {};
        std::string reason = std::strerror(-err.error);
        if (header.nlmsg_flags & NLM_F_ACK_TLVS) {
          // With NETLINK_CAP_ACK the echoed request is its header only.
          const size_t tlv = NLMSG_HDRLEN + sizeof(nlmsgerr);
          if (header.nlmsg_len > tlv) {
            for (const auto& attr : parseAttributes(body + tlv, header.nlmsg_len - tlv)) {
              if (attr.type == NLMSGERR_ATTR_MSG) reason += " (" + attr.str() + ")";
            }
          }
        }
        return fail(codeFor(-err.error), "{}: {}", what, reason);
      }
      if (replies != nullptr) replies->emplace_back(body, body + header.nlmsg_len);
    }
  }
}

Result<std::vector<LinkInfo>> Netlink::listLinks() {
  MessageBuilder builder(RTM_GETLINK, NLM_F_DUMP);
  ifinfomsg info{};
  info.ifi_family = AF_UNSPEC;
  builder.header(info);
  auto message = builder.finish();
  std::vector<std::vector<char>> replies;
  if (auto sent = request(message, "list links", &replies); !sent) return fail(sent.error());
  std::vector<LinkInfo> links;
  for (const auto& reply : replies) {
    if (reply.size() >= NLMSG_HDRLEN + sizeof(ifinfomsg)) links.push_back(parseLink(reply));
  }
  return links;
}

Result<std::optional<LinkInfo>> Netlink::findLink(const std::string& name) {
  MessageBuilder builder(RTM_GETLINK, NLM_F_ACK);
  ifinfomsg info{};
  builder.header(info);
  builder.string(IFLA_IFNAME, name);
  auto message = builder.finish();
  std::vector<std::vector<char>> replies;
  auto found = request(message, fmt::format("get link {}", name), &replies);
  if (!found) {
    if (found.error().code == ErrorCode::kNotFound) return std::optional<LinkInfo>();
    return fail(found.error());
  }
  for (const auto& reply : replies) {
    if (reply.size() >= NLMSG_HDRLEN + sizeof(ifinfomsg)) {
      return std::optional<LinkInfo>(parseLink(reply));
    }
  }
  return std::optional<LinkInfo>();
}

Result<void> Netlink::createBridge(const std::string& name, int mtu,
                                   const std::array<uint8_t, 6>& mac) {
  MessageBuilder builder(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  ifinfomsg info{};
  builder.header(info);
  builder.string(IFLA_IFNAME, name);
  if (mtu > 0) builder.u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  builder.attribute(IFLA_ADDRESS, mac.data(), mac.size());
  const size_t linkinfo = builder.begin(IFLA_LINKINFO);
  builder.string(IFLA_INFO_KIND, "bridge");
  builder.end(linkinfo);
  auto message = builder.finish();
  auto created = request(message, fmt::format("create bridge {}", name));
  if (created || created.error().code != ErrorCode::kAlreadyExists) return created;
  auto existing = findLink(name);
  if (!existing) return fail(existing.error());
  if (!*existing || (*existing)->kind != "bridge") {
    return fail(ErrorCode::kFailedPrecondition,
                "create bridge {}: a link of kind '{}' has the name", name,
                *existing ? (*existing)->kind : "");
  }
  return {};
}

Result<void> Netlink::createVethPair(const std::string& host_name, const std::string& peer_name,
                                     int peer_netns_fd, int mtu) {
  MessageBuilder builder(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  ifinfomsg info{};
  builder.header(info);
  builder.string(IFLA_IFNAME, host_name);
  if (mtu > 0) builder.u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  const size_t linkinfo = builder.begin(IFLA_LINKINFO);
  builder.string(IFLA_INFO_KIND, "veth");
  const size_t data = builder.begin(IFLA_INFO_DATA);
  const size_t peer = builder.begin(VETH_INFO_PEER);
  ifinfomsg peer_info{};
  builder.header(peer_info);
  builder.string(IFLA_IFNAME, peer_name);
  builder.u32(IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
  if (mtu > 0) builder.u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  builder.end(peer);
  builder.end(data);
  builder.end(linkinfo);
  auto message = builder.finish();
  return request(message, fmt::format("create veth pair {}/{}", host_name, peer_name));
}

Result<void> Netlink::configureLink(int index, int master_index, const std::string& alias,
                                    bool up) {
  MessageBuilder builder(RTM_NEWLINK, NLM_F_ACK);
  ifinfomsg info{};
  info.ifi_index = index;
  if (up) {
    info.ifi_flags = IFF_UP;
    info.ifi_change = IFF_UP;
  }
  builder.header(info);
  if (master_index > 0) builder.u32(IFLA_MASTER, static_cast<uint32_t>(master_index));
  if (!alias.empty()) builder.string(IFLA_IFALIAS, alias);
  auto message = builder.finish();
  return request(message, fmt::format("configure link #{}", index));
}

Result<void> Netlink::setHairpin(int index, bool on) {
  MessageBuilder builder(RTM_SETLINK, NLM_F_ACK);
  ifinfomsg info{};
  info.ifi_family = AF_BRIDGE;
  info.ifi_index = index;
  builder.header(info);
  const size_t protinfo = builder.begin(IFLA_PROTINFO);
  builder.u8(IFLA_BRPORT_MODE, on ? 1 : 0);
  builder.end(protinfo);
  auto message = builder.finish();
  return request(message, fmt::format("set hairpin on link #{}", index));
}

Result<void> Netlink::addAddress(int index, const std::string& ipv4, int prefix_length) {
  auto address = parseIpv4(ipv4);
  if (!address) return fail(address.error());
  MessageBuilder builder(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  ifaddrmsg info{};
  info.ifa_family = AF_INET;
  info.ifa_prefixlen = static_cast<uint8_t>(prefix_length);
  info.ifa_scope = RT_SCOPE_UNIVERSE;
  info.ifa_index = static_cast<uint32_t>(index);
  builder.header(info);
  builder.attribute(IFA_LOCAL, &*address, sizeof(*address));
  builder.attribute(IFA_ADDRESS, &*address, sizeof(*address));
  if (prefix_length < 31) {
    in_addr broadcast = *address;
    const uint32_t host_mask = prefix_length == 0 ? 0xffffffffu : (1u << (32 - prefix_length)) - 1;
    broadcast.s_addr |= htonl(host_mask);
    builder.attribute(IFA_BROADCAST, &broadcast, sizeof(broadcast));
  }
  auto message = builder.finish();
  auto added = request(message, fmt::format("add address {}/{}", ipv4, prefix_length));
  if (!added && added.error().code == ErrorCode::kAlreadyExists) return {};
  return added;
}

Result<void> Netlink::addRoute(const Route& route) {
  auto destination = parseIpv4(route.destination);
  if (!destination) return fail(destination.error());
  MessageBuilder builder(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  rtmsg info{};
  info.rtm_family = AF_INET;
  info.rtm_dst_len = static_cast<uint8_t>(route.prefix_length);
  info.rtm_table = RT_TABLE_MAIN;
  info.rtm_protocol = RTPROT_BOOT;
  info.rtm_scope = RT_SCOPE_UNIVERSE;
  info.rtm_type = route.type == Route::Type::kUnreachable ? RTN_UNREACHABLE : RTN_UNICAST;
  if (route.type == Route::Type::kUnicast && route.gateway.empty()) info.rtm_scope = RT_SCOPE_LINK;
  builder.header(info);
  if (route.prefix_length > 0) builder.attribute(RTA_DST, &*destination, sizeof(*destination));
  if (!route.gateway.empty()) {
    auto gateway = parseIpv4(route.gateway);
    if (!gateway) return fail(gateway.error());
    builder.attribute(RTA_GATEWAY, &*gateway, sizeof(*gateway));
  }
  if (route.output_index > 0) builder.u32(RTA_OIF, static_cast<uint32_t>(route.output_index));
  auto message = builder.finish();
  auto added =
      request(message, fmt::format("add route {}{}/{}",
                                   route.type == Route::Type::kUnreachable ? "unreachable " : "",
                                   route.destination, route.prefix_length));
  if (!added && added.error().code == ErrorCode::kAlreadyExists) return {};
  return added;
}

Result<void> Netlink::deleteLink(const std::string& name) {
  MessageBuilder builder(RTM_DELLINK, NLM_F_ACK);
  ifinfomsg info{};
  builder.header(info);
  builder.string(IFLA_IFNAME, name);
  auto message = builder.finish();
  auto deleted = request(message, fmt::format("delete link {}", name));
  if (!deleted && deleted.error().code == ErrorCode::kNotFound) return {};
  return deleted;
}

Result<void> writeSysctl(const std::string& key, const std::string& value) {
  const std::string path = "/proc/sys/" + key;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrorCode::kInternal, "open {}: {}", path, std::strerror(errno));
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return fail(ErrorCode::kInternal, "write {} to {}: {}", value, path, std::strerror(saved));
  }
  return {};
}

Result<std::string> readSysctl(const std::string& key) {
  std::ifstream in("/proc/sys/" + key);
  if (!in) return fail(ErrorCode::kNotFound, "read /proc/sys/{}", key);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string value = ss.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

}  // namespace ecs::netns
