#include "agent/metadata/task_metadata.h"

#include <fmt/format.h>

namespace ecs::metadata {

std::string clusterArn(const MetadataContext& ctx) {
  if (ctx.cluster.starts_with("arn:")) return ctx.cluster;
  return fmt::format("arn:aws:ecs:{}:{}:cluster/{}", ctx.region, ctx.account_id, ctx.cluster);
}
std::string taskArn(const MetadataContext& ctx, std::string_view task_id) {
  return fmt::format("arn:aws:ecs:{}:{}:task/{}/{}", ctx.region, ctx.account_id, ctx.cluster,
                     task_id);
}
std::string containerArn(const MetadataContext& ctx, std::string_view task_id,
                         std::string_view runtime_id) {
  return fmt::format("arn:aws:ecs:{}:{}:container/{}/{}/{}", ctx.region, ctx.account_id,
                     ctx.cluster, task_id, runtime_id);
}
boost::json::object containerV2(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&) {
  return {};
}
boost::json::object taskV2(const engine::TaskSnapshot&, const MetadataContext&) {
  return {};
}
boost::json::object containerV3(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&) {
  return {};
}
boost::json::object taskV3(const engine::TaskSnapshot&, const MetadataContext&) {
  return {};
}
boost::json::object containerV4(const engine::TaskSnapshot&, const engine::ContainerSnapshot&,
                                const MetadataContext&) {
  return {};
}
boost::json::object taskV4(const engine::TaskSnapshot&, const MetadataContext&) {
  return {};
}
boost::json::object containerMetadataFile(const engine::TaskSnapshot&,
                                          const engine::ContainerSnapshot&, const MetadataContext&,
                                          std::string_view) {
  return {};
}

}  // namespace ecs::metadata
