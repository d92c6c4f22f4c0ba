#include "agent/runtime/containerd_connection.h"

namespace ecs::runtime::internal {

Connection::Connection(ContainerdOptions opts)
    : options(std::move(opts)), channel(std::make_unique<GrpcChannel>(options.address)) {}

void Connection::prepare(CallContext& ctx, std::string_view lease,
                         std::optional<std::chrono::milliseconds> timeout) const {
  ctx.addMetadata("containerd-namespace", options.ns);
  if (!lease.empty()) ctx.addMetadata("containerd-lease", std::string(lease));
  const auto deadline = timeout.value_or(options.call_timeout);
  if (deadline.count() > 0) ctx.setTimeout(deadline);
}

Labels Connection::withDefaults(const Labels& labels) const {
  Labels merged = options.default_labels;
  for (const auto& [k, v] : labels) merged[k] = v;
  return merged;
}

ErrorCode toErrorCode(GrpcCode code) {
  switch (code) {
    case GrpcCode::kNotFound:
      return ErrorCode::kNotFound;
    case GrpcCode::kAlreadyExists:
      return ErrorCode::kAlreadyExists;
    case GrpcCode::kUnavailable:
    case GrpcCode::kDeadlineExceeded:
    case GrpcCode::kCancelled:
    case GrpcCode::kAborted:
    case GrpcCode::kResourceExhausted:
      return ErrorCode::kUnavailable;
    case GrpcCode::kFailedPrecondition:
      return ErrorCode::kFailedPrecondition;
    case GrpcCode::kInvalidArgument:
    case GrpcCode::kOutOfRange:
      return ErrorCode::kInvalidArgument;
    case GrpcCode::kDataLoss:
      return ErrorCode::kDataLoss;
    case GrpcCode::kPermissionDenied:
    case GrpcCode::kUnauthenticated:
      return ErrorCode::kUnauthorized;
    case GrpcCode::kInternal:
    case GrpcCode::kUnimplemented:
      return ErrorCode::kInternal;
    default:
      return ErrorCode::kUnknown;
  }
}

Error grpcError(const GrpcStatus& status, std::string_view what) {
  std::string detail = status.message;
  if (detail.empty()) {
    detail = std::string(grpcCodeName(status.code));
  } else if ((status.code == GrpcCode::kDeadlineExceeded ||
              status.code == GrpcCode::kUnavailable) &&
             detail != grpcCodeName(status.code)) {
    // The transport's own texts ("deadline exceeded", "connect to ...: No such file") say
    // little about the kind; name it too.
    detail = fmt::format("{} ({})", detail, grpcCodeName(status.code));
  }
  return Error{toErrorCode(status.code), fmt::format("{}: {}", what, detail)};
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
