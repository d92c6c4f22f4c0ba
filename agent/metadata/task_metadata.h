// Task metadata: the JSON bodies of task metadata v2/v3/v4 and of the container metadata file
// (ECS_ENABLE_CONTAINER_METADATA), built from engine snapshots (agent/engine/task_snapshot.h).
// Pure functions of a snapshot and a context: the endpoints module serves them, the engine's
// metadata-file writer writes them. Key names, omitted-when-empty rules, time format (RFC3339,
// UTC) and status strings are what the real ECS agent serves (docs/compatibility.md).
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "agent/engine/task_snapshot.h"

namespace ecs::metadata {

struct MetadataContext {
  std::string cluster;                      // name or ARN, as configured (ECS_CLUSTER)
  std::string region;                       // for ARNs built outside a cluster
  std::string account_id = "000000000000";  // placeholder account outside a cluster
  std::string availability_zone;            // "" when unknown or ECS_DISABLE_TASK_METADATA_AZ
  std::string launch_type = "EC2";
  std::string container_instance_arn;  // "" outside a cluster
  // Container metadata file only (HostPrivateIPv4Address / HostPublicIPv4Address); "" omits them.
  std::string host_private_ipv4;
  std::string host_public_ipv4;
};

// A time as the real agent's Go encoder writes it: RFC3339 in UTC with the fraction of a second
// trimmed of trailing zeros ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00Z").
std::string rfc3339(std::chrono::system_clock::time_point time);

// ARNs outside a cluster, well-formed so that clients that parse them keep working.
// The partition follows the region (aws, aws-cn, aws-us-gov); an empty region is us-east-1 and an
// empty cluster "default", as the real agent's defaults, so the ARN always has six parts.
// arn:aws:ecs:<region>:<acct>:task/<cluster>/<id>
std::string taskArn(const MetadataContext&, std::string_view task_id);
// arn:aws:ecs:<region>:<acct>:container/<cluster>/<task id>/<runtime id>
std::string containerArn(const MetadataContext&, std::string_view task_id,
                         std::string_view runtime_id);
// arn:aws:ecs:<region>:<acct>:cluster/<cluster>; the configured value when it already is an ARN.
std::string clusterArn(const MetadataContext&);

boost::json::object containerV2(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&);
boost::json::object taskV2(const engine::TaskSnapshot&, const MetadataContext&);
boost::json::object containerV3(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&);
boost::json::object taskV3(const engine::TaskSnapshot&, const MetadataContext&);
boost::json::object containerV4(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&);
boost::json::object taskV4(const engine::TaskSnapshot&, const MetadataContext&);
boost::json::object containerMetadataFile(const engine::TaskSnapshot&,
                                          const engine::ContainerSnapshot&, const MetadataContext&,
                                          std::string_view file_status /* INITIAL|READY */);

}  // namespace ecs::metadata
