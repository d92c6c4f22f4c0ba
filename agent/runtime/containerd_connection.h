// Internal to agent/runtime: the gRPC channel shared by ContainerdClient and its EventMonitor,
// the containerd methods it calls (typed by request and response), and the conversions between
// containerd's protobuf types and ours.
// Nothing outside agent/runtime includes this header (it pulls in the generated API).
#pragma once

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/common/result.h"
#include "agent/runtime/containerd_client.h"
#include "agent/runtime/grpc_channel.h"
#include "agent/runtime/types.h"
#include "github.com/containerd/containerd/api/services/containers/v1/containers.pb.h"
#include "github.com/containerd/containerd/api/services/content/v1/content.pb.h"
#include "github.com/containerd/containerd/api/services/diff/v1/diff.pb.h"
#include "github.com/containerd/containerd/api/services/events/v1/events.pb.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.pb.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.pb.h"
#include "github.com/containerd/containerd/api/services/namespaces/v1/namespace.pb.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.pb.h"
#include "github.com/containerd/containerd/api/services/tasks/v1/tasks.pb.h"
#include "github.com/containerd/containerd/api/services/version/v1/version.pb.h"
#include "github.com/containerd/containerd/api/types/descriptor.pb.h"
#include "github.com/containerd/containerd/api/types/mount.pb.h"
#include "github.com/containerd/containerd/api/types/task/task.pb.h"

namespace ecs::runtime::internal {

namespace cd = ::containerd;

// A containerd method: its path, and the message types it takes and returns.
template <typename Request, typename Response>
struct Rpc {
  std::string_view path;
};

namespace rpc {
using Empty = google::protobuf::Empty;
namespace containers = cd::services::containers::v1;
namespace content = cd::services::content::v1;
namespace diff = cd::services::diff::v1;
namespace events = cd::services::events::v1;
namespace images = cd::services::images::v1;
namespace leases = cd::services::leases::v1;
namespace namespaces = cd::services::namespaces::v1;
namespace snapshots = cd::services::snapshots::v1;
namespace tasks = cd::services::tasks::v1;
namespace version = cd::services::version::v1;

#define ECS_CONTAINERD_RPC(name, service, method, request, response) \
  inline constexpr Rpc<request, response> name {                     \
    "/containerd.services." service "/" method                       \
  }
ECS_CONTAINERD_RPC(kVersion, "version.v1.Version", "Version", Empty, version::VersionResponse);
ECS_CONTAINERD_RPC(kLeasesCreate, "leases.v1.Leases", "Create", leases::CreateRequest,
                   leases::CreateResponse);
ECS_CONTAINERD_RPC(kLeasesDelete, "leases.v1.Leases", "Delete", leases::DeleteRequest, Empty);
ECS_CONTAINERD_RPC(kLeasesList, "leases.v1.Leases", "List", leases::ListRequest,
                   leases::ListResponse);
ECS_CONTAINERD_RPC(kLeasesAddResource, "leases.v1.Leases", "AddResource",
                   leases::AddResourceRequest, Empty);
ECS_CONTAINERD_RPC(kLeasesDeleteResource, "leases.v1.Leases", "DeleteResource",
                   leases::DeleteResourceRequest, Empty);
ECS_CONTAINERD_RPC(kContentInfo, "content.v1.Content", "Info", content::InfoRequest,
                   content::InfoResponse);
ECS_CONTAINERD_RPC(kContentUpdate, "content.v1.Content", "Update", content::UpdateRequest,
                   content::UpdateResponse);
ECS_CONTAINERD_RPC(kContentList, "content.v1.Content", "List", content::ListContentRequest,
                   content::ListContentResponse);  // server streaming
ECS_CONTAINERD_RPC(kContentDelete, "content.v1.Content", "Delete", content::DeleteContentRequest,
                   Empty);
ECS_CONTAINERD_RPC(kContentRead, "content.v1.Content", "Read", content::ReadContentRequest,
                   content::ReadContentResponse);  // server streaming
ECS_CONTAINERD_RPC(kContentListStatuses, "content.v1.Content", "ListStatuses",
                   content::ListStatusesRequest, content::ListStatusesResponse);
ECS_CONTAINERD_RPC(kContentWrite, "content.v1.Content", "Write", content::WriteContentRequest,
                   content::WriteContentResponse);  // bidirectional streaming
ECS_CONTAINERD_RPC(kContentAbort, "content.v1.Content", "Abort", content::AbortRequest, Empty);
ECS_CONTAINERD_RPC(kSnapshotsPrepare, "snapshots.v1.Snapshots", "Prepare",
                   snapshots::PrepareSnapshotRequest, snapshots::PrepareSnapshotResponse);
ECS_CONTAINERD_RPC(kSnapshotsMounts, "snapshots.v1.Snapshots", "Mounts", snapshots::MountsRequest,
                   snapshots::MountsResponse);
ECS_CONTAINERD_RPC(kSnapshotsCommit, "snapshots.v1.Snapshots", "Commit",
                   snapshots::CommitSnapshotRequest, Empty);
ECS_CONTAINERD_RPC(kSnapshotsRemove, "snapshots.v1.Snapshots", "Remove",
                   snapshots::RemoveSnapshotRequest, Empty);
ECS_CONTAINERD_RPC(kSnapshotsStat, "snapshots.v1.Snapshots", "Stat", snapshots::StatSnapshotRequest,
                   snapshots::StatSnapshotResponse);
ECS_CONTAINERD_RPC(kSnapshotsList, "snapshots.v1.Snapshots", "List",
                   snapshots::ListSnapshotsRequest,
                   snapshots::ListSnapshotsResponse);  // server streaming
ECS_CONTAINERD_RPC(kDiffApply, "diff.v1.Diff", "Apply", diff::ApplyRequest, diff::ApplyResponse);
ECS_CONTAINERD_RPC(kImagesGet, "images.v1.Images", "Get", images::GetImageRequest,
                   images::GetImageResponse);
ECS_CONTAINERD_RPC(kImagesList, "images.v1.Images", "List", images::ListImagesRequest,
                   images::ListImagesResponse);
ECS_CONTAINERD_RPC(kImagesCreate, "images.v1.Images", "Create", images::CreateImageRequest,
                   images::CreateImageResponse);
ECS_CONTAINERD_RPC(kImagesUpdate, "images.v1.Images", "Update", images::UpdateImageRequest,
                   images::UpdateImageResponse);
ECS_CONTAINERD_RPC(kImagesDelete, "images.v1.Images", "Delete", images::DeleteImageRequest, Empty);
ECS_CONTAINERD_RPC(kContainersGet, "containers.v1.Containers", "Get",
                   containers::GetContainerRequest, containers::GetContainerResponse);
ECS_CONTAINERD_RPC(kContainersList, "containers.v1.Containers", "List",
                   containers::ListContainersRequest, containers::ListContainersResponse);
ECS_CONTAINERD_RPC(kContainersCreate, "containers.v1.Containers", "Create",
                   containers::CreateContainerRequest, containers::CreateContainerResponse);
ECS_CONTAINERD_RPC(kContainersDelete, "containers.v1.Containers", "Delete",
                   containers::DeleteContainerRequest, Empty);
ECS_CONTAINERD_RPC(kTasksCreate, "tasks.v1.Tasks", "Create", tasks::CreateTaskRequest,
                   tasks::CreateTaskResponse);
ECS_CONTAINERD_RPC(kTasksStart, "tasks.v1.Tasks", "Start", tasks::StartRequest,
                   tasks::StartResponse);
ECS_CONTAINERD_RPC(kTasksDelete, "tasks.v1.Tasks", "Delete", tasks::DeleteTaskRequest,
                   tasks::DeleteResponse);
ECS_CONTAINERD_RPC(kTasksDeleteProcess, "tasks.v1.Tasks", "DeleteProcess",
                   tasks::DeleteProcessRequest, tasks::DeleteResponse);
ECS_CONTAINERD_RPC(kTasksGet, "tasks.v1.Tasks", "Get", tasks::GetRequest, tasks::GetResponse);
ECS_CONTAINERD_RPC(kTasksList, "tasks.v1.Tasks", "List", tasks::ListTasksRequest,
                   tasks::ListTasksResponse);
ECS_CONTAINERD_RPC(kTasksKill, "tasks.v1.Tasks", "Kill", tasks::KillRequest, Empty);
ECS_CONTAINERD_RPC(kTasksExec, "tasks.v1.Tasks", "Exec", tasks::ExecProcessRequest, Empty);
ECS_CONTAINERD_RPC(kEventsPublish, "events.v1.Events", "Publish", events::PublishRequest, Empty);
ECS_CONTAINERD_RPC(kEventsSubscribe, "events.v1.Events", "Subscribe", events::SubscribeRequest,
                   events::Envelope);  // server streaming
ECS_CONTAINERD_RPC(kNamespacesList, "namespaces.v1.Namespaces", "List",
                   namespaces::ListNamespacesRequest, namespaces::ListNamespacesResponse);
ECS_CONTAINERD_RPC(kNamespacesDelete, "namespaces.v1.Namespaces", "Delete",
                   namespaces::DeleteNamespaceRequest, Empty);
#undef ECS_CONTAINERD_RPC
}  // namespace rpc

// A streaming call of a containerd method, typed by its messages.
template <typename Request, typename Response>
class Stream {
 public:
  explicit Stream(std::unique_ptr<GrpcCall> call) : call_(std::move(call)) {}
  bool write(const Request& message, bool last = false) { return call_->write(message, last); }
  void writesDone() { call_->writesDone(); }
  bool read(Response* message) { return call_->read(message); }
  GrpcStatus finish() { return call_->finish(); }

 private:
  std::unique_ptr<GrpcCall> call_;
};

struct Connection {
  ContainerdOptions options;
  std::unique_ptr<GrpcChannel> channel;

  explicit Connection(ContainerdOptions opts);

  // Namespace and (when given) lease metadata, plus a deadline: `timeout` if given, the
  // options' call_timeout otherwise; a zero timeout means no deadline (event stream).
  void prepare(CallContext& ctx, std::string_view lease = {},
               std::optional<std::chrono::milliseconds> timeout = std::nullopt) const;

  template <typename Request, typename Response>
  GrpcStatus call(CallContext& ctx, Rpc<Request, Response> rpc, const Request& request,
                  Response* response) const {
    return channel->call(ctx, rpc.path, request, response);
  }
  // A unary call made with prepare()'s metadata and deadline: what most methods need.
  template <typename Request, typename Response>
  GrpcStatus unary(Rpc<Request, Response> rpc, const Request& request, Response* response,
                   std::string_view lease = {},
                   std::optional<std::chrono::milliseconds> timeout = std::nullopt) const {
    CallContext ctx;
    prepare(ctx, lease, timeout);
    return call(ctx, rpc, request, response);
  }
  // Streaming methods: write the request(s), then read.
  template <typename Request, typename Response>
  Stream<Request, Response> open(CallContext& ctx, Rpc<Request, Response> rpc) const {
    return Stream<Request, Response>(channel->start(ctx, rpc.path));
  }

  // Default labels overlaid with `labels` (explicit keys win).
  Labels withDefaults(const Labels& labels) const;
};

ErrorCode toErrorCode(GrpcCode code);
// "<what>: <containerd's message>", with the code mapped to ours.
Error grpcError(const GrpcStatus& status, std::string_view what);
inline std::unexpected<Error> grpcFail(const GrpcStatus& status, std::string_view what) {
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
