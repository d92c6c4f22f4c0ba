// TaskServer (credentials and metadata routing), TaskDirectory and the endpoints task resource,
// driven directly with snapshots and fakes — no sockets.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "agent/endpoints/endpoints_resource.h"
#include "agent/endpoints/introspection.h"
#include "agent/endpoints/task_directory.h"
#include "agent/endpoints/task_server.h"

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace ecs::endpoints;
using ecs::credentials::CredentialsStore;
using ecs::credentials::RoleType;
using ecs::engine::ContainerStatus;

ecs::engine::TaskSnapshotPtr makeTask(const std::string& id, bool removed = false) {
  auto t = std::make_shared<ecs::engine::TaskSnapshot>();
  t->arn = "arn:aws:ecs:us-west-2:000000000000:task/default/" + id;
  t->id = id;
  t->cluster = "default";
  t->family = "fam";
  t->revision = 3;
  t->known = ContainerStatus::kRunning;
  t->removed = removed;
  ecs::engine::ContainerSnapshot c;
  c.name = "app";
  c.runtime_id = id + "-app-0123456789abcdef";
  c.image = "busybox";
  c.known = ContainerStatus::kRunning;
  c.resources.ip_address = "172.31.5." + std::to_string(id.size());
  t->containers.push_back(c);
  return t;
}

struct TaskServerTest : ::testing::Test {
  TaskDirectory directory;
  CredentialsStore store;
  ecs::metrics::MetricsRegistry metrics;
  ecs::metadata::MetadataContext context{.cluster = "default", .region = "us-west-2"};

  HttpResponse get(TaskServer& server, std::string target, std::string remote = "127.0.0.1") {
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    req.remote_address = remote;
    req.header = [](std::string_view) { return std::string_view(); };
    HttpResponse res;
    server.handle(req, res);
    return res;
  }
  TaskServer server(std::optional<RateLimit> limit = std::nullopt) {
    return TaskServer({&directory, &store, nullptr, &metrics}, context, limit);
  }
};

TEST_F(TaskServerTest, CredentialsV2AndV1) {
  directory.setStateLoaded(true);
  ecs::aws::Credentials c{"AKIAEXAMPLE", "sekrit", "tok", std::nullopt, "test"};
  c.expiration = std::chrono::sys_days{std::chrono::year{2030} / 1 / 2};
  auto id = store.add("arn:task/a", "arn:aws:iam::1:role/app", RoleType::kTask, c);
  auto s = server();
  auto res = get(s, "/v2/credentials/" + id);
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.content_type, "application/json");
  EXPECT_EQ(res.body,
            R"({"RoleArn":"arn:aws:iam::1:role/app","AccessKeyId":"AKIAEXAMPLE",)"
            R"("SecretAccessKey":"sekrit","Token":"tok","Expiration":"2030-01-02T00:00:00Z"})");
  EXPECT_EQ(get(s, "/v1/credentials?id=" + id).body, res.body);

  auto unknown = get(s, "/v2/credentials/not-an-id");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.body,
            R"({"code":"InvalidIdInRequest","message":"CredentialsV2Request: Credentials not )"
            R"(found","HTTPErrorCode":400})");
  auto missing = get(s, "/v2/credentials/");
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("\"NoIdInRequest\""), std::string::npos);
  EXPECT_NE(missing.body.find("CredentialsV2Request: No Credential ID in the request"),
            std::string::npos);
  EXPECT_EQ(get(s, "/v1/credentials").status, 400);
  EXPECT_NE(get(s, "/v1/credentials").body.find("CredentialsV1Request"), std::string::npos);

  // Revoked with the task.
  store.revokeTask("arn:task/a");
  EXPECT_EQ(get(s, "/v2/credentials/" + id).status, 400);
}

TEST_F(TaskServerTest, CredentialsWithoutExpiryGetOneAndUninitializedIs503) {
  directory.setStateLoaded(true);
  auto id = store.add("arn:task/a", "arn:role", RoleType::kTask,
                      ecs::aws::Credentials{"AK", "SK", "", std::nullopt, "environment"});
  auto s = server();
  auto body = json::parse(get(s, "/v2/credentials/" + id).body).as_object();
  auto expiration = std::string(body.at("Expiration").as_string());
  EXPECT_EQ(expiration.size(), 20u) << expiration;
  EXPECT_GT(expiration, ecs::aws::formatExpiration(std::chrono::system_clock::now()));

  store.put({"restored", "arn:task/a", "arn:role", RoleType::kTask, std::nullopt});
  auto res = get(s, "/v2/credentials/restored");
  EXPECT_EQ(res.status, 503);
  EXPECT_NE(res.body.find("CredentialsUninitialized"), std::string::npos);
}

TEST_F(TaskServerTest, BeforeStateIsLoadedMissesAre503) {
  auto s = server();
  EXPECT_EQ(get(s, "/v2/credentials/whatever").status, 503);
  EXPECT_EQ(get(s, "/v4/some-endpoint/task").status, 503);
  directory.setStateLoaded(true);
  EXPECT_EQ(get(s, "/v2/credentials/whatever").status, 400);
  EXPECT_EQ(get(s, "/v4/some-endpoint/task").status, 404);
}

TEST_F(TaskServerTest, MetadataV4V3ByEndpointId) {
  directory.setStateLoaded(true);
  auto task = makeTask("t1");
  directory.registerEndpoint("ep-1", task->arn, "app");
  directory.update(task);
  auto s = server();

  auto t = get(s, "/v4/ep-1/task");
  ASSERT_EQ(t.status, 200) << t.body;
  auto body = json::parse(t.body).as_object();
  EXPECT_EQ(body.at("TaskARN").as_string(), task->arn);
  EXPECT_EQ(body.at("Containers").as_array().size(), 1u);
  auto c = json::parse(get(s, "/v4/ep-1").body).as_object();
  EXPECT_EQ(c.at("DockerId").as_string(), task->containers[0].runtime_id);
  EXPECT_EQ(get(s, "/v3/ep-1/task").status, 200);
  EXPECT_EQ(get(s, "/v3/ep-1").status, 200);
  EXPECT_EQ(get(s, "/v4/ep-1/taskWithTags").status, 200);
  EXPECT_NE(get(s, "/v4/ep-1/taskWithTags").body.find("\"TaskTags\":{}"), std::string::npos);
  // No sampler: stats are empty objects, not errors.
  EXPECT_EQ(get(s, "/v4/ep-1/stats").body, "{}");
  EXPECT_EQ(get(s, "/v4/ep-1/task/stats").body, "{}");

  // The cached body follows the snapshot.
  auto next = std::make_shared<ecs::engine::TaskSnapshot>(*task);
  next->known = ContainerStatus::kStopped;
  directory.update(next);
  EXPECT_EQ(json::parse(get(s, "/v4/ep-1/task").body).at("KnownStatus").as_string(), "STOPPED");

  // Unknown ids: 404 on v4, 500 on v3 metadata, 400 on v3 stats; bodies are JSON strings.
  auto v4 = get(s, "/v4/nope/task");
  EXPECT_EQ(v4.status, 404);
  EXPECT_TRUE(json::parse(v4.body).is_string());
  EXPECT_NE(v4.body.find("V4 task metadata handler"), std::string::npos) << v4.body;
  EXPECT_EQ(get(s, "/v4/nope").status, 404);
  EXPECT_NE(get(s, "/v4/nope")
                .body.find("V4 container metadata handler: unable to get container "
                           "ID from request"),
            std::string::npos);
  EXPECT_EQ(get(s, "/v3/nope").status, 500);
  EXPECT_EQ(get(s, "/v3/nope/stats").status, 400);

  // Removed: forgotten with its endpoint ids.
  directory.update(makeTask("t1", true));
  EXPECT_EQ(get(s, "/v4/ep-1/task").status, 404);
}

TEST_F(TaskServerTest, MetadataV2ByCallerAddress) {
  directory.setStateLoaded(true);
  auto task = makeTask("t22");
  directory.update(task);
  auto s = server();
  auto ip = task->containers[0].resources.ip_address;
  auto res = get(s, "/v2/metadata", ip);
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(json::parse(res.body).at("TaskARN").as_string(), task->arn);
  EXPECT_EQ(get(s, "/v2/metadata/", ip).status, 200);
  EXPECT_EQ(get(s, "/v2/metadata/" + task->containers[0].runtime_id, ip).status, 200);
  EXPECT_EQ(get(s, "/v2/metadata/other", ip).status, 400);
  EXPECT_EQ(get(s, "/v2/stats", ip).status, 200);
  auto stranger = get(s, "/v2/metadata", "172.31.9.9");
  EXPECT_EQ(stranger.status, 400);
  EXPECT_TRUE(json::parse(stranger.body).is_string());
}

TEST_F(TaskServerTest, MalformedPathsAndRedirects) {
  directory.setStateLoaded(true);
  auto s = server();
  auto res = get(s, "/v5/whatever");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.body, "404 page not found\n");
  EXPECT_EQ(get(s, "/v4/ep/unknown/route").status, 404);
  EXPECT_EQ(get(s, "/v2/credentialsX").status, 404);
  auto redirect = get(s, "/v2//credentials/abc?x=1");
  EXPECT_EQ(redirect.status, 301);
  ASSERT_EQ(redirect.headers.size(), 1u);
  EXPECT_EQ(redirect.headers[0].first, "Location");
  EXPECT_EQ(redirect.headers[0].second, "/v2/credentials/abc?x=1");
  EXPECT_EQ(get(s, "/v2/credentials/%zz").status, 400);
}

TEST_F(TaskServerTest, ThrottlingAnswers429WithRetryAfterPerClient) {
  directory.setStateLoaded(true);
  auto s = server(RateLimit{1, 3});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(get(s, "/v2/credentials/x", "10.0.0.1").status, 400);
  auto res = get(s, "/v2/credentials/x", "10.0.0.1");
  EXPECT_EQ(res.status, 429);
  EXPECT_EQ(res.body, "You have reached maximum request limit.");
  EXPECT_EQ(res.content_type, "text/plain; charset=utf-8");
  ASSERT_EQ(res.headers.size(), 1u);
  EXPECT_EQ(res.headers[0].first, "Retry-After");
  EXPECT_EQ(res.headers[0].second, "1");
  EXPECT_EQ(get(s, "/v2/credentials/x", "10.0.0.2").status, 400);
  auto text = metrics.render();
  EXPECT_NE(text.find("ecs_endpoint_throttled_requests_total{server=\"task\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(path="/v2/credentials",status="400"} 4)"), std::string::npos) << text;
}

TEST_F(TaskServerTest, DirectoryShortIdsAndIntrospection) {
  directory.setStateLoaded(true);
  auto a = makeTask("aaa");
  auto b = makeTask("aab");
  directory.update(a);
  directory.update(b);
  EXPECT_TRUE(directory.byContainerId(a->containers[0].runtime_id));
  EXPECT_EQ(directory.byContainerId("aaa-app")->task->arn, a->arn);
  EXPECT_EQ(directory.byContainerId("aa").error().code, ecs::ErrorCode::kInvalidArgument);
  EXPECT_EQ(directory.byContainerId("zzz").error().code, ecs::ErrorCode::kNotFound);

  IntrospectionServer intro(directory, context, {}, &metrics);
  auto call = [&](std::string target) {
    HttpRequest req;
    req.method = "GET";
    req.target = target;
    req.remote_address = "127.0.0.1";
    HttpResponse res;
    intro.handle(req, res);
    return res;
  };
  auto meta = json::parse(call("/v1/metadata").body).as_object();
  EXPECT_EQ(meta.at("Cluster").as_string(), "default");
  EXPECT_TRUE(meta.at("ContainerInstanceArn").is_null());
  EXPECT_TRUE(std::string(meta.at("Version").as_string()).starts_with("Amazon ECS Agent - v"));
  auto tasks = json::parse(call("/v1/tasks").body).as_object();
  EXPECT_EQ(tasks.at("Tasks").as_array().size(), 2u);
  auto one = call("/v1/tasks?taskarn=" + a->arn);
  ASSERT_EQ(one.status, 200);
  auto t = json::parse(one.body).as_object();
  EXPECT_EQ(t.at("Arn").as_string(), a->arn);
  EXPECT_EQ(t.at("KnownStatus").as_string(), "RUNNING");
  EXPECT_EQ(t.at("Version").as_string(), "3");
  EXPECT_EQ(t.at("Containers").as_array()[0].at("DockerId").as_string(),
            a->containers[0].runtime_id);
  EXPECT_EQ(call("/v1/tasks?dockerid=aab-app").status, 200);
  EXPECT_EQ(call("/v1/tasks?dockerid=aa").status, 400);
  EXPECT_EQ(call("/v1/tasks?dockerid=nothing").status, 404);
  EXPECT_EQ(call("/v1/tasks?taskarn=arn:x").status, 404);
  EXPECT_EQ(call("/v1/tasks?taskarn=x&dockerid=y").status, 400);
  EXPECT_NE(call("/anything").body.find("AvailableCommands"), std::string::npos);
}

class FakeSource : public ecs::credentials::CredentialsSource {
 public:
  ecs::Result<ecs::aws::Credentials> credentialsFor(std::string_view role) override {
    roles.emplace_back(role);
    if (fail) return ecs::fail(ecs::ErrorCode::kUnavailable, "no host credentials");
    return ecs::aws::Credentials{"AKIAHOST", "host-secret", "tok", std::nullopt, "environment"};
  }
  std::vector<std::string> roles;
  bool fail = false;
};

struct EndpointsResourceTest : TaskServerTest {
  fs::path dir = fs::temp_directory_path() / ("endpoints-res-" + ecs::endpoints::newUuid());
  ecs::engine::TaskDefinition def;
  FakeSource source;
  void SetUp() override {
    def.family = "fam";
    def.task_role_arn = "arn:aws:iam::1:role/task";
    def.execution_role_arn = "arn:aws:iam::1:role/exec";
    ecs::engine::ContainerDefinition a;
    a.name = "app";
    a.image = "busybox";
    ecs::engine::ContainerDefinition b = a;
    b.name = "side";
    b.environment.push_back({"AWS_DEFAULT_REGION", "eu-west-1"});
    def.container_definitions = {a, b};
  }
  void TearDown() override { fs::remove_all(dir); }
  static std::map<std::string, std::string> envOf(const ecs::engine::ContainerResources& r) {
    std::map<std::string, std::string> out;
    for (const auto& kv : r.env) out[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
    return out;
  }
};

TEST_F(EndpointsResourceTest, CreateContributeCleanup) {
  EndpointsResourceOptions options;
  options.region = "us-west-2";
  options.container_metadata = true;
  options.metadata_dir = (dir / "metadata").string();
  options.context = context;
  EndpointsResourceFactory factory(options, store, &source, directory);
  ecs::engine::TaskInfo info{"arn:aws:ecs:us-west-2:0:task/default/tid", "tid", "", &def};
  auto resource = factory.resourceFor(info);
  ASSERT_TRUE(resource && *resource);
  auto& r = **resource;
  ASSERT_TRUE(r.create());
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(source.roles.size(), 2u);

  ecs::engine::ContainerInfo app{&def.container_definitions[0], "rid-app", ""};
  ecs::engine::ContainerResources out;
  ASSERT_TRUE(r.contribute(app, out));
  auto env = envOf(out);
  ASSERT_TRUE(env.contains("ECS_CONTAINER_METADATA_URI"));
  auto v3 = env["ECS_CONTAINER_METADATA_URI"];
  ASSERT_TRUE(v3.starts_with("http://169.254.170.2/v3/"));
  auto endpoint_id = v3.substr(std::string("http://169.254.170.2/v3/").size());
  EXPECT_EQ(endpoint_id.size(), 36u);
  EXPECT_EQ(env["ECS_CONTAINER_METADATA_URI_V4"], "http://169.254.170.2/v4/" + endpoint_id);
  EXPECT_EQ(env["ECS_AGENT_URI"], "http://169.254.170.2/api/" + endpoint_id);
  EXPECT_EQ(env["AWS_REGION"], "us-west-2");
  EXPECT_EQ(env["AWS_DEFAULT_REGION"], "us-west-2");
  auto rel = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"];
  ASSERT_TRUE(rel.starts_with("/v2/credentials/"));
  auto cred_id = rel.substr(16);
  auto entry = store.get(cred_id);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->role_type, RoleType::kTask);  // never the execution role
  EXPECT_EQ(entry->role_arn, def.task_role_arn);
  // The metadata file: mounted read-only, INITIAL, named in the env.
  ASSERT_EQ(out.mounts.size(), 1u);
  EXPECT_TRUE(out.mounts[0].destination.starts_with("/opt/ecs/metadata/"));
  EXPECT_EQ(env["ECS_CONTAINER_METADATA_FILE"],
            out.mounts[0].destination + "/ecs-container-metadata.json");
  auto file = fs::path(out.mounts[0].source) / "ecs-container-metadata.json";
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("\n\t\"MetadataFileStatus\": \"INITIAL\""), std::string::npos) << text;

  // The endpoint id resolves once the engine publishes the task; READY after RUNNING.
  auto snap = std::make_shared<ecs::engine::TaskSnapshot>();
  snap->arn = info.arn;
  snap->id = "tid";
  snap->containers.push_back({});
  snap->containers[0].name = "app";
  snap->containers[0].runtime_id = "rid-app";
  snap->containers[0].known = ContainerStatus::kRunning;
  directory.update(snap);
  factory.onSnapshot(snap);
  EXPECT_TRUE(directory.byEndpoint(endpoint_id));
  std::ifstream in2(file);
  std::string ready((std::istreambuf_iterator<char>(in2)), {});
  EXPECT_NE(ready.find("\"MetadataFileStatus\": \"READY\""), std::string::npos) << ready;

  // The definition's own region wins.
  ecs::engine::ContainerInfo side{&def.container_definitions[1], "rid-side", ""};
  ecs::engine::ContainerResources out2;
  ASSERT_TRUE(r.contribute(side, out2));
  EXPECT_FALSE(envOf(out2).contains("AWS_REGION"));
  EXPECT_FALSE(envOf(out2).contains("AWS_DEFAULT_REGION"));
  EXPECT_NE(envOf(out2)["ECS_CONTAINER_METADATA_URI"], v3);

  r.cleanup();
  r.cleanup();  // idempotent
  EXPECT_EQ(store.size(), 0u);
  EXPECT_FALSE(directory.byEndpoint(endpoint_id));
  EXPECT_FALSE(fs::exists(dir / "metadata" / "tid"));
}

TEST_F(EndpointsResourceTest, SourceFailureFailsCreateAndNoSourceInjectsNoCredentials) {
  source.fail = true;
  EndpointsResourceFactory failing({}, store, &source, directory);
  ecs::engine::TaskInfo info{"arn:task/x", "x", "", &def};
  auto r = failing.resourceFor(info);
  auto created = (*r)->create();
  ASSERT_FALSE(created);
  EXPECT_NE(created.error().message.find("no host credentials"), std::string::npos);
  (*r)->cleanup();
  EXPECT_EQ(store.size(), 0u);

  EndpointsResourceFactory off({}, store, nullptr, directory);
  auto r2 = off.resourceFor(info);
  ASSERT_TRUE((*r2)->create());
  ecs::engine::ContainerResources out;
  ecs::engine::ContainerInfo app{&def.container_definitions[0], "rid", ""};
  ASSERT_TRUE((*r2)->contribute(app, out));
  EXPECT_FALSE(envOf(out).contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
  EXPECT_TRUE(envOf(out).contains("ECS_CONTAINER_METADATA_URI_V4"));
  EXPECT_TRUE(out.mounts.empty());
  EXPECT_EQ(store.size(), 0u);
  (*r2)->cleanup();
}

}  // namespace
