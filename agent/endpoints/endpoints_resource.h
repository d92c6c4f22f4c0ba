// EndpointsResourceFactory: the endpoint side of a task, as a TaskResource the engine drives.
// create() registers the task's role credentials (from the CredentialsSource) and one random v3
// endpoint id per container; contribute() gives each container the variables the real agent
// injects (ECS_CONTAINER_METADATA_URI[_V4], ECS_AGENT_URI, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
// for the task role, AWS_REGION/AWS_DEFAULT_REGION) and, with container metadata enabled, the
// metadata file's bind mount and ECS_CONTAINER_METADATA_FILE; cleanup() revokes the credentials
// and forgets the ids. No credential is ever logged.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "agent/credentials/credentials_source.h"
#include "agent/credentials/credentials_store.h"
#include "agent/endpoints/task_directory.h"
#include "agent/engine/task_resource.h"
#include "agent/engine/task_snapshot.h"
#include "agent/metadata/task_metadata.h"

namespace ecs::endpoints {

struct EndpointsResourceOptions {
  std::string endpoint_host = "169.254.170.2";  // how containers reach the task endpoint
  std::string region;                           // AWS_REGION for containers; "" injects none
  bool container_metadata = false;              // ECS_ENABLE_CONTAINER_METADATA
  // Host side of the metadata files: <dir>/<taskId>/<containerName>/ecs-container-metadata.json
  std::string metadata_dir = "/var/lib/ecs/data/metadata";
  metadata::MetadataContext context;
};

// A random RFC 4122 version-4 UUID (the v3 endpoint ids and metadata mount points).
std::string newUuid();

class EndpointsResourceFactory : public engine::TaskResourceFactory {
 public:
  // `source` null: tasks get no credentials (role ARNs are ignored with a warning).
  EndpointsResourceFactory(EndpointsResourceOptions options,
                           credentials::CredentialsStore& credentials,
                           credentials::CredentialsSource* source, TaskDirectory& directory);

  Result<std::unique_ptr<engine::TaskResource>> resourceFor(const engine::TaskInfo& task) override;

  // The snapshot feed: rewrites a container's metadata file with READY once it runs.
  void onSnapshot(const engine::TaskSnapshotPtr& task);

  const EndpointsResourceOptions& options() const { return options_; }
  credentials::CredentialsStore& credentials() { return credentials_; }
  credentials::CredentialsSource* source() { return source_; }
  TaskDirectory& directory() { return directory_; }

 private:
  EndpointsResourceOptions options_;
  credentials::CredentialsStore& credentials_;
  credentials::CredentialsSource* source_;
  TaskDirectory& directory_;
  std::mutex ready_mutex_;
  std::set<std::pair<std::string, std::string>> ready_written_;  // (task arn, container name)
};

// Writes a container metadata file atomically (temp file + rename, mode 0644, tab-indented).
Result<void> writeMetadataFile(const std::string& path, const boost::json::object& body);

}  // namespace ecs::endpoints
