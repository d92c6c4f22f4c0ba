#include "volumes/efs.h"

#include <unistd.h>

#include <filesystem>

namespace ecs::volumes {

std::string efsDnsName(const std::string& file_system_id, const std::string& region,
                       const std::string& dns_suffix) {
  return fmt::format("{}.efs.{}.{}", file_system_id, region, dns_suffix);
}

Result<std::vector<std::string>> efsMountArguments(const engine::EfsVolumeConfiguration& efs,
                                                   const EfsMountContext& context,
                                                   const std::string& target) {
  if (efs.file_system_id.empty()) {
    return fail(ErrorCode::kInvalidArgument, "efsVolumeConfiguration.fileSystemId is empty");
  }
  const std::string root = efs.root_directory.empty() ? "/" : efs.root_directory;
  if (root.front() != '/') {
    return fail(ErrorCode::kInvalidArgument, "rootDirectory {:?} is not absolute", root);
  }
  if (!efs.access_point_id.empty() && root != "/") {
    return fail(ErrorCode::kInvalidArgument,
                "rootDirectory must be omitted or / when an access point ({}) is used",
                efs.access_point_id);
  }
  if ((efs.iam || !efs.access_point_id.empty()) && !efs.transit_encryption) {
    return fail(ErrorCode::kInvalidArgument, "{} requires transitEncryption ENABLED",
                efs.iam ? "authorizationConfig.iam ENABLED" : "an access point");
  }

  if (!context.efs_utils) {
    if (efs.transit_encryption || efs.iam || !efs.access_point_id.empty()) {
      return fail(ErrorCode::kFailedPrecondition,
                  "{} needs amazon-efs-utils (mount.efs), which is not installed on this host",
                  efs.transit_encryption ? "transit encryption" : "IAM authorization");
    }
    if (context.region.empty()) {
      return fail(ErrorCode::kFailedPrecondition,
                  "no region to build the file system's DNS name (set AWS_DEFAULT_REGION)");
    }
    const std::string dns = efsDnsName(efs.file_system_id, context.region, context.dns_suffix);
    return std::vector<std::string>{
        "-t",
        "nfs",
        "-o",
        fmt::format("addr={},nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,"
                    "noresvport",
                    dns),
        fmt::format("{}:{}", dns, root),
        target};
  }

  std::vector<std::string> options;
  if (efs.transit_encryption) options.emplace_back("tls");
  if (efs.transit_encryption_port && *efs.transit_encryption_port != 0) {
    options.push_back(fmt::format("tlsport={}", *efs.transit_encryption_port));
  }
  if (efs.iam) {
    options.emplace_back("iam");
    if (!context.credentials_uri.empty()) {
      options.push_back(fmt::format("awscredsuri={}", context.credentials_uri));
    }
  }
  if (!efs.access_point_id.empty()) {
    options.push_back(fmt::format("accesspoint={}", efs.access_point_id));
  }
  std::vector<std::string> args{"-t", "efs"};
  if (!options.empty()) {
    args.emplace_back("-o");
    args.push_back(fmt::format("{}", fmt::join(options, ",")));
  }
  args.push_back(fmt::format("{}:{}", efs.file_system_id, root));
  args.push_back(target);
  return args;
}

bool efsUtilsInstalled(const std::vector<std::string>& directories) {
  for (const auto& dir : directories) {
    auto path = std::filesystem::path(dir) / "mount.efs";
    if (::access(path.c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace ecs::volumes
