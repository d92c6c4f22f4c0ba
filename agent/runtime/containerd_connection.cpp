#include "agent/runtime/containerd_connection.h"

namespace ecs::runtime::internal {

namespace {

std::string channelTarget(const std::string& address) {
  if (address.starts_with("unix:")) return address;
  return "unix:" + address;
}

std::string_view codeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::UNKNOWN:
      return "unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not found";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already exists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed precondition";
    case grpc::StatusCode::ABORTED:
      return "aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out of range";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "data loss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    default:
      return "unrecognised status";
  }
}

}  // namespace

Connection::Connection(ContainerdOptions opts) : options(std::move(opts)) {
  grpc::ChannelArguments args;
  // containerd's default message limit is 16 MiB; content writes send at most 1 MiB per message.
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  // Reconnect quickly after a containerd restart (gRPC's defaults back off to 2 minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  channel = grpc::CreateCustomChannel(channelTarget(options.address),
                                      grpc::InsecureChannelCredentials(), args);
  version = cd::services::version::v1::Version::NewStub(channel);
  leases = cd::services::leases::v1::Leases::NewStub(channel);
  content = cd::services::content::v1::Content::NewStub(channel);
  snapshots = cd::services::snapshots::v1::Snapshots::NewStub(channel);
  diff = cd::services::diff::v1::Diff::NewStub(channel);
  images = cd::services::images::v1::Images::NewStub(channel);
  containers = cd::services::containers::v1::Containers::NewStub(channel);
  tasks = cd::services::tasks::v1::Tasks::NewStub(channel);
  events = cd::services::events::v1::Events::NewStub(channel);
  namespaces = cd::services::namespaces::v1::Namespaces::NewStub(channel);
}

void Connection::prepare(grpc::ClientContext& ctx, std::string_view lease,
                         std::optional<std::chrono::milliseconds> timeout) const {
  ctx.AddMetadata("containerd-namespace", options.ns);
  if (!lease.empty()) ctx.AddMetadata("containerd-lease", std::string(lease));
  const auto deadline = timeout.value_or(options.call_timeout);
  if (deadline.count() > 0) ctx.set_deadline(std::chrono::system_clock::now() + deadline);
}

Labels Connection::withDefaults(const Labels& labels) const {
  Labels merged = options.default_labels;
  for (const auto& [k, v] : labels) merged[k] = v;
  return merged;
}

ErrorCode toErrorCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::NOT_FOUND:
      return ErrorCode::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS:
      return ErrorCode::kAlreadyExists;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ErrorCode::kUnavailable;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return ErrorCode::kFailedPrecondition;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return ErrorCode::kInvalidArgument;
    case grpc::StatusCode::DATA_LOSS:
      return ErrorCode::kDataLoss;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return ErrorCode::kUnauthorized;
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNIMPLEMENTED:
      return ErrorCode::kInternal;
    default:
      return ErrorCode::kUnknown;
  }
}

Error grpcError(const grpc::Status& status, std::string_view what) {
  std::string detail = status.error_message();
  if (detail.empty()) {
    detail = std::string(codeName(status.error_code()));
  } else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
             status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    // gRPC's own texts ("Deadline Exceeded", "failed to connect to all addresses") say little
    // about which peer; name the kind too.
    detail = fmt::format("{} ({})", detail, codeName(status.error_code()));
  }
  return Error{toErrorCode(status.error_code()), fmt::format("{}: {}", what, detail)};
}

std::chrono::system_clock::time_point fromProto(const google::protobuf::Timestamp& ts) {
  using namespace std::chrono;
  // containerd sends Go's zero time (year 1, far before the epoch) for "not set"; and
  // nanosecond time_points end in 2262. Neither must overflow.
  constexpr int64_t kMaxSeconds = 9'000'000'000;
  if (ts.seconds() < 0) return {};
  if (ts.seconds() > kMaxSeconds) return system_clock::time_point(seconds(kMaxSeconds));
  return system_clock::time_point(
      duration_cast<system_clock::duration>(seconds(ts.seconds()) + nanoseconds(ts.nanos())));
}

Descriptor fromProto(const cd::types::Descriptor& d) {
  return Descriptor{d.media_type(), d.digest(), d.size(), labelsFromProto(d.annotations())};
}

void toProto(const Descriptor& d, cd::types::Descriptor* out) {
  out->set_media_type(d.media_type);
  out->set_digest(d.digest);
  out->set_size(d.size);
  labelsToProto(d.annotations, out->mutable_annotations());
}

Mount fromProto(const cd::types::Mount& m) {
  return Mount{m.type(), m.source(), m.target(), {m.options().begin(), m.options().end()}};
}

void toProto(const Mount& m, cd::types::Mount* out) {
  out->set_type(m.type);
  out->set_source(m.source);
  out->set_target(m.target);
  for (const auto& o : m.options) out->add_options(o);
}

TaskStatus fromProto(cd::v1::types::Status status) {
  switch (status) {
    case cd::v1::types::CREATED:
      return TaskStatus::kCreated;
    case cd::v1::types::RUNNING:
      return TaskStatus::kRunning;
    case cd::v1::types::STOPPED:
      return TaskStatus::kStopped;
    case cd::v1::types::PAUSED:
      return TaskStatus::kPaused;
    case cd::v1::types::PAUSING:
      return TaskStatus::kPausing;
    default:
      return TaskStatus::kUnknown;
  }
}

}  // namespace ecs::runtime::internal
