// ContainerdClient: the agent's native gRPC client for containerd (no `ctr`, no Docker).
//
// One channel to containerd's socket; every call carries the namespace (gRPC metadata
// `containerd-namespace`), a deadline, and — where a lease is given — `containerd-lease`, so
// content and snapshots made during a pull are protected from GC until the image record holds
// them. All methods are thread-safe and blocking: the engine calls them from its worker pool.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/common/result.h"
#include "agent/runtime/log_writer.h"
#include "agent/runtime/types.h"

namespace ecs::runtime {

// What execProcess keeps of a process's output unless told otherwise: its first 64 KiB, in one
// file that is never rotated (a health check's output is read from its start, and a check that
// prints without end must not fill the disk before its timeout).
inline constexpr OutputLimits kExecOutputLimits{OutputLimits::kMinMaxSize, 1, true};

struct ContainerdOptions {
  std::string address = "/run/containerd/containerd.sock";  // ECS_CONTAINERD_ADDRESS
  std::string ns = "ecs";                                   // ECS_CONTAINERD_NAMESPACE
  std::chrono::milliseconds call_timeout{std::chrono::seconds(30)};
  // Deadline of the calls whose duration grows with data: a content write, Diff.Apply.
  std::chrono::milliseconds long_call_timeout{std::chrono::minutes(30)};
  Labels default_labels;  // merged into labels of everything the agent creates
  // containerd 1.6's shim sends stdout AND stderr to the stdout file of a `file://` URI, so
  // distinct stdout/stderr files are written by a `binary://` logger run with this shell: it
  // execs `log_writer log-writer ...` (the agent's own binary: bounded, rotated files), or, when
  // log_writer is empty, two `cat`s (unbounded). See task_io.h.
  std::string logger_shell = "/bin/sh";
  std::string log_writer;
  OutputLimits output_limits;  // what startTask uses unless given others
};

// Receives chunks of a blob as it is written; returns an error to abort the write.
// Called repeatedly until it returns 0 bytes (end of data).
using ChunkSource = std::function<Result<std::string_view>()>;

class EventMonitor;

class ContainerdClient {
 public:
  static Result<std::unique_ptr<ContainerdClient>> connect(const ContainerdOptions& options);
  ~ContainerdClient();

  const ContainerdOptions& options() const;

  // --- service -------------------------------------------------------------------------------
  Result<std::string> version();  // containerd's version string

  // --- leases --------------------------------------------------------------------------------
  // A lease holds content and snapshots made under it against GC until it is deleted.
  Result<std::string> createLease(const Labels& labels, std::chrono::seconds expire_after);
  Result<void> deleteLease(const std::string& id, bool sync_gc);
  // deleteLease for cleanup paths: while containerd is unavailable (restarting) it tries again
  // with backoff for up to two minutes, then logs and gives up (the lease expires by itself).
  void deleteLeaseSurely(const std::string& id, bool sync_gc, const std::string& what);
  Result<std::vector<std::string>> listLeases();
  Result<std::vector<std::pair<std::string, Labels>>> listLeasesWithLabels();
  // Adds an existing object to a lease, protecting it from GC while the lease lives. `type` is
  // "content" (id = digest), "snapshots/<snapshotter>" (id = snapshot key) or "ingests" (id = ref).
  Result<void> addLeaseResource(const std::string& lease, const std::string& id,
                                const std::string& type);
  Result<void> deleteLeaseResource(const std::string& lease, const std::string& id,
                                   const std::string& type);

  // --- content store -------------------------------------------------------------------------
  Result<std::optional<ContentInfo>> contentInfo(const std::string& digest);
  // Streams `source` into the content store under `ref` and commits it with the expected digest
  // and size (containerd verifies both). Resumes an interrupted ingest of the same ref. Returns
  // kDataLoss when containerd rejects the digest or size. `lease` may be empty.
  Result<void> writeContent(const std::string& lease, const std::string& ref,
                            const Descriptor& expected, const Labels& labels,
                            const ChunkSource& source);
  // Reads a whole blob (manifests, configs: small).
  Result<std::string> readContent(const std::string& digest);
  // Sets labels (merging: keys given are set, others kept; an empty value removes the key).
  Result<void> updateContentLabels(const std::string& digest, const Labels& labels);
  Result<void> deleteContent(const std::string& digest);
  Result<std::vector<ContentInfo>> listContent();
  // Aborts an in-progress ingest (used to clean up after a failed pull). An ingest that does not
  // exist is not an error.
  Result<void> abortIngest(const std::string& ref);
  // Unfinished writes in this namespace.
  Result<std::vector<IngestStatus>> listIngests();

  // --- snapshots (snapshotter given per call, default overlayfs) -----------------------------
  Result<std::optional<SnapshotInfo>> statSnapshot(const std::string& key,
                                                   const std::string& snapshotter = "overlayfs");
  Result<std::vector<Mount>> prepareSnapshot(const std::string& lease, const std::string& key,
                                             const std::string& parent, const Labels& labels,
                                             const std::string& snapshotter = "overlayfs");
  Result<std::vector<Mount>> snapshotMounts(const std::string& key,
                                            const std::string& snapshotter = "overlayfs");
  Result<void> commitSnapshot(const std::string& lease, const std::string& name,
                              const std::string& key, const Labels& labels,
                              const std::string& snapshotter = "overlayfs");
  Result<void> removeSnapshot(const std::string& key, const std::string& snapshotter = "overlayfs");
  Result<std::vector<SnapshotInfo>> listSnapshots(const std::string& snapshotter = "overlayfs");

  // --- diff ----------------------------------------------------------------------------------
  // Applies a layer blob (from the content store) onto mounts; returns the descriptor of the
  // uncompressed diff that was applied (its digest is the layer's diff ID).
  Result<Descriptor> applyLayer(const Descriptor& layer, const std::vector<Mount>& mounts);

  // --- images --------------------------------------------------------------------------------
  Result<std::optional<ImageRecord>> getImage(const std::string& name);
  Result<std::vector<ImageRecord>> listImages();
  // Creates the record, or updates target and labels of an existing one.
  Result<ImageRecord> putImage(const ImageRecord& image);
  // Deletes the record; with sync_gc containerd collects unreferenced content and snapshots
  // before answering.
  Result<void> deleteImage(const std::string& name, bool sync_gc);

  // --- containers and tasks ------------------------------------------------------------------
  // Prepares a writable snapshot (key = spec.id) on spec.snapshot_parent and creates the
  // container record with the OCI spec. On failure nothing is left behind.
  Result<ContainerRecord> createContainer(const ContainerSpec& spec);
  Result<std::optional<ContainerRecord>> getContainer(const std::string& id);
  // Lists containers whose labels match all of `label_filter` (empty: all).
  Result<std::vector<ContainerRecord>> listContainers(const Labels& label_filter = {});
  // Creates the task (rootfs from the container's snapshot; stdout/stderr appended to the given
  // files, either may be empty for /dev/null; distinct files capped by `limits`, or by
  // options().output_limits) and starts it. Returns the pid.
  Result<uint32_t> startTask(const std::string& container_id, const std::string& stdout_path,
                             const std::string& stderr_path,
                             const std::optional<OutputLimits>& limits = std::nullopt);
  Result<std::optional<TaskInfo>> getTask(const std::string& container_id);
  Result<std::vector<TaskInfo>> listTasks();
  Result<void> killTask(const std::string& container_id, int signal, bool all = false);
  // Runs a process inside a running task (health checks). Output goes to the given files (the
  // same path for both: one file), written by the log writer within `limits` (unbounded when
  // options().log_writer is empty; see task_io.h).
  Result<uint32_t> execProcess(const std::string& container_id, const std::string& exec_id,
                               const std::string& process_spec_json, const std::string& stdout_path,
                               const std::string& stderr_path,
                               const OutputLimits& limits = kExecOutputLimits);
  // Signals a process started with execProcess (a health check past its timeout).
  Result<void> killProcess(const std::string& container_id, const std::string& exec_id, int signal);
  Result<TaskExit> deleteProcess(const std::string& container_id, const std::string& exec_id);
  // Deletes a stopped task; returns its exit. kNotFound when there is no task.
  Result<TaskExit> deleteTask(const std::string& container_id);
  // Deletes the container record and its snapshot. Missing pieces are not an error; a container
  // that still has a task is (kFailedPrecondition).
  Result<void> deleteContainer(const std::string& id);

  // --- namespaces ----------------------------------------------------------------------------
  Result<std::vector<std::string>> listNamespaces();
  // Deletes an empty namespace (kFailedPrecondition names what is left in it). Note containerd
  // does not count leases and ingests: check those first or they vanish with the namespace.
  Result<void> deleteNamespace(const std::string& name);

  // --- events --------------------------------------------------------------------------------
  // The shared event monitor of this client (one Subscribe stream for the whole agent).
  EventMonitor& events();

 private:
  struct Impl;
  explicit ContainerdClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct EventMonitorStats {
  uint64_t subscriptions = 0;      // streams opened (1 + resubscriptions)
  uint64_t stream_failures = 0;    // streams that broke while the client was alive
  uint64_t exits_received = 0;     // TaskExit events decoded (init and exec)
  uint64_t exits_synthesized = 0;  // exits found by Tasks.Get/List after a resubscription
  uint64_t exits_dropped = 0;      // buffered exits evicted because the buffer was full
  uint64_t ooms_received = 0;
  uint64_t buffered_exits = 0;  // exits held right now for waiters to come
};

// One containerd event subscription for the whole agent, dispatching task exits and OOM events
// to whoever waits for them. Waiting is race-free: an exit that arrives before anyone waits is
// kept (bounded) until the task is deleted through this client (deleteTask, deleteProcess,
// deleteContainer) or a new task is started for the container; every waiter gets it.
class EventMonitor {
 public:
  virtual ~EventMonitor() = default;
  // Blocks until the task of `container_id` (init process) exits, or the timeout passes
  // (kUnavailable). A task that already exited before the call is reported immediately;
  // kNotFound when the container has no task.
  virtual Result<TaskExit> waitExit(const std::string& container_id,
                                    std::chrono::milliseconds timeout) = 0;
  // The same for a process started with execProcess.
  virtual Result<TaskExit> waitExecExit(const std::string& container_id, const std::string& exec_id,
                                        std::chrono::milliseconds timeout) = 0;
  // Calls `callback` (on the monitor's threads) for every task exit of the init process,
  // including exits found missing after the stream broke. Must not block for long.
  virtual void onExit(std::function<void(const TaskExit&)> callback) = 0;
  // Calls `callback` for every OOM event (container id).
  virtual void onOom(std::function<void(const std::string&)> callback) = 0;
  virtual EventMonitorStats stats() const = 0;
  // Tests only: breaks the current stream as if containerd had gone away, and resubscribes no
  // sooner than `pause` from now.
  virtual void dropStreamForTesting(std::chrono::milliseconds pause) = 0;
};

}  // namespace ecs::runtime
