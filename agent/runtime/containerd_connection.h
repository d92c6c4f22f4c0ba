// Internal to agent/runtime: the gRPC channel and stubs shared by ContainerdClient and its
// EventMonitor, plus the conversions between containerd's protobuf types and ours.
// Nothing outside agent/runtime includes this header (it pulls in the generated API).
#pragma once

#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"
#include "agent/runtime/containerd_client.h"
#include "agent/runtime/types.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/content/v1/content.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/diff/v1/diff.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/namespaces/v1/namespace.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.grpc.pb.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.grpc.pb.h"
#include "github.com/containerd/containerd/api/types/descriptor.pb.h"
#include "github.com/containerd/containerd/api/types/mount.pb.h"
#include "github.com/containerd/containerd/api/types/task/task.pb.h"

namespace ecs::runtime::internal {

namespace cd = ::containerd;

struct Connection {
  ContainerdOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<cd::services::version::v1::Version::Stub> version;
  std::unique_ptr<cd::services::leases::v1::Leases::Stub> leases;
  std::unique_ptr<cd::services::content::v1::Content::Stub> content;
  std::unique_ptr<cd::services::snapshots::v1::Snapshots::Stub> snapshots;
  std::unique_ptr<cd::services::diff::v1::Diff::Stub> diff;
  std::unique_ptr<cd::services::images::v1::Images::Stub> images;
  std::unique_ptr<cd::services::containers::v1::Containers::Stub> containers;
  std::unique_ptr<cd::services::tasks::v1::Tasks::Stub> tasks;
  std::unique_ptr<cd::services::events::v1::Events::Stub> events;
  std::unique_ptr<cd::services::namespaces::v1::Namespaces::Stub> namespaces;

  explicit Connection(ContainerdOptions opts);

  // Namespace and (when given) lease metadata, plus a deadline: `timeout` if given, the
  // options' call_timeout otherwise; a zero timeout means no deadline (event stream).
  void prepare(grpc::ClientContext& ctx, std::string_view lease = {},
               std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;

  // Default labels overlaid with `labels` (explicit keys win).
  Labels withDefaults(const Labels& labels) const;
};

ErrorCode toErrorCode(grpc::StatusCode code);
// "<what>: <containerd's message>", with the code mapped to ours.
Error grpcError(const grpc::Status& status, std::string_view what);
inline std::unexpected<Error> grpcFail(const grpc::Status& status, std::string_view what) {
  return std::unexpected(grpcError(status, what));
}

std::chrono::system_clock::time_point fromProto(const google::protobuf::Timestamp& ts);
Descriptor fromProto(const cd::types::Descriptor& d);
void toProto(const Descriptor& d, cd::types::Descriptor* out);
Mount fromProto(const cd::types::Mount& m);
void toProto(const Mount& m, cd::types::Mount* out);
TaskStatus fromProto(cd::v1::types::Status status);

template <typename ProtoMap>
Labels labelsFromProto(const ProtoMap& map) {
  return Labels(map.begin(), map.end());
}
template <typename ProtoMap>
void labelsToProto(const Labels& labels, ProtoMap* out) {
  for (const auto& [k, v] : labels) (*out)[k] = v;
}

}  // namespace ecs::runtime::internal
