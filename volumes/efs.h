// EFS mount arguments: what the agent passes to the mount command to put one task's EFS volume
// on the host, for both ways the real ECS agent mounts EFS (docs/compatibility.md). Pure
// functions, so the exact argv is unit-tested.
//
// With amazon-efs-utils (a `mount.efs` helper on the host), as ecs-init's volume plugin does:
//   <cmd> -t efs [-o tls,tlsport=<port>,iam,awscredsuri=<uri>,accesspoint=<fsap>]
//         <fileSystemId>:<rootDirectory> <target>
// options in exactly that order, each only when configured; no -o when there is none.
// Without it, NFSv4.1 with the options the agent gives Docker's local driver:
//   <cmd> -t nfs -o addr=<dns>,nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,
//         noresvport <dns>:<rootDirectory> <target>
// where <dns> = <fileSystemId>.efs.<region>.<dnsSuffix>. The agent hands Docker the device
// ":<rootDirectory>" and the address in `addr=` for mount(2); mount.nfs wants "host:path", so
// the device names the host too and `addr=` is kept as the agent spells it. TLS, IAM and access
// points need efs-utils (stunnel, SigV4): asked for without it, the task fails saying so.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/engine/task_definition.h"

namespace ecs::volumes {

struct EfsMountContext {
  bool efs_utils = false;       // mount.efs is installed
  std::string region;           // NFS path: the file system's DNS name
  std::string dns_suffix;       // "amazonaws.com" ("amazonaws.com.cn" in China)
  std::string credentials_uri;  // iam: "/v2/credentials/<id>"; empty: efs-utils' own chain
};

// The arguments after the command itself, ending with `target`. kInvalidArgument for a
// configuration this host cannot mount (TLS/IAM/access point without efs-utils, IAM or an
// access point without transit encryption, an access point with a rootDirectory other than /).
Result<std::vector<std::string>> efsMountArguments(const engine::EfsVolumeConfiguration& efs,
                                                   const EfsMountContext& context,
                                                   const std::string& target);

// The host name of a file system on the NFS path: "fs-1234.efs.us-east-1.amazonaws.com".
std::string efsDnsName(const std::string& file_system_id, const std::string& region,
                       const std::string& dns_suffix);

// True if `mount.efs` is in one of `directories` (default: /sbin, /usr/sbin, /bin, /usr/bin).
bool efsUtilsInstalled(const std::vector<std::string>& directories = {"/sbin", "/usr/sbin", "/bin",
                                                                      "/usr/bin"});

}  // namespace ecs::volumes
