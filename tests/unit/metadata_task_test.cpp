// Task metadata bodies (v2/v3/v4 and the container metadata file) from hand-built snapshots,
// checked against the real agent's shapes (docs/compatibility.md): exact key sets, the keys
// omitted when empty, awsvpc network fields, HostPort in awsvpc, the time format, Limits, and ARNs
// that parse inside and outside a cluster.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "agent/metadata/task_metadata.h"

namespace ecs::metadata {
namespace {

namespace json = boost::json;
using engine::ContainerSnapshot;
using engine::ContainerStatus;
using engine::TaskSnapshot;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;
using Keys = std::set<std::string>;

Keys keys(const json::object& o) {
  Keys out;
  for (const auto& kv : o) out.insert(std::string(kv.key()));
  return out;
}

std::chrono::system_clock::time_point at(int64_t seconds, int64_t nanos = 0) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanos)));
}

// 2024-05-01T10:00:00Z
constexpr int64_t kT0 = 1714557600;

// The six fields of an ARN the way the AWS SDKs split it.
std::vector<std::string> splitArn(const std::string& arn) {
  std::vector<std::string> out;
  size_t start = 0;
  for (int i = 0; i < 5; ++i) {
    auto colon = arn.find(':', start);
    if (colon == std::string::npos) return {};
    out.push_back(arn.substr(start, colon - start));
    start = colon + 1;
  }
  out.push_back(arn.substr(start));
  return out;
}

MetadataContext outside() {
  MetadataContext ctx;
  ctx.cluster = "local";
  ctx.region = "eu-west-1";
  ctx.availability_zone = "eu-west-1a";
  return ctx;
}

ContainerSnapshot runningContainer() {
  ContainerSnapshot c;
  c.name = "web";
  c.runtime_id = "t1-0-web";
  c.image = "nginx:1.25";
  c.image_id = "sha256:abc";
  c.known = ContainerStatus::kRunning;
  c.desired = ContainerStatus::kRunning;
  c.labels = {{"com.amazonaws.ecs.container-name", "web"}};
  c.created_at = at(kT0, 500'000'000);
  c.started_at = at(kT0 + 1);
  c.cpu = 256;
  c.memory_mib = 512;
  c.log_driver = "json-file";
  c.log_options = {{"max-size", "10m"}};
  c.cgroup_path = "/ecs/t1/t1-0-web";
  c.resources.network_mode = "bridge";
  c.resources.ip_address = "172.31.5.2";
  c.resources.network_bindings = {{"0.0.0.0", 80, 32768, "tcp", "", ""}};
  return c;
}

TaskSnapshot bridgeTask() {
  TaskSnapshot t;
  t.arn = "t1";
  t.id = "t1";
  t.family = "web";
  t.revision = 3;
  t.network_mode = "bridge";
  t.known = ContainerStatus::kRunning;
  t.desired = ContainerStatus::kRunning;
  t.cpu_units = 512;
  t.memory_mib = 1024;
  t.pull_started_at = at(kT0 - 10);
  t.pull_stopped_at = at(kT0 - 5);
  t.cgroup_path = "/ecs/t1";
  t.containers = {runningContainer()};
  return t;
}

TaskSnapshot awsvpcTask() {
  TaskSnapshot t = bridgeTask();
  t.network_mode = "awsvpc";
  auto& c = t.containers[0];
  c.resources.network_mode = "awsvpc";
  c.resources.netns_path = "/run/netns/ecs-t1";
  c.resources.ip_address = "172.31.0.5";
  c.resources.ipv4_subnet = "172.31.0.0/24";
  c.resources.ipv4_gateway = "172.31.0.1";
  c.resources.network_bindings = {{"", 8080, 0, "tcp", "", ""}};
  return t;
}

const Keys kContainerV2Keys = {"DockerId",  "Name",      "DockerName",    "Image",       "ImageID",
                               "Ports",     "Labels",    "DesiredStatus", "KnownStatus", "Limits",
                               "CreatedAt", "StartedAt", "Type"};

TEST(MetadataContainer, V2KeysAndValues) {
  auto t = bridgeTask();
  auto o = containerV2(t, t.containers[0], outside());
  EXPECT_EQ(keys(o), kContainerV2Keys);  // bridge: no Networks in v2
  EXPECT_EQ(o["DockerId"], "t1-0-web");
  EXPECT_EQ(o["DockerName"], "t1-0-web");
  EXPECT_EQ(o["Name"], "web");
  EXPECT_EQ(o["Image"], "nginx:1.25");
  EXPECT_EQ(o["ImageID"], "sha256:abc");
  EXPECT_EQ(o["KnownStatus"], "RUNNING");
  EXPECT_EQ(o["DesiredStatus"], "RUNNING");
  EXPECT_EQ(o["Type"], "NORMAL");
  EXPECT_EQ(o["Labels"].as_object()["com.amazonaws.ecs.container-name"], "web");
  auto& port = o["Ports"].as_array().at(0).as_object();
  EXPECT_EQ(keys(port), (Keys{"ContainerPort", "Protocol", "HostPort"}));  // HostIp is v4 only
  EXPECT_EQ(port["ContainerPort"], 80);
  EXPECT_EQ(port["HostPort"], 32768);
  EXPECT_EQ(port["Protocol"], "tcp");
}

TEST(MetadataContainer, V3AddsNetworks) {
  auto t = bridgeTask();
  auto o = containerV3(t, t.containers[0], outside());
  Keys expected = kContainerV2Keys;
  expected.insert("Networks");
  EXPECT_EQ(keys(o), expected);
  auto& net = o["Networks"].as_array().at(0).as_object();
  EXPECT_EQ(keys(net), (Keys{"NetworkMode", "IPv4Addresses"}));
  EXPECT_EQ(net["NetworkMode"], "bridge");
  EXPECT_EQ(net["IPv4Addresses"].as_array(), json::array{"172.31.5.2"});
}

TEST(MetadataContainer, V4AddsLogAndArnAndHostIp) {
  auto t = bridgeTask();
  auto o = containerV4(t, t.containers[0], outside());
  Keys expected = kContainerV2Keys;
  expected.insert({"Networks", "LogDriver", "LogOptions", "ContainerARN"});
  EXPECT_EQ(keys(o), expected);
  EXPECT_EQ(o["LogDriver"], "json-file");
  EXPECT_EQ(o["LogOptions"].as_object()["max-size"], "10m");
  EXPECT_EQ(o["Ports"].as_array().at(0).as_object()["HostIp"], "0.0.0.0");
  auto& net = o["Networks"].as_array().at(0).as_object();
  EXPECT_EQ(keys(net), (Keys{"NetworkMode", "IPv4Addresses"}));  // awsvpc fields only in awsvpc
}

TEST(MetadataContainer, EmptyFieldsAreOmitted) {
  TaskSnapshot t = bridgeTask();
  ContainerSnapshot c;
  c.name = "side";
  c.runtime_id = "t1-1-side";
  c.image = "busybox";
  c.known = ContainerStatus::kCreated;
  t.network_mode = "none";
  t.containers = {c};
  EXPECT_EQ(keys(containerV2(t, c, outside())),
            (Keys{"DockerId", "Name", "DockerName", "Image", "ImageID", "DesiredStatus",
                  "KnownStatus", "Limits", "Type"}));
  auto v4 = containerV4(t, c, outside());
  EXPECT_EQ(keys(v4), (Keys{"DockerId", "Name", "DockerName", "Image", "ImageID", "DesiredStatus",
                            "KnownStatus", "Limits", "Type", "Networks", "ContainerARN"}));
  // No address: the network has its mode only.
  EXPECT_EQ(keys(v4["Networks"].as_array().at(0).as_object()), (Keys{"NetworkMode"}));
  EXPECT_EQ(v4["Networks"].as_array().at(0).as_object()["NetworkMode"], "none");
  // Limits are always there, 0 memory when the container has none.
  EXPECT_EQ(v4["Limits"].as_object()["Memory"], 0);
  EXPECT_EQ(v4["Limits"].as_object()["CPU"], 0.0);
}

TEST(MetadataContainer, ExitCodeFinishedAtHealthVolumesRestarts) {
  auto t = bridgeTask();
  auto& c = t.containers[0];
  c.known = ContainerStatus::kStopped;
  c.exit_code = 137;
  c.finished_at = at(kT0 + 60);
  c.health = engine::HealthStatus::kHealthy;
  c.health_checked_at = at(kT0 + 30);
  c.health_output = "ok";
  c.restart_count = 2;
  c.resources.mounts = {{"/data", "bind", "/var/lib/ecs/volumes/t1/data", {"rbind"}}};
  auto o = containerV4(t, c, outside());
  EXPECT_EQ(o["ExitCode"], 137);
  EXPECT_EQ(o["KnownStatus"], "STOPPED");
  EXPECT_EQ(o["FinishedAt"], "2024-05-01T10:01:00Z");
  EXPECT_EQ(o["Health"].as_object(),
            (json::object{
                {"status", "HEALTHY"}, {"statusSince", "2024-05-01T10:00:30Z"}, {"output", "ok"}}));
  EXPECT_EQ(o["Volumes"].as_array(),
            (json::array{json::object{{"Source", "/var/lib/ecs/volumes/t1/data"},
                                      {"Destination", "/data"}}}));
  EXPECT_EQ(o["RestartCount"], 2);
  // v2 has no RestartCount, LogDriver or ContainerARN.
  auto v2 = containerV2(t, c, outside());
  EXPECT_FALSE(v2.contains("RestartCount"));
  EXPECT_FALSE(v2.contains("ContainerARN"));
  EXPECT_FALSE(v2.contains("LogDriver"));
  // A container whose health was never checked has no Health key.
  c.health = engine::HealthStatus::kUnknown;
  c.health_checked_at.reset();
  EXPECT_FALSE(containerV4(t, c, outside()).contains("Health"));
}

TEST(MetadataContainer, AwsvpcNetworkFieldsAndHostPortEqualsContainerPort) {
  auto t = awsvpcTask();
  auto ctx = outside();
  auto v4 = containerV4(t, t.containers[0], ctx);
  auto& net = v4["Networks"].as_array().at(0).as_object();
  EXPECT_EQ(keys(net), (Keys{"NetworkMode", "IPv4Addresses", "AttachmentIndex",
                             "IPv4SubnetCIDRBlock", "PrivateDNSName", "SubnetGatewayIpv4Address"}));
  EXPECT_EQ(net["NetworkMode"], "awsvpc");
  EXPECT_EQ(net["IPv4Addresses"].as_array(), json::array{"172.31.0.5"});
  EXPECT_EQ(net["AttachmentIndex"], 0);
  EXPECT_EQ(net["IPv4SubnetCIDRBlock"], "172.31.0.0/24");
  EXPECT_EQ(net["SubnetGatewayIpv4Address"], "172.31.0.1/24");
  EXPECT_EQ(net["PrivateDNSName"], "ip-172-31-0-5.eu-west-1.compute.internal");
  ctx.region = "us-east-1";
  EXPECT_EQ(
      containerV4(t, t.containers[0], ctx)["Networks"].as_array()[0].as_object()["PrivateDNSName"],
      "ip-172-31-0-5.ec2.internal");

  // The binding's host port is 0 (awsvpc has no host port); metadata reports the container port.
  for (const auto& body : {containerV2(t, t.containers[0], ctx), v4}) {
    auto& port = body.at("Ports").as_array().at(0).as_object();
    EXPECT_EQ(port.at("ContainerPort"), 8080);
    EXPECT_EQ(port.at("HostPort"), 8080);
    EXPECT_FALSE(port.contains("HostIp"));
  }
  // v2 reports networks for awsvpc (its only source), with the v2 item shape.
  auto v2 = containerV2(t, t.containers[0], ctx);
  EXPECT_EQ(keys(v2["Networks"].as_array().at(0).as_object()),
            (Keys{"NetworkMode", "IPv4Addresses"}));
}

TEST(MetadataContainer, PortRangesAreExpanded) {
  auto t = bridgeTask();
  t.containers[0].resources.network_bindings = {{"", 0, 0, "udp", "5000-5002", "6000-6002"}};
  auto ports = containerV4(t, t.containers[0], outside())["Ports"].as_array();
  ASSERT_EQ(ports.size(), 3u);
  EXPECT_EQ(ports[2].as_object()["ContainerPort"], 5002);
  EXPECT_EQ(ports[2].as_object()["HostPort"], 6002);
  EXPECT_EQ(ports[2].as_object()["Protocol"], "udp");
}

TEST(MetadataTime, Rfc3339Utc) {
  EXPECT_EQ(rfc3339(at(kT0)), "2024-05-01T10:00:00Z");
  EXPECT_EQ(rfc3339(at(kT0, 500'000'000)), "2024-05-01T10:00:00.5Z");
  EXPECT_EQ(rfc3339(at(kT0, 123'456'789)), "2024-05-01T10:00:00.123456789Z");
  EXPECT_EQ(rfc3339(at(0)), "1970-01-01T00:00:00Z");
  const std::regex rfc3339_utc(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z)");
  EXPECT_TRUE(std::regex_match(rfc3339(std::chrono::system_clock::now()), rfc3339_utc));
  auto t = bridgeTask();
  auto o = taskV4(t, outside());
  for (auto key : {"PullStartedAt", "PullStoppedAt"}) {
    EXPECT_TRUE(std::regex_match(std::string(o[key].as_string()), rfc3339_utc)) << key;
  }
  EXPECT_EQ(o["Containers"].as_array()[0].as_object()["CreatedAt"], "2024-05-01T10:00:00.5Z");
}

const Keys kTaskV2Keys = {"Cluster",       "TaskARN",       "Family",          "Revision",
                          "DesiredStatus", "KnownStatus",   "Containers",      "Limits",
                          "PullStartedAt", "PullStoppedAt", "AvailabilityZone"};

TEST(MetadataTask, V2AndV3Keys) {
  auto t = bridgeTask();
  auto v2 = taskV2(t, outside());
  EXPECT_EQ(keys(v2), kTaskV2Keys);
  EXPECT_EQ(v2["Family"], "web");
  EXPECT_EQ(v2["Revision"], "3");  // a string, as the real agent writes it
  EXPECT_EQ(v2["KnownStatus"], "RUNNING");
  EXPECT_EQ(v2["AvailabilityZone"], "eu-west-1a");
  EXPECT_FALSE(v2["Containers"].as_array()[0].as_object().contains("Networks"));
  auto v3 = taskV3(t, outside());
  EXPECT_EQ(keys(v3), kTaskV2Keys);
  EXPECT_TRUE(v3["Containers"].as_array()[0].as_object().contains("Networks"));
}

TEST(MetadataTask, V4KeysAndLaunchType) {
  auto t = bridgeTask();
  t.stopped_at = at(kT0 + 100);
  auto v4 = taskV4(t, outside());
  Keys expected = kTaskV2Keys;
  expected.insert({"LaunchType", "FaultInjectionEnabled", "ExecutionStoppedAt"});
  EXPECT_EQ(keys(v4), expected);
  EXPECT_EQ(v4["LaunchType"], "EC2");
  EXPECT_EQ(v4["FaultInjectionEnabled"], false);
  EXPECT_EQ(v4["ExecutionStoppedAt"], "2024-05-01T10:01:40Z");
  EXPECT_TRUE(v4["Containers"].as_array()[0].as_object().contains("ContainerARN"));
}

TEST(MetadataTask, LimitsOnlyWhenSetAtTaskLevel) {
  auto t = bridgeTask();
  EXPECT_EQ(taskV4(t, outside())["Limits"].as_object(),
            (json::object{{"CPU", 0.5}, {"Memory", 1024}}));
  t.cpu_units.reset();
  EXPECT_EQ(taskV4(t, outside())["Limits"].as_object(), (json::object{{"Memory", 1024}}));
  t.memory_mib.reset();
  EXPECT_FALSE(taskV4(t, outside()).contains("Limits"));
  EXPECT_FALSE(taskV2(t, outside()).contains("Limits"));
}

TEST(MetadataTask, EmptyTaskOmitsOptionalKeys) {
  TaskSnapshot t;
  t.id = "t9";
  t.arn = "t9";
  t.family = "f";
  t.revision = 1;
  auto ctx = outside();
  ctx.availability_zone.clear();  // ECS_DISABLE_TASK_METADATA_AZ
  EXPECT_EQ(keys(taskV2(t, ctx)),
            (Keys{"Cluster", "TaskARN", "Family", "Revision", "DesiredStatus", "KnownStatus"}));
  EXPECT_EQ(keys(taskV4(t, ctx)), (Keys{"Cluster", "TaskARN", "Family", "Revision", "DesiredStatus",
                                        "KnownStatus", "LaunchType", "FaultInjectionEnabled"}));
}

TEST(MetadataTask, StatusStringsAndWhichContainersAreListed) {
  auto t = bridgeTask();
  t.known = ContainerStatus::kPulled;  // no PULLED task status in the real agent
  ContainerSnapshot pulled;
  pulled.name = "pulled";
  pulled.runtime_id = "t1-1-pulled";
  pulled.known = ContainerStatus::kPulled;
  ContainerSnapshot none;
  none.name = "none";
  none.runtime_id = "t1-2-none";
  none.known = ContainerStatus::kNone;
  ContainerSnapshot failed;  // stopped before it was ever created
  failed.name = "failed";
  failed.runtime_id = "t1-3-failed";
  failed.known = ContainerStatus::kStopped;
  t.containers.push_back(pulled);
  t.containers.push_back(none);
  t.containers.push_back(failed);
  auto names = [](const json::object& task) {
    std::vector<std::string> out;
    for (const auto& c : task.at("Containers").as_array()) {
      out.emplace_back(c.as_object().at("Name").as_string());
    }
    return out;
  };
  auto v2 = taskV2(t, outside());
  EXPECT_EQ(v2["KnownStatus"], "NONE");
  EXPECT_THAT(names(v2), ElementsAre("web"));
  EXPECT_THAT(names(taskV3(t, outside())), ElementsAre("web"));
  auto v4 = taskV4(t, outside());
  EXPECT_THAT(names(v4), ElementsAre("web", "pulled"));
  EXPECT_EQ(v4["Containers"].as_array()[1].as_object()["KnownStatus"], "PULLED");
}

TEST(MetadataArn, OutsideAClusterArnsAreWellFormed) {
  auto ctx = outside();
  EXPECT_EQ(taskArn(ctx, "t1"), "arn:aws:ecs:eu-west-1:000000000000:task/local/t1");
  EXPECT_EQ(containerArn(ctx, "t1", "t1-0-web"),
            "arn:aws:ecs:eu-west-1:000000000000:container/local/t1/t1-0-web");
  EXPECT_EQ(clusterArn(ctx), "arn:aws:ecs:eu-west-1:000000000000:cluster/local");

  auto t = bridgeTask();
  auto v4 = taskV4(t, ctx);
  EXPECT_EQ(v4["TaskARN"].as_string(), taskArn(ctx, "t1"));
  EXPECT_EQ(v4["Cluster"].as_string(), clusterArn(ctx));
  auto container_arn =
      std::string(v4["Containers"].as_array()[0].as_object()["ContainerARN"].as_string());
  for (const auto& arn : {std::string(v4["TaskARN"].as_string()),
                          std::string(v4["Cluster"].as_string()), container_arn}) {
    auto parts = splitArn(arn);
    ASSERT_EQ(parts.size(), 6u) << arn;
    EXPECT_EQ(parts[0], "arn");
    EXPECT_EQ(parts[1], "aws");
    EXPECT_EQ(parts[2], "ecs");
    EXPECT_EQ(parts[3], "eu-west-1");
    EXPECT_EQ(parts[4], "000000000000");
  }
  EXPECT_EQ(splitArn(container_arn)[5], "container/local/t1/t1-0-web");
  // The task id is the ARN's last segment, as clients take it.
  auto task_arn = std::string(v4["TaskARN"].as_string());
  EXPECT_EQ(task_arn.substr(task_arn.rfind('/') + 1), "t1");
}

TEST(MetadataArn, PartitionDefaultsAndClusterGivenAsArn) {
  MetadataContext ctx;  // nothing configured
  EXPECT_EQ(taskArn(ctx, "x"), "arn:aws:ecs:us-east-1:000000000000:task/default/x");
  ctx.region = "cn-north-1";
  EXPECT_EQ(clusterArn(ctx), "arn:aws-cn:ecs:cn-north-1:000000000000:cluster/default");
  ctx.region = "us-gov-west-1";
  ctx.cluster = "arn:aws-us-gov:ecs:us-gov-west-1:123456789012:cluster/prod";
  EXPECT_EQ(clusterArn(ctx), ctx.cluster);
  EXPECT_EQ(taskArn(ctx, "x"), "arn:aws-us-gov:ecs:us-gov-west-1:000000000000:task/prod/x");
}

TEST(MetadataArn, InsideAClusterTheRealArnsAreKept) {
  MetadataContext ctx;
  ctx.cluster = "prod";
  ctx.region = "us-west-2";
  ctx.container_instance_arn = "arn:aws:ecs:us-west-2:123456789012:container-instance/prod/abcdef";
  auto t = bridgeTask();
  t.arn = "arn:aws:ecs:us-west-2:123456789012:task/prod/0123456789abcdef";
  t.id = "0123456789abcdef";
  auto v4 = taskV4(t, ctx);
  EXPECT_EQ(v4["TaskARN"].as_string(), t.arn);
  EXPECT_EQ(v4["Cluster"], "prod");  // as configured, like the real agent
  EXPECT_EQ(v4["Containers"].as_array()[0].as_object()["ContainerARN"],
            "arn:aws:ecs:us-west-2:123456789012:container/prod/0123456789abcdef/t1-0-web");
}

TEST(MetadataFile, InitialThenReady) {
  auto t = awsvpcTask();
  auto ctx = outside();
  ctx.host_private_ipv4 = "10.0.0.12";
  auto initial = containerMetadataFile(t, t.containers[0], ctx, "INITIAL");
  EXPECT_EQ(keys(initial), (Keys{"Cluster", "TaskARN", "TaskDefinitionFamily",
                                 "TaskDefinitionRevision", "ContainerName", "MetadataFileStatus",
                                 "AvailabilityZone", "HostPrivateIPv4Address"}));
  EXPECT_EQ(initial["MetadataFileStatus"], "INITIAL");
  EXPECT_EQ(initial["TaskDefinitionRevision"], "3");
  auto ready = containerMetadataFile(t, t.containers[0], ctx, "READY");
  EXPECT_EQ(
      keys(ready),
      (Keys{"Cluster", "TaskARN", "TaskDefinitionFamily", "TaskDefinitionRevision", "ContainerID",
            "ContainerName", "DockerContainerName", "ImageID", "ImageName", "PortMappings",
            "Networks", "MetadataFileStatus", "AvailabilityZone", "HostPrivateIPv4Address"}));
  EXPECT_EQ(ready["ContainerID"], "t1-0-web");
  EXPECT_EQ(ready["DockerContainerName"], "/t1-0-web");
  EXPECT_EQ(ready["PortMappings"].as_array()[0].as_object(),
            (json::object{{"ContainerPort", 8080}, {"HostPort", 8080}, {"Protocol", "tcp"}}));
  EXPECT_EQ(
      ready["Networks"].as_array()[0].as_object(),
      (json::object{{"NetworkMode", "awsvpc"}, {"IPv4Addresses", json::array{"172.31.0.5"}}}));
  ctx.container_instance_arn = "arn:aws:ecs:eu-west-1:123456789012:container-instance/local/x";
  EXPECT_EQ(
      containerMetadataFile(t, t.containers[0], ctx, "READY")["ContainerInstanceARN"].as_string(),
      ctx.container_instance_arn);
}

}  // namespace
}  // namespace ecs::metadata
