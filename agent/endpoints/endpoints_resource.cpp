#include "agent/endpoints/endpoints_resource.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "agent/common/replace_file.h"

namespace ecs::endpoints {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr std::string_view kMetadataFileName = "ecs-container-metadata.json";
// In the task directory: the v3 endpoint id of each container, for an agent that takes the task
// over after a restart (the ids are in the containers' environment and must keep working).
constexpr std::string_view kEndpointIdsFile = "endpoint-ids.json";
constexpr std::string_view kMetadataMountRoot = "/opt/ecs/metadata/";

// JSON with tab indentation, as the real agent's json.MarshalIndent(…, "", "\t") writes it.
void pretty(const json::value& v, std::string& out, int depth) {
  auto indent = [&](int d) { out.append(static_cast<size_t>(d), '\t'); };
  if (v.is_object()) {
    const auto& o = v.get_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    size_t i = 0;
    for (const auto& kv : o) {
      indent(depth + 1);
      out += json::serialize(json::value(json::string(kv.key())));
      out += ": ";
      pretty(kv.value(), out, depth + 1);
      out += ++i < o.size() ? ",\n" : "\n";
    }
    indent(depth);
    out += "}";
  } else if (v.is_array()) {
    const auto& a = v.get_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += "[\n";
    for (size_t i = 0; i < a.size(); ++i) {
      indent(depth + 1);
      pretty(a[i], out, depth + 1);
      out += i + 1 < a.size() ? ",\n" : "\n";
    }
    indent(depth);
    out += "]";
  } else {
    out += json::serialize(v);
  }
}

class EndpointsResource : public engine::TaskResource {
 public:
  EndpointsResource(EndpointsResourceFactory& factory, const engine::TaskInfo& task)
      : factory_(factory), task_(task) {}

  std::string_view name() const override { return "endpoints"; }

  Result<void> create() override {
    const auto& def = *task_.definition;
    auto* source = factory_.source();
    // Credentials the cluster sent are stored under its own id by whoever received them; the
    // task only needs to know the id. The source serves roles nobody sent credentials for.
    task_credentials_id_ = task_.role_credentials_id;
    for (auto [role_arn, type] :
         {std::pair{&def.task_role_arn, credentials::RoleType::kTask},
          std::pair{&def.execution_role_arn, credentials::RoleType::kExecution}}) {
      if (role_arn->empty()) continue;
      if (type == credentials::RoleType::kTask && !task_.role_credentials_id.empty()) continue;
      if (type == credentials::RoleType::kExecution &&
          !task_.execution_role_credentials_id.empty()) {
        continue;
      }
      if (!source) {
        spdlog::warn("task {}: {} role {}: serving no credentials (host credentials are off)",
                     task_.arn, credentials::toString(type), *role_arn);
        continue;
      }
      auto creds = source->credentialsFor(*role_arn);
      if (!creds) {
        return fail(
            creds.error().wrap(fmt::format("{} role credentials", credentials::toString(type))));
      }
      // The source is named, the secret is not.
      spdlog::info("task {}: {} role {} credentials from {}", task_.arn,
                   credentials::toString(type), *role_arn, creds->source);
      auto id = factory_.credentials().add(task_.arn, *role_arn, type, std::move(*creds));
      if (type == credentials::RoleType::kTask) task_credentials_id_ = id;
    }
    json::object kept;
    for (const auto& c : def.container_definitions) {
      auto id = newUuid();
      factory_.directory().registerEndpoint(id, task_.arn, c.name);
      endpoint_ids_[c.name] = id;
      kept[c.name] = id;
    }
    if (!task_.dir.empty()) {
      auto written = replaceFile((fs::path(task_.dir) / kEndpointIdsFile).string(),
                                 json::serialize(kept), 0600);
      if (!written) return fail(written.error().wrap("keep the task's endpoint ids"));
    }
    return {};
  }

  // The same ids as before the restart; credentials are the cluster's, restored by the daemon
  // under the ids the containers already have.
  Result<void> recover() override {
    const auto path = (fs::path(task_.dir) / kEndpointIdsFile).string();
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    boost::system::error_code ec;
    auto kept = json::parse(text.str(), ec);
    if (!in || ec || !kept.is_object()) {
      return fail(ErrorCode::kNotFound, "the task's endpoint ids were not kept ({})", path);
    }
    task_credentials_id_ = task_.role_credentials_id;
    for (const auto& c : task_.definition->container_definitions) {
      auto* id = kept.get_object().if_contains(c.name);
      if (!id || !id->is_string()) {
        return fail(ErrorCode::kNotFound, "no endpoint id was kept for container {}", c.name);
      }
      factory_.directory().registerEndpoint(std::string(id->get_string()), task_.arn, c.name);
      endpoint_ids_[c.name] = std::string(id->get_string());
    }
    return {};
  }

  Result<void> contribute(const engine::ContainerInfo& container,
                          engine::ContainerResources& out) override {
    const auto& options = factory_.options();
    const auto& name = container.definition->name;
    auto it = endpoint_ids_.find(name);
    if (it == endpoint_ids_.end()) {
      return fail(ErrorCode::kInternal, "container {} has no metadata endpoint id", name);
    }
    const auto& host = options.endpoint_host;
    out.env.push_back(fmt::format("ECS_CONTAINER_METADATA_URI=http://{}/v3/{}", host, it->second));
    out.env.push_back(
        fmt::format("ECS_CONTAINER_METADATA_URI_V4=http://{}/v4/{}", host, it->second));
    out.env.push_back(fmt::format("ECS_AGENT_URI=http://{}/api/{}", host, it->second));
    if (!task_credentials_id_.empty()) {
      out.env.push_back(fmt::format("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/{}",
                                    task_credentials_id_));
    }
    bool region_set = false;
    for (const auto& kv : container.definition->environment) {
      if (kv.name == "AWS_REGION" || kv.name == "AWS_DEFAULT_REGION") region_set = true;
    }
    if (!region_set && !options.region.empty()) {
      out.env.push_back("AWS_REGION=" + options.region);
      out.env.push_back("AWS_DEFAULT_REGION=" + options.region);
    }
    if (options.container_metadata) {
      auto dir = containerMetadataDir(name);
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) {
        return fail(ErrorCode::kUnavailable, "container metadata directory {}: {}", dir,
                    ec.message());
      }
      auto written = writeMetadataFile((fs::path(dir) / kMetadataFileName).string(),
                                       initialMetadata(container));
      if (!written) return fail(written.error().wrap("container metadata file"));
      auto mount_point = std::string(kMetadataMountRoot) + newUuid();
      out.mounts.push_back({mount_point, "bind", dir, {"rbind", "ro"}});
      out.env.push_back(
          fmt::format("ECS_CONTAINER_METADATA_FILE={}/{}", mount_point, kMetadataFileName));
    }
    return {};
  }

  void cleanup() override {
    factory_.credentials().revokeTask(task_.arn);
    factory_.directory().forgetEndpoints(task_.arn);
    if (factory_.options().container_metadata) {
      std::error_code ec;
      fs::remove_all(fs::path(factory_.options().metadata_dir) / task_.id, ec);
      if (ec) spdlog::warn("task {}: remove container metadata: {}", task_.arn, ec.message());
    }
  }

 private:
  std::string containerMetadataDir(const std::string& container) const {
    return (fs::path(factory_.options().metadata_dir) / task_.id / container).string();
  }

  // The INITIAL file, before the engine has published the container: what the definition says.
  json::object initialMetadata(const engine::ContainerInfo& container) const {
    engine::TaskSnapshot task;
    task.arn = task_.arn;
    task.id = task_.id;
    task.cluster = factory_.options().context.cluster;
    task.family = task_.definition->family;
    task.revision = task_.definition->revision;
    engine::ContainerSnapshot c;
    c.name = container.definition->name;
    c.runtime_id = container.runtime_id;
    c.image = container.definition->image;
    return metadata::containerMetadataFile(task, c, factory_.options().context, "INITIAL");
  }

  EndpointsResourceFactory& factory_;
  engine::TaskInfo task_;
  std::string task_credentials_id_;
  std::map<std::string, std::string> endpoint_ids_;  // container name -> v3 endpoint id
};

}  // namespace

std::string newUuid() {
  std::array<unsigned char, 16> b{};
  size_t filled = 0;
  while (filled < b.size()) {
    ssize_t n = getrandom(b.data() + filled, b.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) std::abort();  // no kernel CSPRNG: ids could be guessed
    filled += static_cast<size_t>(n);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:"
      "02x}"
      "{:02x}",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
      b[15]);
}

Result<void> writeMetadataFile(const std::string& path, const json::object& body) {
  std::string text;
  pretty(body, text, 0);
  // 0644 whatever the umask: containers run as any user.
  return replaceFile(path, text, 0644);
}

EndpointsResourceFactory::EndpointsResourceFactory(EndpointsResourceOptions options,
                                                   credentials::CredentialsStore& credentials,
                                                   credentials::CredentialsSource* source,
                                                   TaskDirectory& directory)
    : options_(std::move(options)),
      credentials_(credentials),
      source_(source),
      directory_(directory) {}

Result<std::unique_ptr<engine::TaskResource>> EndpointsResourceFactory::resourceFor(
    const engine::TaskInfo& task) {
  return std::unique_ptr<engine::TaskResource>(new EndpointsResource(*this, task));
}

void EndpointsResourceFactory::onSnapshot(const engine::TaskSnapshotPtr& task) {
  if (!task || !options_.container_metadata) return;
  std::lock_guard lock(ready_mutex_);
  if (task->removed) {
    std::erase_if(ready_written_, [&](const auto& key) { return key.first == task->arn; });
    return;
  }
  for (const auto& c : task->containers) {
    if (c.known != engine::ContainerStatus::kRunning) continue;
    if (!ready_written_.insert({task->arn, c.name}).second) continue;
    auto path = fs::path(options_.metadata_dir) / task->id / c.name / kMetadataFileName;
    if (!fs::exists(path.parent_path())) continue;
    auto written = writeMetadataFile(
        path.string(), metadata::containerMetadataFile(*task, c, options_.context, "READY"));
    if (!written) {
      spdlog::warn("task {}: container {}: metadata file: {}", task->arn, c.name,
                   written.error().message);
    }
  }
}

}  // namespace ecs::endpoints
