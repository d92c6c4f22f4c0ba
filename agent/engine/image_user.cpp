#include "agent/engine/image_user.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

namespace ecs::engine {

namespace {

struct PasswdEntry {
  std::string_view name;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct GroupEntry {
  std::string_view name;
  uint32_t gid = 0;
  std::vector<std::string_view> members;
};

std::optional<uint32_t> parseNumber(std::string_view s) {
  uint32_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const auto pos = s.find(sep);
    out.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

// Calls `fn` with the ':'-separated fields of each line that is not blank or a comment.
template <typename Fn>
void forEachRecord(std::string_view text, Fn&& fn) {
  for (auto line : split(text, '\n')) {
    if (line.ends_with('\r')) line.remove_suffix(1);
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;
    fn(split(line, ':'));
  }
}

// name:password:uid:gid:gecos:home:shell. Entries whose ids do not parse are skipped.
std::optional<PasswdEntry> findPasswd(std::string_view passwd, std::string_view user) {
  const auto numeric = parseNumber(user);
  std::optional<PasswdEntry> found;
  forEachRecord(passwd, [&](const std::vector<std::string_view>& f) {
    if (found || f.size() < 4) return;
    const auto uid = parseNumber(f[2]);
    const auto gid = parseNumber(f[3]);
    if (!uid || !gid) return;
    if (f[0] == user || (numeric && *uid == *numeric)) found = PasswdEntry{f[0], *uid, *gid};
  });
  return found;
}

// name:password:gid:member,member
std::vector<GroupEntry> parseGroups(std::string_view group) {
  std::vector<GroupEntry> out;
  forEachRecord(group, [&](const std::vector<std::string_view>& f) {
    if (f.size() < 3) return;
    const auto gid = parseNumber(f[2]);
    if (!gid) return;
    GroupEntry entry{f[0], *gid, {}};
    if (f.size() > 3 && !f[3].empty()) {
      for (auto member : split(f[3], ',')) {
        while (!member.empty() && member.front() == ' ') member.remove_prefix(1);
        while (!member.empty() && member.back() == ' ') member.remove_suffix(1);
        if (!member.empty()) entry.members.push_back(member);
      }
    }
    out.push_back(std::move(entry));
  });
  return out;
}

// The contents of <root>/<relative>, with symlinks resolved as if <root> were "/"; empty when
// the file does not exist.
Result<std::string> readInRoot(const std::string& root, const char* relative) {
  const int root_fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    return fail(ErrorCode::kFailedPrecondition, "open rootfs {}: {}", root, std::strerror(errno));
  }
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, relative, &how, sizeof(how)));
  if (fd < 0 && errno == ENOSYS) {
    // Kernels before 5.6: no scoped resolution; refuse a symlink at the last component at least.
    fd = ::openat(root_fd, relative, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  }
  const int saved = errno;
  ::close(root_fd);
  if (fd < 0) {
    if (saved == ENOENT || saved == ENOTDIR) return std::string();
    return fail(ErrorCode::kFailedPrecondition, "open {}/{}: {}", root, relative,
                std::strerror(saved));
  }
  std::string content;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fail(ErrorCode::kFailedPrecondition, "read {}/{}: {}", root, relative,
                  std::strerror(err));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace

Result<UserIds> resolveImageUser(std::string_view passwd, std::string_view group,
                                 std::string_view user) {
  const auto colon = user.find(':');
  const std::string_view user_part = user.substr(0, colon);
  const std::optional<std::string_view> group_part =
      colon == std::string_view::npos ? std::nullopt : std::optional(user.substr(colon + 1));
  if (group_part && group_part->empty()) {
    return fail(ErrorCode::kInvalidArgument, "user {:?}: empty group", std::string(user));
  }

  UserIds ids;
  std::string_view name;  // the passwd name, for group membership
  const std::string_view lookup = user_part.empty() ? std::string_view("0") : user_part;
  if (const auto entry = findPasswd(passwd, lookup)) {
    ids.uid = entry->uid;
    ids.gid = entry->gid;
    name = entry->name;
  } else if (const auto uid = parseNumber(lookup)) {
    ids.uid = *uid;
  } else if (lookup == "root") {
    ids.uid = 0;
  } else {
    return fail(ErrorCode::kInvalidArgument, "user {:?} not found in the image's /etc/passwd",
                std::string(user_part));
  }

  const auto groups = parseGroups(group);
  if (group_part) {
    const auto numeric = parseNumber(*group_part);
    const auto it = std::ranges::find_if(groups, [&](const GroupEntry& g) {
      return g.name == *group_part || (numeric && g.gid == *numeric);
    });
    if (it != groups.end()) {
      ids.gid = it->gid;
    } else if (numeric) {
      ids.gid = *numeric;
    } else if (*group_part == "root") {
      ids.gid = 0;
    } else {
      return fail(ErrorCode::kInvalidArgument, "group {:?} not found in the image's /etc/group",
                  std::string(*group_part));
    }
    return ids;
  }

  if (!name.empty()) {
    for (const auto& g : groups) {
      if (std::ranges::find(g.members, name) != g.members.end() &&
          std::ranges::find(ids.additional_gids, g.gid) == ids.additional_gids.end()) {
        ids.additional_gids.push_back(g.gid);
      }
    }
  }
  return ids;
}

Result<UserIds> resolveUserInRootfs(const std::string& rootfs_dir, std::string_view user) {
  auto passwd = readInRoot(rootfs_dir, "etc/passwd");
  if (!passwd) return fail(passwd.error());
  auto group = readInRoot(rootfs_dir, "etc/group");
  if (!group) return fail(group.error());
  return resolveImageUser(*passwd, *group, user);
}

}  // namespace ecs::engine
