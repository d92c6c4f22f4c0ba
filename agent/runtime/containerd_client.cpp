#include "agent/runtime/containerd_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <deque>
#include <random>
#include <thread>

#include "agent/common/process_identity.h"
#include "agent/runtime/containerd_connection.h"
#include "agent/runtime/event_monitor.h"
#include "agent/runtime/task_io.h"

namespace ecs::runtime {

using internal::CallContext;
using internal::Connection;
using internal::EventMonitorImpl;
using internal::fromProto;
using internal::GrpcCode;
using internal::grpcError;
using internal::grpcFail;
using internal::GrpcStatus;
using internal::labelsFromProto;
using internal::labelsToProto;
using internal::toProto;

namespace {

namespace rpc = internal::rpc;
namespace containers_v1 = ::containerd::services::containers::v1;
namespace content_v1 = ::containerd::services::content::v1;
namespace diff_v1 = ::containerd::services::diff::v1;
namespace images_v1 = ::containerd::services::images::v1;
namespace leases_v1 = ::containerd::services::leases::v1;
namespace namespaces_v1 = ::containerd::services::namespaces::v1;
namespace snapshots_v1 = ::containerd::services::snapshots::v1;
namespace tasks_v1 = ::containerd::services::tasks::v1;

constexpr const char* kSpecTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
constexpr const char* kProcessTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";
constexpr const char* kTaskDocumentTypeUrl = "ecs-node-agent/task-document+json";
constexpr const char* kGcExpireLabel = "containerd.io/gc.expire";
constexpr size_t kMaxWriteChunk = 1 << 20;  // bytes per Content.Write message
constexpr size_t kWritesInFlight = 8;       // Content.Write messages sent but not yet answered
// The lease that protects a container's snapshot between Prepare and Containers.Create.
constexpr auto kCreateLeaseExpiry = std::chrono::hours(1);
// How long deleteLeaseSurely keeps trying while containerd is away.
constexpr auto kLeaseCleanupBudget = std::chrono::minutes(2);

bool isNotFound(const GrpcStatus& s) {
  return s.code == GrpcCode::kNotFound;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

SnapshotInfo fromProto(const snapshots_v1::Info& info) {
  SnapshotInfo s{info.name(), info.parent(), SnapshotInfo::Kind::kUnknown,
                 labelsFromProto(info.labels())};
  switch (info.kind()) {
    case snapshots_v1::VIEW:
      s.kind = SnapshotInfo::Kind::kView;
      break;
    case snapshots_v1::ACTIVE:
      s.kind = SnapshotInfo::Kind::kActive;
      break;
    case snapshots_v1::COMMITTED:
      s.kind = SnapshotInfo::Kind::kCommitted;
      break;
    default:
      break;
  }
  return s;
}

ImageRecord fromProto(const images_v1::Image& image) {
  return ImageRecord{image.name(), internal::fromProto(image.target()),
                     labelsFromProto(image.labels()), internal::fromProto(image.created_at()),
                     internal::fromProto(image.updated_at())};
}

ContainerRecord fromProto(const containers_v1::Container& c) {
  ContainerRecord record{
      c.id(), c.image(), c.snapshot_key(), c.snapshotter(), labelsFromProto(c.labels()), {}};
  if (auto it = c.extensions().find(kTaskDocumentExtension); it != c.extensions().end()) {
    record.task_document = it->second.value();
  }
  return record;
}

TaskExit exitFromDelete(const std::string& container_id, const std::string& exec_id,
                        const tasks_v1::DeleteResponse& r) {
  return TaskExit{container_id, exec_id, r.pid(), r.exit_status(),
                  internal::fromProto(r.exited_at())};
}

// containerd filter syntax: `labels."key"=="value"`, conditions joined with ',' (and).
std::string labelFilter(const Labels& labels) {
  std::string filter;
  for (const auto& [k, v] : labels) {
    if (!filter.empty()) filter += ',';
    filter += fmt::format("labels.{:?}=={:?}", k, v);
  }
  return filter;
}

}  // namespace

struct ContainerdClient::Impl {
  std::shared_ptr<Connection> conn;
  std::unique_ptr<EventMonitorImpl> monitor;

  // One attempt at a content write; `locked` says the ref was held by another writer (nothing
  // was consumed from the source, so the caller may try again).
  Result<void> writeOnce(const std::string& lease, const std::string& ref,
                         const Descriptor& expected, const Labels& labels,
                         const ChunkSource& source, const std::string& what, bool& locked);
  Result<void> removeSnapshotIfPresent(const std::string& key, const std::string& snapshotter,
                                       const std::string& what);
};

ContainerdClient::ContainerdClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ContainerdClient::~ContainerdClient() {
  // The monitor's threads use the connection: stop them first.
  if (impl_) impl_->monitor.reset();
}

Result<std::unique_ptr<ContainerdClient>> ContainerdClient::connect(
    const ContainerdOptions& options) {
  const auto what = fmt::format("connect to containerd at {}", options.address);
  if (options.address.empty()) return fail(ErrorCode::kInvalidArgument, "{}: empty address", what);
  if (options.ns.empty()) return fail(ErrorCode::kInvalidArgument, "{}: empty namespace", what);
  auto impl = std::make_unique<Impl>();
  impl->conn = std::make_shared<Connection>(options);
  auto client = std::unique_ptr<ContainerdClient>(new ContainerdClient(std::move(impl)));
  auto version = client->version();
  if (!version) return fail(version.error().wrap(what));
  client->impl_->monitor = std::make_unique<EventMonitorImpl>(client->impl_->conn);
  client->impl_->monitor->start();
  if (!client->impl_->monitor->waitLive(options.call_timeout)) {
    spdlog::warn("{}: event stream not confirmed live after {} ms; continuing", what,
                 options.call_timeout.count());
  }
  spdlog::debug("connected to containerd {} at {} (namespace {})", *version, options.address,
                options.ns);
  return client;
}

const ContainerdOptions& ContainerdClient::options() const {
  return impl_->conn->options;
}

EventMonitor& ContainerdClient::events() {
  return *impl_->monitor;
}

// --- service ------------------------------------------------------------------------------------

Result<std::string> ContainerdClient::version() {
  const auto& c = *impl_->conn;
  ::containerd::services::version::v1::VersionResponse response;
  if (auto s = c.unary(rpc::kVersion, google::protobuf::Empty(), &response); !s.ok()) {
    return grpcFail(s, "version");
  }
  return response.version();
}

// --- leases -------------------------------------------------------------------------------------

Result<std::string> ContainerdClient::createLease(const Labels& labels,
                                                  std::chrono::seconds expire_after) {
  const auto& c = *impl_->conn;
  leases_v1::CreateRequest request;
  Labels all = c.withDefaults(labels);
  const auto self = currentProcess();
  all[kLabelLeaseOwner] = fmt::format("{}:{}", self.pid, self.start_time);
  if (expire_after.count() > 0) {
    all[kGcExpireLabel] = rfc3339(std::chrono::system_clock::now() + expire_after);
  }
  labelsToProto(all, request.mutable_labels());
  // The id is ours, not containerd's: when the connection drops before the answer, the lease
  // may exist all the same, and only a known id lets it be deleted.
  thread_local std::mt19937_64 random{std::random_device{}()};
  const std::string id = fmt::format("ecs-node-agent-{:016x}", random());
  request.set_id(id);
  leases_v1::CreateResponse response;
  if (auto s = c.unary(rpc::kLeasesCreate, request, &response); !s.ok()) {
    auto failed = grpcFail(s, "create lease");
    if (failed.error().code == ErrorCode::kUnavailable)
      deleteLeaseSurely(id, false, "create lease");
    return failed;
  }
  return response.lease().id();
}

Result<void> ContainerdClient::deleteLease(const std::string& id, bool sync_gc) {
  const auto& c = *impl_->conn;
  leases_v1::DeleteRequest request;
  request.set_id(id);
  request.set_sync(sync_gc);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kLeasesDelete, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete lease {}", id));
  }
  return {};
}

// A lease left behind would hold what it protects until it expires, so one that cannot be
// deleted because containerd is away (restarting) is tried again until containerd is back or
// kLeaseCleanupBudget has passed.
void ContainerdClient::deleteLeaseSurely(const std::string& lease, bool sync_gc,
                                         const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + kLeaseCleanupBudget;
  auto backoff = std::chrono::milliseconds(200);
  for (bool logged = false;; logged = true) {
    auto removed = deleteLease(lease, sync_gc);
    if (removed || removed.error().code == ErrorCode::kNotFound) {
      if (logged) spdlog::info("{}: deleted lease {} once containerd was back", what, lease);
      return;
    }
    const bool retry = removed.error().code == ErrorCode::kUnavailable &&
                       std::chrono::steady_clock::now() + backoff < deadline;
    if (!retry) {
      spdlog::warn("{}: could not delete lease {} (containerd drops it when it expires): {}", what,
                   lease, removed.error().message);
      return;
    }
    if (!logged) {
      spdlog::warn("{}: could not delete lease {} yet, trying again until containerd is back: {}",
                   what, lease, removed.error().message);
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
  }
}

Result<std::vector<std::string>> ContainerdClient::listLeases() {
  const auto& c = *impl_->conn;
  leases_v1::ListResponse response;
  if (auto s = c.unary(rpc::kLeasesList, leases_v1::ListRequest(), &response); !s.ok()) {
    return grpcFail(s, "list leases");
  }
  std::vector<std::string> ids;
  for (const auto& lease : response.leases()) ids.push_back(lease.id());
  return ids;
}

Result<std::vector<std::pair<std::string, Labels>>> ContainerdClient::listLeasesWithLabels() {
  const auto& c = *impl_->conn;
  leases_v1::ListResponse response;
  if (auto s = c.unary(rpc::kLeasesList, leases_v1::ListRequest(), &response); !s.ok()) {
    return grpcFail(s, "list leases");
  }
  std::vector<std::pair<std::string, Labels>> out;
  for (const auto& lease : response.leases()) {
    out.emplace_back(lease.id(), labelsFromProto(lease.labels()));
  }
  return out;
}

Result<void> ContainerdClient::addLeaseResource(const std::string& lease, const std::string& id,
                                                const std::string& type) {
  const auto& c = *impl_->conn;
  leases_v1::AddResourceRequest request;
  request.set_id(lease);
  request.mutable_resource()->set_id(id);
  request.mutable_resource()->set_type(type);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kLeasesAddResource, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("add {} {} to lease {}", type, id, lease));
  }
  return {};
}

Result<void> ContainerdClient::deleteLeaseResource(const std::string& lease, const std::string& id,
                                                   const std::string& type) {
  const auto& c = *impl_->conn;
  leases_v1::DeleteResourceRequest request;
  request.set_id(lease);
  request.mutable_resource()->set_id(id);
  request.mutable_resource()->set_type(type);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kLeasesDeleteResource, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("remove {} {} from lease {}", type, id, lease));
  }
  return {};
}

// --- content ------------------------------------------------------------------------------------

Result<std::optional<ContentInfo>> ContainerdClient::contentInfo(const std::string& digest) {
  const auto& c = *impl_->conn;
  content_v1::InfoRequest request;
  request.set_digest(digest);
  content_v1::InfoResponse response;
  auto s = c.unary(rpc::kContentInfo, request, &response);
  if (isNotFound(s)) return std::nullopt;
  if (!s.ok()) return grpcFail(s, fmt::format("content info {}", digest));
  return ContentInfo{response.info().digest(), response.info().size(),
                     labelsFromProto(response.info().labels())};
}

Result<void> ContainerdClient::writeContent(const std::string& lease, const std::string& ref,
                                            const Descriptor& expected, const Labels& labels,
                                            const ChunkSource& source) {
  const auto& c = *impl_->conn;
  const auto what = fmt::format("write content {} ({})", ref, expected.digest);
  if (ref.empty()) return fail(ErrorCode::kInvalidArgument, "{}: empty ref", what);
  if (expected.digest.empty() || expected.size < 0) {
    return fail(ErrorCode::kInvalidArgument, "{}: expected digest and size are required", what);
  }
  const Labels all_labels = c.withDefaults(labels);
  // Another writer holding the same ref (a concurrent pull of the same layer) makes containerd
  // answer "ref ... locked"; wait for it: it either finishes (then the blob exists) or gives up.
  const auto give_up_at = std::chrono::steady_clock::now() + c.options.long_call_timeout;
  auto backoff = std::chrono::milliseconds(20);
  while (true) {
    bool locked = false;
    auto written = impl_->writeOnce(lease, ref, expected, all_labels, source, what, locked);
    if (written || !locked || std::chrono::steady_clock::now() > give_up_at) return written;
    std::this_thread::sleep_for(backoff);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(1));
  }
}

Result<void> ContainerdClient::Impl::writeOnce(const std::string& lease, const std::string& ref,
                                               const Descriptor& expected, const Labels& labels,
                                               const ChunkSource& source, const std::string& what,
                                               bool& locked) {
  const auto& c = *conn;
  CallContext ctx;
  c.prepare(ctx, lease, c.options.long_call_timeout);
  auto stream = c.open(ctx, rpc::kContentWrite);
  content_v1::WriteContentResponse response;

  // Ends the stream politely (the server closes its writer, releasing the ref) and returns the
  // status containerd ended it with.
  auto finish = [&] {
    stream.writesDone();
    while (stream.read(&response)) {
    }
    return stream.finish();
  };
  // Labels on a blob that was already there: set ours too (GC references, ownership).
  auto alreadyThere = [&]() -> Result<void> {
    if (labels.empty()) return {};
    content_v1::UpdateRequest request;
    request.mutable_info()->set_digest(expected.digest);
    labelsToProto(labels, request.mutable_info()->mutable_labels());
    for (const auto& [k, v] : labels) request.mutable_update_mask()->add_paths("labels." + k);
    content_v1::UpdateResponse uresponse;
    if (auto s = c.unary(rpc::kContentUpdate, request, &uresponse, lease); !s.ok()) {
      return grpcFail(s, fmt::format("{}: label existing blob", what));
    }
    return {};
  };
  auto abortRef = [&] {
    content_v1::AbortRequest abort;
    abort.set_ref(ref);
    google::protobuf::Empty empty;
    if (auto a = c.unary(rpc::kContentAbort, abort, &empty); !a.ok() && !isNotFound(a)) {
      spdlog::warn("{}: abort ingest: {}", what, a.message);
    }
  };
  auto exchange = [&](const content_v1::WriteContentRequest& request) {
    return stream.write(request) && stream.read(&response);
  };

  // STAT: open (or resume) the ingest and learn how much of it is already written.
  content_v1::WriteContentRequest stat;
  stat.set_action(content_v1::STAT);
  stat.set_ref(ref);
  stat.set_total(expected.size);
  stat.set_expected(expected.digest);
  if (!exchange(stat)) {
    const auto s = finish();
    if (s.code == GrpcCode::kAlreadyExists) return alreadyThere();
    locked = s.code == GrpcCode::kUnavailable && s.message.find("locked") != std::string::npos;
    return grpcFail(s, fmt::format("{}: open", what));
  }
  int64_t offset = response.offset();
  if (offset > expected.size) offset = 0;  // not our data: the first write truncates

  // Skip what the ingest already holds; the source always starts at byte 0.
  std::string pending_storage;
  std::string_view pending;
  for (int64_t skipped = 0; skipped < offset;) {
    auto chunk = source();
    if (!chunk) {
      finish();
      return fail(chunk.error().wrap(what));
    }
    if (chunk->empty()) {
      finish();
      abortRef();  // that ingest cannot be this blob: let the next attempt start afresh
      return fail(ErrorCode::kDataLoss,
                  "{}: the source ended after {} bytes, before the {} already written", what,
                  skipped, offset);
    }
    const auto take = std::min<int64_t>(static_cast<int64_t>(chunk->size()), offset - skipped);
    skipped += take;
    if (take < static_cast<int64_t>(chunk->size())) {
      pending_storage.assign(chunk->substr(take));
      pending = pending_storage;
    }
  }
  if (offset > 0) spdlog::debug("{}: resuming at byte {}", what, offset);

  // Data goes out in messages of up to 1 MiB (small source chunks are coalesced) with up to
  // kWritesInFlight of them unanswered: containerd answers every message, in order, and waiting
  // for each answer before the next send would make the write latency-bound.
  int64_t written = offset;        // bytes sent
  std::deque<int64_t> unanswered;  // the offsets containerd must report, oldest first
  std::string buffer;
  // A first write at offset 0 truncates whatever the ingest held (restart).
  bool must_truncate = offset == 0 && response.offset() > 0;
  auto awaitAnswer = [&]() -> Result<void> {
    const int64_t want = unanswered.front();
    unanswered.pop_front();
    if (!stream.read(&response)) {
      return grpcFail(finish(), fmt::format("{}: write up to offset {}", what, want));
    }
    if (response.offset() != want) {
      finish();
      return fail(ErrorCode::kDataLoss, "{}: containerd is at offset {} after a write up to {}",
                  what, response.offset(), want);
    }
    return {};
  };
  auto sendMessage = [&](std::string_view data) -> Result<void> {
    content_v1::WriteContentRequest request;
    request.set_action(content_v1::WRITE);
    request.set_ref(ref);
    request.set_offset(written);
    request.set_data(data.data(), data.size());
    if (!stream.write(request)) {
      return grpcFail(finish(), fmt::format("{}: write at offset {}", what, written));
    }
    must_truncate = false;
    written += static_cast<int64_t>(data.size());
    unanswered.push_back(written);
    while (unanswered.size() >= kWritesInFlight) {
      if (auto answered = awaitAnswer(); !answered) return answered;
    }
    return {};
  };
  auto flush = [&]() -> Result<void> {
    if (buffer.empty() && !must_truncate) return {};
    auto sent = sendMessage(buffer);
    buffer.clear();
    return sent;
  };
  auto add = [&](std::string_view data) -> Result<void> {
    while (!data.empty()) {
      if (buffer.empty() && data.size() >= kMaxWriteChunk) {  // big chunks go out uncopied
        if (auto sent = sendMessage(data.substr(0, kMaxWriteChunk)); !sent) return sent;
        data.remove_prefix(kMaxWriteChunk);
        continue;
      }
      const auto take = std::min(kMaxWriteChunk - buffer.size(), data.size());
      buffer.append(data.substr(0, take));
      data.remove_prefix(take);
      if (buffer.size() == kMaxWriteChunk) {
        if (auto flushed = flush(); !flushed) return flushed;
      }
    }
    return {};
  };

  buffer.reserve(kMaxWriteChunk);
  if (auto added = add(pending); !added) return added;
  while (true) {
    auto chunk = source();
    if (!chunk) {
      // Keep what arrived: the ingest stays, so that a retry of the same ref resumes from it.
      bool sent = static_cast<bool>(flush());
      while (sent && !unanswered.empty()) sent = static_cast<bool>(awaitAnswer());
      if (sent) finish();
      return fail(chunk.error().wrap(what));
    }
    if (chunk->empty()) break;
    if (auto added = add(*chunk); !added) return added;
    if (written + static_cast<int64_t>(buffer.size()) > expected.size) {
      finish();
      abortRef();
      return fail(ErrorCode::kDataLoss, "{}: the source gave more than the expected {} bytes", what,
                  expected.size);
    }
  }
  if (auto flushed = flush(); !flushed) return flushed;
  while (!unanswered.empty()) {
    if (auto answered = awaitAnswer(); !answered) return answered;
  }

  content_v1::WriteContentRequest commit;
  commit.set_action(content_v1::COMMIT);
  commit.set_ref(ref);
  commit.set_offset(written);
  commit.set_total(expected.size);
  commit.set_expected(expected.digest);
  labelsToProto(labels, commit.mutable_labels());
  if (!exchange(commit)) {
    const auto s = finish();
    if (s.code == GrpcCode::kAlreadyExists) return alreadyThere();
    if (s.code == GrpcCode::kFailedPrecondition &&
        s.message.find("unexpected commit") != std::string::npos) {
      abortRef();  // wrong digest or size: the ingest is worthless
      return fail(ErrorCode::kDataLoss, "{}: commit: {}", what, s.message);
    }
    return grpcFail(s, fmt::format("{}: commit", what));
  }
  finish();
  return {};
}

Result<std::string> ContainerdClient::readContent(const std::string& digest) {
  const auto& c = *impl_->conn;
  content_v1::ReadContentRequest request;
  request.set_digest(digest);
  CallContext ctx;
  c.prepare(ctx);
  auto reader = c.open(ctx, rpc::kContentRead);
  if (!reader.write(request, true))
    return grpcFail(reader.finish(), fmt::format("read content {}", digest));
  std::string data;
  content_v1::ReadContentResponse response;
  while (reader.read(&response)) data += response.data();
  if (auto s = reader.finish(); !s.ok()) return grpcFail(s, fmt::format("read content {}", digest));
  return data;
}

Result<void> ContainerdClient::updateContentLabels(const std::string& digest,
                                                   const Labels& labels) {
  if (labels.empty()) return {};
  const auto& c = *impl_->conn;
  content_v1::UpdateRequest request;
  request.mutable_info()->set_digest(digest);
  labelsToProto(labels, request.mutable_info()->mutable_labels());
  for (const auto& [k, v] : labels) request.mutable_update_mask()->add_paths("labels." + k);
  content_v1::UpdateResponse response;
  if (auto s = c.unary(rpc::kContentUpdate, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("update labels of content {}", digest));
  }
  return {};
}

Result<void> ContainerdClient::deleteContent(const std::string& digest) {
  const auto& c = *impl_->conn;
  content_v1::DeleteContentRequest request;
  request.set_digest(digest);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kContentDelete, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete content {}", digest));
  }
  return {};
}

Result<std::vector<ContentInfo>> ContainerdClient::listContent() {
  const auto& c = *impl_->conn;
  CallContext ctx;
  c.prepare(ctx);
  auto reader = c.open(ctx, rpc::kContentList);
  if (!reader.write(content_v1::ListContentRequest(), true)) {
    return grpcFail(reader.finish(), "list content");
  }
  std::vector<ContentInfo> out;
  content_v1::ListContentResponse response;
  while (reader.read(&response)) {
    for (const auto& info : response.info()) {
      out.push_back(ContentInfo{info.digest(), info.size(), labelsFromProto(info.labels())});
    }
  }
  if (auto s = reader.finish(); !s.ok()) return grpcFail(s, "list content");
  return out;
}

Result<void> ContainerdClient::abortIngest(const std::string& ref) {
  const auto& c = *impl_->conn;
  content_v1::AbortRequest request;
  request.set_ref(ref);
  google::protobuf::Empty response;
  auto s = c.unary(rpc::kContentAbort, request, &response);
  if (!s.ok() && !isNotFound(s)) return grpcFail(s, fmt::format("abort ingest {}", ref));
  return {};
}

Result<std::vector<IngestStatus>> ContainerdClient::listIngests() {
  const auto& c = *impl_->conn;
  content_v1::ListStatusesResponse response;
  if (auto s = c.unary(rpc::kContentListStatuses, content_v1::ListStatusesRequest(), &response);
      !s.ok()) {
    return grpcFail(s, "list ingests");
  }
  std::vector<IngestStatus> out;
  for (const auto& st : response.statuses()) {
    out.push_back(IngestStatus{st.ref(), st.offset(), st.total(), st.expected()});
  }
  return out;
}

// --- snapshots ----------------------------------------------------------------------------------

Result<std::optional<SnapshotInfo>> ContainerdClient::statSnapshot(const std::string& key,
                                                                   const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::StatSnapshotRequest request;
  request.set_snapshotter(snapshotter);
  request.set_key(key);
  snapshots_v1::StatSnapshotResponse response;
  auto s = c.unary(rpc::kSnapshotsStat, request, &response);
  if (isNotFound(s)) return std::nullopt;
  if (!s.ok()) return grpcFail(s, fmt::format("stat snapshot {}", key));
  return fromProto(response.info());
}

Result<std::vector<Mount>> ContainerdClient::prepareSnapshot(const std::string& lease,
                                                             const std::string& key,
                                                             const std::string& parent,
                                                             const Labels& labels,
                                                             const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::PrepareSnapshotRequest request;
  request.set_snapshotter(snapshotter);
  request.set_key(key);
  request.set_parent(parent);
  labelsToProto(c.withDefaults(labels), request.mutable_labels());
  snapshots_v1::PrepareSnapshotResponse response;
  if (auto s = c.unary(rpc::kSnapshotsPrepare, request, &response, lease); !s.ok()) {
    return grpcFail(s, parent.empty() ? fmt::format("prepare snapshot {}", key)
                                      : fmt::format("prepare snapshot {} on {}", key, parent));
  }
  std::vector<Mount> mounts;
  for (const auto& m : response.mounts()) mounts.push_back(fromProto(m));
  return mounts;
}

Result<std::vector<Mount>> ContainerdClient::snapshotMounts(const std::string& key,
                                                            const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::MountsRequest request;
  request.set_snapshotter(snapshotter);
  request.set_key(key);
  snapshots_v1::MountsResponse response;
  if (auto s = c.unary(rpc::kSnapshotsMounts, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("mounts of snapshot {}", key));
  }
  std::vector<Mount> mounts;
  for (const auto& m : response.mounts()) mounts.push_back(fromProto(m));
  return mounts;
}

Result<void> ContainerdClient::commitSnapshot(const std::string& lease, const std::string& name,
                                              const std::string& key, const Labels& labels,
                                              const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::CommitSnapshotRequest request;
  request.set_snapshotter(snapshotter);
  request.set_name(name);
  request.set_key(key);
  labelsToProto(c.withDefaults(labels), request.mutable_labels());
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kSnapshotsCommit, request, &response, lease); !s.ok()) {
    return grpcFail(s, fmt::format("commit snapshot {} as {}", key, name));
  }
  return {};
}

Result<void> ContainerdClient::removeSnapshot(const std::string& key,
                                              const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::RemoveSnapshotRequest request;
  request.set_snapshotter(snapshotter);
  request.set_key(key);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kSnapshotsRemove, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("remove snapshot {}", key));
  }
  return {};
}

Result<std::vector<SnapshotInfo>> ContainerdClient::listSnapshots(const std::string& snapshotter) {
  const auto& c = *impl_->conn;
  snapshots_v1::ListSnapshotsRequest request;
  request.set_snapshotter(snapshotter);
  CallContext ctx;
  c.prepare(ctx);
  auto reader = c.open(ctx, rpc::kSnapshotsList);
  if (!reader.write(request, true)) {
    return grpcFail(reader.finish(), fmt::format("list {} snapshots", snapshotter));
  }
  std::vector<SnapshotInfo> out;
  snapshots_v1::ListSnapshotsResponse response;
  while (reader.read(&response)) {
    for (const auto& info : response.info()) out.push_back(fromProto(info));
  }
  if (auto s = reader.finish(); !s.ok()) {
    return grpcFail(s, fmt::format("list {} snapshots", snapshotter));
  }
  return out;
}

Result<void> ContainerdClient::Impl::removeSnapshotIfPresent(const std::string& key,
                                                             const std::string& snapshotter,
                                                             const std::string& what) {
  snapshots_v1::RemoveSnapshotRequest request;
  request.set_snapshotter(snapshotter);
  request.set_key(key);
  google::protobuf::Empty response;
  auto s = conn->unary(rpc::kSnapshotsRemove, request, &response);
  if (!s.ok() && !isNotFound(s))
    return grpcFail(s, fmt::format("{}: remove snapshot {}", what, key));
  return {};
}

// --- diff ---------------------------------------------------------------------------------------

Result<Descriptor> ContainerdClient::applyLayer(const Descriptor& layer,
                                                const std::vector<Mount>& mounts) {
  const auto& c = *impl_->conn;
  diff_v1::ApplyRequest request;
  toProto(layer, request.mutable_diff());
  for (const auto& m : mounts) toProto(m, request.add_mounts());
  diff_v1::ApplyResponse response;
  if (auto s = c.unary(rpc::kDiffApply, request, &response, {}, c.options.long_call_timeout);
      !s.ok()) {
    return grpcFail(s, fmt::format("apply layer {} ({})", layer.digest, layer.media_type));
  }
  return fromProto(response.applied());
}

// --- images -------------------------------------------------------------------------------------

Result<std::optional<ImageRecord>> ContainerdClient::getImage(const std::string& name) {
  const auto& c = *impl_->conn;
  images_v1::GetImageRequest request;
  request.set_name(name);
  images_v1::GetImageResponse response;
  auto s = c.unary(rpc::kImagesGet, request, &response);
  if (isNotFound(s)) return std::nullopt;
  if (!s.ok()) return grpcFail(s, fmt::format("get image {}", name));
  return fromProto(response.image());
}

Result<std::vector<ImageRecord>> ContainerdClient::listImages() {
  const auto& c = *impl_->conn;
  images_v1::ListImagesResponse response;
  if (auto s = c.unary(rpc::kImagesList, images_v1::ListImagesRequest(), &response); !s.ok()) {
    return grpcFail(s, "list images");
  }
  std::vector<ImageRecord> out;
  for (const auto& image : response.images()) out.push_back(fromProto(image));
  return out;
}

Result<ImageRecord> ContainerdClient::putImage(const ImageRecord& image) {
  const auto& c = *impl_->conn;
  images_v1::Image proto;
  proto.set_name(image.name);
  labelsToProto(c.withDefaults(image.labels), proto.mutable_labels());
  toProto(image.target, proto.mutable_target());
  {
    images_v1::CreateImageRequest request;
    *request.mutable_image() = proto;
    images_v1::CreateImageResponse response;
    auto s = c.unary(rpc::kImagesCreate, request, &response);
    if (s.ok()) return fromProto(response.image());
    if (s.code != GrpcCode::kAlreadyExists) {
      return grpcFail(s, fmt::format("create image {}", image.name));
    }
  }
  images_v1::UpdateImageRequest request;
  *request.mutable_image() = proto;
  request.mutable_update_mask()->add_paths("target");
  request.mutable_update_mask()->add_paths("labels");
  images_v1::UpdateImageResponse response;
  if (auto s = c.unary(rpc::kImagesUpdate, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("update image {}", image.name));
  }
  return fromProto(response.image());
}

Result<void> ContainerdClient::deleteImage(const std::string& name, bool sync_gc) {
  const auto& c = *impl_->conn;
  images_v1::DeleteImageRequest request;
  request.set_name(name);
  request.set_sync(sync_gc);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kImagesDelete, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete image {}", name));
  }
  return {};
}

// --- containers ---------------------------------------------------------------------------------

Result<ContainerRecord> ContainerdClient::createContainer(const ContainerSpec& spec) {
  const auto& c = *impl_->conn;
  const auto what = fmt::format("create container {}", spec.id);
  if (spec.id.empty()) return fail(ErrorCode::kInvalidArgument, "create container: empty id");
  if (spec.oci_spec_json.empty()) {
    return fail(ErrorCode::kInvalidArgument, "{}: no OCI runtime spec", what);
  }
  if (spec.runtime.empty() || (!spec.snapshot_parent.empty() && spec.snapshotter.empty())) {
    return fail(ErrorCode::kInvalidArgument, "{}: runtime and snapshotter must be set", what);
  }
  const Labels labels = c.withDefaults(spec.labels);

  // The new snapshot is nobody's until the container record names it: hold it with a lease in
  // between, or a GC running at that moment would take it (containerd's client does the same).
  std::string lease;
  if (!spec.snapshot_parent.empty()) {
    auto created =
        createLease({}, std::chrono::duration_cast<std::chrono::seconds>(kCreateLeaseExpiry));
    if (!created) return fail(created.error().wrap(what));
    lease = *created;
  }
  struct LeaseGuard {
    ContainerdClient* self;
    const std::string& lease;
    ~LeaseGuard() {
      if (lease.empty()) return;
      self->deleteLeaseSurely(lease, false, "create container");
    }
  } lease_guard{this, lease};

  if (!spec.snapshot_parent.empty()) {
    auto prepared = prepareSnapshot(lease, spec.id, spec.snapshot_parent, labels, spec.snapshotter);
    if (!prepared) {
      return fail(Error{prepared.error().code,
                        fmt::format("{}: snapshot prepare on {}: {}", what, spec.snapshot_parent,
                                    prepared.error().message)});
    }
  }

  containers_v1::CreateContainerRequest request;
  auto* container = request.mutable_container();
  container->set_id(spec.id);
  container->set_image(spec.image);
  labelsToProto(labels, container->mutable_labels());
  container->mutable_runtime()->set_name(spec.runtime);
  container->mutable_spec()->set_type_url(kSpecTypeUrl);
  container->mutable_spec()->set_value(spec.oci_spec_json);
  if (!spec.task_document.empty()) {
    auto& extension = (*container->mutable_extensions())[kTaskDocumentExtension];
    extension.set_type_url(kTaskDocumentTypeUrl);
    extension.set_value(spec.task_document);
  }
  if (!spec.snapshot_parent.empty()) {
    container->set_snapshotter(spec.snapshotter);
    container->set_snapshot_key(spec.id);
  }
  containers_v1::CreateContainerResponse response;
  if (auto s = c.unary(rpc::kContainersCreate, request, &response, lease); !s.ok()) {
    auto error = grpcError(s, what);
    if (!spec.snapshot_parent.empty()) {
      if (auto removed = impl_->removeSnapshotIfPresent(spec.id, spec.snapshotter, what);
          !removed) {
        spdlog::warn("{}", removed.error().message);
      }
    }
    return fail(error);
  }
  return fromProto(response.container());
}

Result<std::optional<ContainerRecord>> ContainerdClient::getContainer(const std::string& id) {
  const auto& c = *impl_->conn;
  containers_v1::GetContainerRequest request;
  request.set_id(id);
  containers_v1::GetContainerResponse response;
  auto s = c.unary(rpc::kContainersGet, request, &response);
  if (isNotFound(s)) return std::nullopt;
  if (!s.ok()) return grpcFail(s, fmt::format("get container {}", id));
  return fromProto(response.container());
}

Result<std::vector<ContainerRecord>> ContainerdClient::listContainers(const Labels& label_filter) {
  const auto& c = *impl_->conn;
  containers_v1::ListContainersRequest request;
  if (!label_filter.empty()) request.add_filters(labelFilter(label_filter));
  containers_v1::ListContainersResponse response;
  if (auto s = c.unary(rpc::kContainersList, request, &response); !s.ok()) {
    return grpcFail(s, "list containers");
  }
  std::vector<ContainerRecord> out;
  for (const auto& container : response.containers()) out.push_back(fromProto(container));
  return out;
}

Result<void> ContainerdClient::deleteContainer(const std::string& id) {
  const auto& c = *impl_->conn;
  const auto what = fmt::format("delete container {}", id);
  auto task = getTask(id);
  if (!task) return fail(task.error().wrap(what));
  if (*task) {
    return fail(ErrorCode::kFailedPrecondition,
                "{}: it still has a task (pid {}); delete that first", what, (*task)->pid);
  }
  auto record = getContainer(id);
  if (!record) return fail(record.error().wrap(what));
  // Without a record, a snapshot named after the container may still be left from a create
  // that died half-way.
  std::string key = id;
  std::string snapshotter = ContainerSpec().snapshotter;
  if (*record) {
    key = (*record)->snapshot_key;
    snapshotter = (*record)->snapshotter;
    containers_v1::DeleteContainerRequest request;
    request.set_id(id);
    google::protobuf::Empty response;
    if (auto s = c.unary(rpc::kContainersDelete, request, &response); !s.ok() && !isNotFound(s)) {
      return grpcFail(s, what);
    }
  }
  if (!key.empty()) {
    if (auto removed = impl_->removeSnapshotIfPresent(key, snapshotter, what); !removed) {
      return removed;
    }
  }
  impl_->monitor->containerDeleted(id);
  return {};
}

// --- tasks --------------------------------------------------------------------------------------

Result<uint32_t> ContainerdClient::startTask(const std::string& container_id,
                                             const std::string& stdout_path,
                                             const std::string& stderr_path,
                                             const std::optional<OutputLimits>& limits) {
  const auto& c = *impl_->conn;
  const auto what = fmt::format("start task {}", container_id);
  auto record = getContainer(container_id);
  if (!record) return fail(record.error().wrap(what));
  if (!*record) return fail(ErrorCode::kNotFound, "{}: no container {}", what, container_id);
  auto io = makeTaskIo(stdout_path, stderr_path, c.options.logger_shell, c.options.log_writer,
                       limits.value_or(c.options.output_limits));
  if (!io) return fail(io.error().wrap(what));

  tasks_v1::CreateTaskRequest create;
  create.set_container_id(container_id);
  if (!(*record)->snapshot_key.empty()) {
    auto mounts = snapshotMounts((*record)->snapshot_key, (*record)->snapshotter);
    if (!mounts) return fail(mounts.error().wrap(what));
    for (const auto& m : *mounts) toProto(m, create.add_rootfs());
  }
  create.set_stdout(io->stdout_uri);
  create.set_stderr(io->stderr_uri);
  create.set_terminal(false);
  {
    tasks_v1::CreateTaskResponse response;
    if (auto s = c.unary(rpc::kTasksCreate, create, &response); !s.ok()) {
      return grpcFail(s, fmt::format("{}: create", what));
    }
    impl_->monitor->taskCreated(container_id, response.pid());
  }

  tasks_v1::StartRequest start;
  start.set_container_id(container_id);
  tasks_v1::StartResponse response;
  if (auto s = c.unary(rpc::kTasksStart, start, &response); !s.ok()) {
    auto error = grpcError(s, what);
    if (auto deleted = deleteTask(container_id);
        !deleted && deleted.error().code != ErrorCode::kNotFound) {
      spdlog::warn("{}: clean up the task that did not start: {}", what, deleted.error().message);
    }
    return fail(error);
  }
  return response.pid();
}

Result<std::optional<TaskInfo>> ContainerdClient::getTask(const std::string& container_id) {
  const auto& c = *impl_->conn;
  tasks_v1::GetRequest request;
  request.set_container_id(container_id);
  tasks_v1::GetResponse response;
  auto s = c.unary(rpc::kTasksGet, request, &response);
  if (isNotFound(s)) return std::nullopt;
  if (!s.ok()) return grpcFail(s, fmt::format("get task {}", container_id));
  const auto& p = response.process();
  return TaskInfo{container_id, p.pid(), fromProto(p.status()), p.exit_status(),
                  fromProto(p.exited_at())};
}

Result<std::vector<TaskInfo>> ContainerdClient::listTasks() {
  const auto& c = *impl_->conn;
  tasks_v1::ListTasksResponse response;
  if (auto s = c.unary(rpc::kTasksList, tasks_v1::ListTasksRequest(), &response); !s.ok()) {
    return grpcFail(s, "list tasks");
  }
  std::vector<TaskInfo> out;
  // containerd fills Process.id (the init process is named after the container), not
  // container_id.
  for (const auto& p : response.tasks()) {
    out.push_back(TaskInfo{p.id(), p.pid(), fromProto(p.status()), p.exit_status(),
                           fromProto(p.exited_at())});
  }
  return out;
}

Result<void> ContainerdClient::killTask(const std::string& container_id, int signal, bool all) {
  const auto& c = *impl_->conn;
  if (signal <= 0) {
    return fail(ErrorCode::kInvalidArgument, "kill task {}: bad signal {}", container_id, signal);
  }
  tasks_v1::KillRequest request;
  request.set_container_id(container_id);
  request.set_signal(static_cast<uint32_t>(signal));
  request.set_all(all);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kTasksKill, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("kill task {} with signal {}", container_id, signal));
  }
  return {};
}

Result<void> ContainerdClient::killProcess(const std::string& container_id,
                                           const std::string& exec_id, int signal) {
  const auto& c = *impl_->conn;
  if (signal <= 0 || exec_id.empty()) {
    return fail(ErrorCode::kInvalidArgument, "kill process {:?} of {}: bad signal {} or exec id",
                exec_id, container_id, signal);
  }
  tasks_v1::KillRequest request;
  request.set_container_id(container_id);
  request.set_exec_id(exec_id);
  request.set_signal(static_cast<uint32_t>(signal));
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kTasksKill, request, &response); !s.ok()) {
    return grpcFail(
        s, fmt::format("kill process {} of {} with signal {}", exec_id, container_id, signal));
  }
  return {};
}

Result<uint32_t> ContainerdClient::execProcess(const std::string& container_id,
                                               const std::string& exec_id,
                                               const std::string& process_spec_json,
                                               const std::string& stdout_path,
                                               const std::string& stderr_path,
                                               const OutputLimits& limits) {
  const auto& c = *impl_->conn;
  const auto what = fmt::format("exec {} in {}", exec_id, container_id);
  if (exec_id.empty()) return fail(ErrorCode::kInvalidArgument, "{}: empty exec id", what);
  auto io =
      makeTaskIo(stdout_path, stderr_path, c.options.logger_shell, c.options.log_writer, limits);
  if (!io) return fail(io.error().wrap(what));
  impl_->monitor->processCreated(container_id, exec_id);
  {
    tasks_v1::ExecProcessRequest request;
    request.set_container_id(container_id);
    request.set_exec_id(exec_id);
    request.set_stdout(io->stdout_uri);
    request.set_stderr(io->stderr_uri);
    request.set_terminal(false);
    request.mutable_spec()->set_type_url(kProcessTypeUrl);
    request.mutable_spec()->set_value(process_spec_json);
    google::protobuf::Empty response;
    if (auto s = c.unary(rpc::kTasksExec, request, &response); !s.ok()) return grpcFail(s, what);
  }
  tasks_v1::StartRequest start;
  start.set_container_id(container_id);
  start.set_exec_id(exec_id);
  tasks_v1::StartResponse response;
  if (auto s = c.unary(rpc::kTasksStart, start, &response); !s.ok()) {
    auto error = grpcError(s, fmt::format("{}: start", what));
    if (auto deleted = deleteProcess(container_id, exec_id);
        !deleted && deleted.error().code != ErrorCode::kNotFound) {
      spdlog::warn("{}: clean up the process that did not start: {}", what,
                   deleted.error().message);
    }
    return fail(error);
  }
  return response.pid();
}

Result<TaskExit> ContainerdClient::deleteProcess(const std::string& container_id,
                                                 const std::string& exec_id) {
  const auto& c = *impl_->conn;
  tasks_v1::DeleteProcessRequest request;
  request.set_container_id(container_id);
  request.set_exec_id(exec_id);
  tasks_v1::DeleteResponse response;
  if (auto s = c.unary(rpc::kTasksDeleteProcess, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete process {} of {}", exec_id, container_id));
  }
  auto exit = exitFromDelete(container_id, exec_id, response);
  impl_->monitor->processDeleted(exit);
  return exit;
}

Result<TaskExit> ContainerdClient::deleteTask(const std::string& container_id) {
  const auto& c = *impl_->conn;
  tasks_v1::DeleteTaskRequest request;
  request.set_container_id(container_id);
  tasks_v1::DeleteResponse response;
  if (auto s = c.unary(rpc::kTasksDelete, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete task {}", container_id));
  }
  auto exit = exitFromDelete(container_id, "", response);
  impl_->monitor->taskDeleted(exit);
  return exit;
}

// --- namespaces ---------------------------------------------------------------------------------

Result<std::vector<std::string>> ContainerdClient::listNamespaces() {
  const auto& c = *impl_->conn;
  namespaces_v1::ListNamespacesResponse response;
  if (auto s = c.unary(rpc::kNamespacesList, namespaces_v1::ListNamespacesRequest(), &response);
      !s.ok()) {
    return grpcFail(s, "list namespaces");
  }
  std::vector<std::string> out;
  for (const auto& ns : response.namespaces()) out.push_back(ns.name());
  return out;
}

Result<void> ContainerdClient::deleteNamespace(const std::string& name) {
  const auto& c = *impl_->conn;
  namespaces_v1::DeleteNamespaceRequest request;
  request.set_name(name);
  google::protobuf::Empty response;
  if (auto s = c.unary(rpc::kNamespacesDelete, request, &response); !s.ok()) {
    return grpcFail(s, fmt::format("delete namespace {}", name));
  }
  return {};
}

}  // namespace ecs::runtime
