// Plain value types shared by the containerd client, the image puller and the engine.
// They mirror containerd's API types without exposing protobuf to the rest of the agent.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ecs::runtime {

using Labels = std::map<std::string, std::string>;

// An OCI content descriptor.
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>"
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
};

struct Mount {
  std::string type;
  std::string source;
  std::string target;
  std::vector<std::string> options;
};

struct ContentInfo {
  std::string digest;
  int64_t size = 0;
  Labels labels;
};

// An ingest (an unfinished content write) in the content store.
struct IngestStatus {
  std::string ref;
  int64_t offset = 0;    // bytes written so far
  int64_t total = 0;     // expected size, 0 when unknown
  std::string expected;  // expected digest, empty when unknown
};

struct SnapshotInfo {
  enum class Kind { kUnknown, kView, kActive, kCommitted };
  std::string name;
  std::string parent;
  Kind kind = Kind::kUnknown;
  Labels labels;
};

// An image record in containerd's image store: a name pointing at a manifest or index.
struct ImageRecord {
  std::string name;
  Descriptor target;
  Labels labels;
  std::chrono::system_clock::time_point created_at{};
  std::chrono::system_clock::time_point updated_at{};
};

// What the engine asks for when it creates a container.
struct ContainerSpec {
  std::string id;
  std::string image;            // image record name, recorded on the container
  std::string snapshot_parent;  // chain ID of the image's top layer; empty for no rootfs snapshot
  std::string snapshotter = "overlayfs";
  std::string runtime = "io.containerd.runc.v2";
  std::string oci_spec_json;  // full OCI runtime spec, as JSON
  Labels labels;
  // What the agent needs to take the container's task over with nothing but containerd (its
  // state store lost): kept on the record as an extension, never holds secrets. Empty: none.
  std::string task_document;
};

struct ContainerRecord {
  std::string id;
  std::string image;
  std::string snapshot_key;
  std::string snapshotter;
  Labels labels;
  std::string task_document;  // see ContainerSpec
};

struct TaskExit {
  std::string container_id;
  std::string exec_id;  // empty for the task's init process
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  std::chrono::system_clock::time_point exited_at{};
};

enum class TaskStatus { kUnknown, kCreated, kRunning, kStopped, kPaused, kPausing };

struct TaskInfo {
  std::string container_id;
  uint32_t pid = 0;
  TaskStatus status = TaskStatus::kUnknown;
  uint32_t exit_status = 0;  // meaningful when status is kStopped
  std::chrono::system_clock::time_point exited_at{};
};

// Label keys the agent puts on everything it creates, so that state can be rebuilt from
// containerd alone and the leak sweeper can recognise its own objects.
inline constexpr const char* kLabelManagedBy = "com.amazonaws.ecs.node-agent.managed-by";
inline constexpr const char* kManagedByValue = "ecs-node-agent";
inline constexpr const char* kLabelAgentInstance = "com.amazonaws.ecs.node-agent.instance";
// On every lease: the agent process that made it ("<pid>:<start time>", see ProcessIdentity),
// so that the leases of a killed agent can be told from a live one's and deleted.
inline constexpr const char* kLabelLeaseOwner = "com.amazonaws.ecs.node-agent.owner";
// The container record's extension that holds ContainerSpec::task_document.
inline constexpr const char* kTaskDocumentExtension = "com.amazonaws.ecs.node-agent.task";

}  // namespace ecs::runtime
