#include "agent/metadata/task_metadata.h"

#include <fmt/format.h>

#include <cstdio>
#include <ctime>
#include <optional>
#include <vector>

namespace ecs::metadata {
namespace {

namespace json = boost::json;
using engine::ContainerSnapshot;
using engine::ContainerStatus;
using engine::TaskSnapshot;

std::string_view regionOf(const MetadataContext& ctx) {
  return ctx.region.empty() ? std::string_view("us-east-1") : std::string_view(ctx.region);
}

std::string_view partitionOf(std::string_view region) {
  if (region.starts_with("cn-")) return "aws-cn";
  if (region.starts_with("us-gov-")) return "aws-us-gov";
  if (region.starts_with("us-iso-")) return "aws-iso";
  if (region.starts_with("us-isob-")) return "aws-iso-b";
  return "aws";
}

// The cluster's name: the configured value, or its last segment when it was given as an ARN.
std::string_view clusterName(const MetadataContext& ctx) {
  std::string_view cluster = ctx.cluster;
  if (cluster.starts_with("arn:")) {
    auto slash = cluster.find(":cluster/");
    if (slash != std::string_view::npos) return cluster.substr(slash + 9);
  }
  return cluster.empty() ? std::string_view("default") : cluster;
}

// The six fields of an ARN, when `arn` is one (arn:partition:service:region:account:resource).
struct Arn {
  std::string_view partition, service, region, account, resource;
};
std::optional<Arn> parseArn(std::string_view arn) {
  std::string_view parts[5];
  if (!arn.starts_with("arn:")) return std::nullopt;
  arn.remove_prefix(4);
  for (int i = 0; i < 4; ++i) {
    auto colon = arn.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    parts[i] = arn.substr(0, colon);
    arn.remove_prefix(colon + 1);
  }
  parts[4] = arn;
  if (parts[0].empty() || parts[1].empty() || parts[4].empty()) return std::nullopt;
  return Arn{parts[0], parts[1], parts[2], parts[3], parts[4]};
}

bool insideCluster(const TaskSnapshot& task, const MetadataContext& ctx) {
  auto arn = parseArn(task.arn);
  return !ctx.container_instance_arn.empty() && arn && arn->resource.starts_with("task/");
}

std::string taskIdOf(const TaskSnapshot& task) {
  if (!task.id.empty()) return task.id;
  auto slash = task.arn.rfind('/');
  return slash == std::string::npos ? task.arn : task.arn.substr(slash + 1);
}

// The task's ARN: the one ACS gave when it is one, else one built from the context.
std::string taskArnOf(const TaskSnapshot& task, const MetadataContext& ctx) {
  auto arn = parseArn(task.arn);
  if (arn && arn->resource.starts_with("task/")) return task.arn;
  return taskArn(ctx, taskIdOf(task));
}

// The snapshot has no container ARN (ACS sends one; the engine does not keep it), so it is built
// in the task ARN's partition, region and account: the shape clients parse, not the ACS value.
std::string containerArnOf(const TaskSnapshot& task, const ContainerSnapshot& c,
                           const MetadataContext& ctx) {
  auto arn = parseArn(task.arn);
  if (!arn || !arn->resource.starts_with("task/"))
    return containerArn(ctx, taskIdOf(task), c.runtime_id);
  std::string_view resource = arn->resource.substr(5);  // "<cluster>/<id>" or "<id>" (old form)
  auto slash = resource.rfind('/');
  std::string_view cluster =
      slash == std::string_view::npos ? clusterName(ctx) : resource.substr(0, slash);
  return fmt::format("arn:{}:ecs:{}:{}:container/{}/{}/{}", arn->partition, arn->region,
                     arn->account, cluster, taskIdOf(task), c.runtime_id);
}

// The Cluster key: as configured inside a cluster (the real agent's behaviour); outside one an
// ARN, so that it parses like the task ARN does.
std::string clusterOf(const TaskSnapshot& task, const MetadataContext& ctx) {
  if (insideCluster(task, ctx)) return ctx.cluster.empty() ? task.cluster : ctx.cluster;
  return clusterArn(ctx);
}

// Task statuses are the real agent's TaskStatus names; it has no PULLED (a task whose containers
// are pulled is still NONE to it).
std::string_view taskStatus(ContainerStatus status) {
  if (status == ContainerStatus::kPulled) return "NONE";
  return engine::toString(status);
}

std::string networkModeOf(const TaskSnapshot& task, const ContainerSnapshot& c) {
  if (!c.resources.network_mode.empty()) return c.resources.network_mode;
  if (!task.network_mode.empty()) return task.network_mode;
  return "bridge";  // the ECS default on Linux
}

bool isAwsvpc(const TaskSnapshot& task, const ContainerSnapshot& c) {
  return networkModeOf(task, c) == "awsvpc";
}

void putTime(json::object& out, std::string_view key,
             const std::optional<std::chrono::system_clock::time_point>& time) {
  if (time) out[key] = rfc3339(*time);
}

// One entry per port (ranges expanded, as Docker reports them), in awsvpc with HostPort equal to
// ContainerPort as the real agent reports it.
json::array ports(const TaskSnapshot& task, const ContainerSnapshot& c, bool v4) {
  json::array out;
  bool awsvpc = isAwsvpc(task, c);
  auto add = [&](int container_port, int host_port, const engine::NetworkBinding& b) {
    json::object p;
    if (container_port > 0) p["ContainerPort"] = container_port;
    if (!b.protocol.empty()) p["Protocol"] = b.protocol;
    int host = awsvpc ? container_port : host_port;
    if (host > 0) p["HostPort"] = host;
    if (v4 && !awsvpc && !b.bind_ip.empty()) p["HostIp"] = b.bind_ip;
    out.push_back(std::move(p));
  };
  auto range = [](std::string_view text) -> std::optional<std::pair<int, int>> {
    int lo = 0, hi = 0;
    if (std::sscanf(std::string(text).c_str(), "%d-%d", &lo, &hi) != 2 || lo <= 0 || hi < lo ||
        hi > 65535) {
      return std::nullopt;
    }
    return std::pair{lo, hi};
  };
  for (const auto& b : c.resources.network_bindings) {
    if (b.container_port_range.empty()) {
      add(b.container_port, b.host_port, b);
      continue;
    }
    auto cr = range(b.container_port_range);
    if (!cr) continue;
    auto hr = range(b.host_port_range);
    for (int port = cr->first; port <= cr->second; ++port) {
      int host = hr ? hr->first + (port - cr->first) : 0;
      if (hr && host > hr->second) host = 0;
      add(port, host, b);
    }
  }
  return out;
}

// "172.31.0.1" + "172.31.0.0/24" -> "172.31.0.1/24": the real agent reports the gateway with the
// subnet's prefix length.
std::string gatewayWithPrefix(const std::string& gateway, const std::string& subnet) {
  if (gateway.empty() || gateway.find('/') != std::string::npos) return gateway;
  auto slash = subnet.find('/');
  return slash == std::string::npos ? gateway : gateway + subnet.substr(slash);
}

// The EC2 private DNS name of an address: ip-a-b-c-d.ec2.internal in us-east-1, else
// ip-a-b-c-d.<region>.compute.internal. The snapshot has no ENI, so this is derived.
std::string privateDnsName(const std::string& ip, const MetadataContext& ctx) {
  std::string host = "ip-" + ip;
  for (auto& ch : host) {
    if (ch == '.') ch = '-';
  }
  std::string_view region = regionOf(ctx);
  if (region == "us-east-1") return host + ".ec2.internal";
  return fmt::format("{}.{}.compute.internal", host, region);
}

json::array networks(const TaskSnapshot& task, const ContainerSnapshot& c,
                     const MetadataContext& ctx, bool v4) {
  const auto& r = c.resources;
  std::string mode = networkModeOf(task, c);
  json::object n;
  n["NetworkMode"] = mode;
  if (!r.ip_address.empty()) n["IPv4Addresses"] = json::array{json::string(r.ip_address)};
  if (v4 && mode == "awsvpc") {
    n["AttachmentIndex"] = 0;
    if (!r.ipv4_subnet.empty()) n["IPv4SubnetCIDRBlock"] = r.ipv4_subnet;
    if (!r.ip_address.empty()) n["PrivateDNSName"] = privateDnsName(r.ip_address, ctx);
    auto gateway = gatewayWithPrefix(r.ipv4_gateway, r.ipv4_subnet);
    if (!gateway.empty()) n["SubnetGatewayIpv4Address"] = gateway;
  }
  return json::array{std::move(n)};
}

json::array volumes(const ContainerSnapshot& c) {
  json::array out;
  for (const auto& m : c.resources.mounts) {
    json::object v;
    if (!m.source.empty()) v["Source"] = m.source;
    if (!m.destination.empty()) v["Destination"] = m.destination;
    out.push_back(std::move(v));
  }
  return out;
}

// The snapshot does not say whether the definition has a health check; a container has one when
// the engine has checked it or holds a status other than UNKNOWN.
std::optional<json::object> health(const ContainerSnapshot& c) {
  if (c.health == engine::HealthStatus::kUnknown && !c.health_checked_at) return std::nullopt;
  json::object h;
  if (c.health != engine::HealthStatus::kUnknown) h["status"] = engine::toString(c.health);
  if (c.health_checked_at) h["statusSince"] = rfc3339(*c.health_checked_at);
  if (!c.health_output.empty()) h["output"] = c.health_output;
  return h;
}

enum class Version { kV2, kV3, kV4 };

json::object container(const TaskSnapshot& task, const ContainerSnapshot& c,
                       const MetadataContext& ctx, Version version) {
  bool v4 = version == Version::kV4;
  json::object o;
  o["DockerId"] = c.runtime_id;
  o["Name"] = c.name;
  // No Docker here: the containerd container ID is the name a `docker ps` would show.
  o["DockerName"] = c.runtime_id;
  o["Image"] = c.image;
  o["ImageID"] = c.image_id;
  if (auto p = ports(task, c, v4); !p.empty()) o["Ports"] = std::move(p);
  if (!c.labels.empty()) {
    json::object labels;
    for (const auto& [k, v] : c.labels) labels[k] = v;
    o["Labels"] = std::move(labels);
  }
  o["DesiredStatus"] = engine::toString(c.desired);
  o["KnownStatus"] = engine::toString(c.known);
  if (c.exit_code) o["ExitCode"] = *c.exit_code;
  o["Limits"] =
      json::object{{"CPU", static_cast<double>(c.cpu)}, {"Memory", c.memory_mib.value_or(0)}};
  putTime(o, "CreatedAt", c.created_at);
  putTime(o, "StartedAt", c.started_at);
  putTime(o, "FinishedAt", c.finished_at);
  o["Type"] = "NORMAL";
  // v2 reports networks of awsvpc tasks only (it has no other source); v3 and v4 always.
  if (version != Version::kV2 || isAwsvpc(task, c)) o["Networks"] = networks(task, c, ctx, v4);
  if (auto h = health(c)) o["Health"] = std::move(*h);
  if (auto v = volumes(c); !v.empty()) o["Volumes"] = std::move(v);
  if (v4) {
    if (!c.log_driver.empty()) o["LogDriver"] = c.log_driver;
    if (!c.log_options.empty()) {
      json::object options;
      for (const auto& [k, v] : c.log_options) options[k] = v;
      o["LogOptions"] = std::move(options);
    }
    o["ContainerARN"] = containerArnOf(task, c, ctx);
    if (c.restart_count > 0) o["RestartCount"] = c.restart_count;
  }
  return o;
}

// v2/v3 list containers that exist in the runtime (have been created); v4 also lists the ones
// that are only pulled, as the real agent does. Not-yet-pulled ones are in none.
bool listed(const ContainerSnapshot& c, Version version) {
  switch (c.known) {
    case ContainerStatus::kCreated:
    case ContainerStatus::kRunning:
      return true;
    case ContainerStatus::kStopped:
      return c.created_at.has_value();
    case ContainerStatus::kManifestPulled:
    case ContainerStatus::kPulled:
      return version == Version::kV4;
    case ContainerStatus::kNone:
      return false;
  }
  return false;
}

json::object task(const TaskSnapshot& t, const MetadataContext& ctx, Version version) {
  json::object o;
  o["Cluster"] = clusterOf(t, ctx);
  o["TaskARN"] = taskArnOf(t, ctx);
  o["Family"] = t.family;
  o["Revision"] = std::to_string(t.revision);  // a string in the real agent
  o["DesiredStatus"] = taskStatus(t.desired);
  o["KnownStatus"] = taskStatus(t.known);
  json::array containers;
  for (const auto& c : t.containers) {
    if (listed(c, version)) containers.push_back(container(t, c, ctx, version));
  }
  if (!containers.empty()) o["Containers"] = std::move(containers);
  if (t.cpu_units.value_or(0) > 0 || t.memory_mib.value_or(0) > 0) {
    json::object limits;
    if (t.cpu_units.value_or(0) > 0) limits["CPU"] = *t.cpu_units / 1024.0;
    if (t.memory_mib.value_or(0) > 0) limits["Memory"] = *t.memory_mib;
    o["Limits"] = std::move(limits);
  }
  putTime(o, "PullStartedAt", t.pull_started_at);
  putTime(o, "PullStoppedAt", t.pull_stopped_at);
  putTime(o, "ExecutionStoppedAt", t.stopped_at);
  if (!ctx.availability_zone.empty()) o["AvailabilityZone"] = ctx.availability_zone;
  if (version == Version::kV4) {
    if (!ctx.launch_type.empty()) o["LaunchType"] = ctx.launch_type;
    o["FaultInjectionEnabled"] = false;
  }
  return o;
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  auto ns = duration_cast<nanoseconds>(time.time_since_epoch()).count();
  auto secs = ns / 1'000'000'000;
  auto frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (frac != 0) {
    std::string digits = fmt::format("{:09}", frac);
    while (digits.back() == '0') digits.pop_back();
    out += "." + digits;
  }
  return out + "Z";
}

std::string clusterArn(const MetadataContext& ctx) {
  if (parseArn(ctx.cluster)) return ctx.cluster;
  auto region = regionOf(ctx);
  return fmt::format("arn:{}:ecs:{}:{}:cluster/{}", partitionOf(region), region, ctx.account_id,
                     clusterName(ctx));
}

std::string taskArn(const MetadataContext& ctx, std::string_view task_id) {
  auto region = regionOf(ctx);
  return fmt::format("arn:{}:ecs:{}:{}:task/{}/{}", partitionOf(region), region, ctx.account_id,
                     clusterName(ctx), task_id);
}

std::string containerArn(const MetadataContext& ctx, std::string_view task_id,
                         std::string_view runtime_id) {
  auto region = regionOf(ctx);
  return fmt::format("arn:{}:ecs:{}:{}:container/{}/{}/{}", partitionOf(region), region,
                     ctx.account_id, clusterName(ctx), task_id, runtime_id);
}

json::object containerV2(const TaskSnapshot& t, const ContainerSnapshot& c,
                         const MetadataContext& ctx) {
  return container(t, c, ctx, Version::kV2);
}
json::object taskV2(const TaskSnapshot& t, const MetadataContext& ctx) {
  return task(t, ctx, Version::kV2);
}
json::object containerV3(const TaskSnapshot& t, const ContainerSnapshot& c,
                         const MetadataContext& ctx) {
  return container(t, c, ctx, Version::kV3);
}
json::object taskV3(const TaskSnapshot& t, const MetadataContext& ctx) {
  return task(t, ctx, Version::kV3);
}
json::object containerV4(const TaskSnapshot& t, const ContainerSnapshot& c,
                         const MetadataContext& ctx) {
  return container(t, c, ctx, Version::kV4);
}
json::object taskV4(const TaskSnapshot& t, const MetadataContext& ctx) {
  return task(t, ctx, Version::kV4);
}

// INITIAL is written at create, before the container exists in the runtime: task fields and the
// container's name only. READY (after start) adds what the runtime knows, as the real agent's
// Docker-inspect step does. Every key is omitted when empty.
json::object containerMetadataFile(const TaskSnapshot& t, const ContainerSnapshot& c,
                                   const MetadataContext& ctx, std::string_view file_status) {
  json::object o;
  auto put = [&o](std::string_view key, std::string_view value) {
    if (!value.empty()) o[key] = value;
  };
  bool ready = file_status == "READY";
  put("Cluster", clusterOf(t, ctx));
  put("ContainerInstanceARN", ctx.container_instance_arn);
  put("TaskARN", taskArnOf(t, ctx));
  put("TaskDefinitionFamily", t.family);
  if (t.revision > 0) put("TaskDefinitionRevision", std::to_string(t.revision));
  if (ready) put("ContainerID", c.runtime_id);
  put("ContainerName", c.name);
  if (ready) {
    put("DockerContainerName", "/" + c.runtime_id);
    put("ImageID", c.image_id);
    put("ImageName", c.image);
    json::array mappings;
    for (const auto& b : c.resources.network_bindings) {
      json::object p;
      if (b.container_port > 0) p["ContainerPort"] = b.container_port;
      if (!b.container_port_range.empty()) p["ContainerPortRange"] = b.container_port_range;
      int host = isAwsvpc(t, c) ? b.container_port : b.host_port;
      if (host > 0) p["HostPort"] = host;
      if (!b.bind_ip.empty()) p["BindIp"] = b.bind_ip;
      p["Protocol"] = b.protocol.empty() ? "tcp" : b.protocol;
      mappings.push_back(std::move(p));
    }
    if (!mappings.empty()) o["PortMappings"] = std::move(mappings);
    o["Networks"] = networks(t, c, ctx, /*v4=*/false);
  }
  put("MetadataFileStatus", file_status);
  put("AvailabilityZone", ctx.availability_zone);
  put("HostPrivateIPv4Address", ctx.host_private_ipv4);
  put("HostPublicIPv4Address", ctx.host_public_ipv4);
  return o;
}

}  // namespace ecs::metadata
