// Who a container runs as: a user spec ("1000", "1000:1000", "app", "app:staff", "1000:staff",
// or empty for root) resolved against the image's /etc/passwd and /etc/group, following runc's
// rules (which are Docker's):
//  - the user part matches a passwd entry by name, or by uid when numeric; a numeric uid with no
//    entry is used as is, with gid 0;
//  - an explicit group matches a group entry by name or gid, or is used as is when numeric; the
//    primary gid then comes from it and there are no additional gids;
//  - without a group, the primary gid is the passwd entry's, and the additional gids are those
//    of every group listing the user's name as a member.
// "root" (user or group) means 0 even when the image has no passwd or group file.
#pragma once

#include <string>
#include <string_view>

#include "agent/common/result.h"
#include "agent/engine/container_spec.h"

namespace ecs::engine {

// Pure: `passwd` and `group` are the files' contents (empty when the image has none).
// kInvalidArgument `user "x" not found in the image's /etc/passwd` (or group ... /etc/group).
Result<UserIds> resolveImageUser(std::string_view passwd, std::string_view group,
                                 std::string_view user);

// Reads <rootfs_dir>/etc/passwd and /etc/group, resolving symlinks inside the rootfs (an image
// cannot point them at the host's files). Missing files: only numeric users and root resolve.
Result<UserIds> resolveUserInRootfs(const std::string& rootfs_dir, std::string_view user);

}  // namespace ecs::engine
