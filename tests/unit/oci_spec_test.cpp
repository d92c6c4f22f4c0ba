// OCI spec builder and image config parsing: field mapping, Docker's override rules for
// entrypoint/command/env, user and working directory checks, and the defaults runc gets.
#include "agent/runtime/oci_spec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>

namespace ecs::runtime {
namespace {

namespace json = boost::json;

using Strings = std::vector<std::string>;

Strings strings(const json::value& v) {
  Strings out;
  for (const auto& item : v.as_array()) out.emplace_back(item.as_string());
  return out;
}

json::object specOf(const SpecInputs& in) {
  auto spec = buildOciSpec(in);
  EXPECT_TRUE(spec) << spec.error().message;
  return spec ? json::parse(*spec).as_object() : json::object{};
}

SpecInputs withArgs(Strings args) {
  SpecInputs in;
  in.image.cmd = std::move(args);
  return in;
}

constexpr const char* kDockerConfig = R"({
  "architecture": "amd64",
  "os": "linux",
  "config": {
    "User": "1000:1000",
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "WorkingDir": "/srv",
    "Labels": {"maintainer": "someone", "version": "1"},
    "StopSignal": "SIGQUIT",
    "ExposedPorts": {"80/tcp": {}}
  },
  "rootfs": {"type": "layers", "diff_ids": ["sha256:aaa", "sha256:bbb"]},
  "history": [{"created_by": "x"}]
})";

TEST(ParseImageConfig, ReadsTheFieldsTheAgentUses) {
  auto config = parseImageConfig(kDockerConfig);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->os, "linux");
  EXPECT_EQ(config->architecture, "amd64");
  EXPECT_EQ(config->user, "1000:1000");
  EXPECT_EQ(config->env, (Strings{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}));
  EXPECT_EQ(config->entrypoint, Strings{"/docker-entrypoint.sh"});
  EXPECT_EQ(config->cmd, (Strings{"nginx", "-g", "daemon off;"}));
  EXPECT_EQ(config->working_dir, "/srv");
  EXPECT_EQ(config->stop_signal, "SIGQUIT");
  EXPECT_EQ(config->labels.at("maintainer"), "someone");
  EXPECT_EQ(config->diff_ids, (Strings{"sha256:aaa", "sha256:bbb"}));
}

TEST(ParseImageConfig, NullAndMissingFieldsAreEmpty) {
  auto config = parseImageConfig(
      R"({"os":"linux","config":{"Entrypoint":null,"Cmd":["sh"],"Env":null,"Labels":null}})");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_TRUE(config->entrypoint.empty());
  EXPECT_EQ(config->cmd, Strings{"sh"});
  EXPECT_TRUE(config->env.empty());
  EXPECT_TRUE(config->labels.empty());
  EXPECT_TRUE(config->diff_ids.empty());

  auto bare = parseImageConfig(R"({"architecture":"arm64","os":"linux"})");
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(bare->architecture, "arm64");
  EXPECT_TRUE(bare->cmd.empty());
}

TEST(ParseImageConfig, RejectsMalformedInput) {
  for (const char* text : {"", "[]", "{", R"({"config":{"Cmd":"sh"}})", R"({"config":{"Env":[1]}})",
                           R"({"config":{"User":5}})", R"({"config":"x"})"}) {
    auto config = parseImageConfig(text);
    EXPECT_FALSE(config) << text;
    if (!config) {
      EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument) << text;
    }
  }
}

TEST(ResolveProcess, ImageEntrypointAndCmdConcatenate) {
  SpecInputs in;
  in.image.entrypoint = {"/entry"};
  in.image.cmd = {"serve", "--port=80"};
  auto p = resolveProcess(in);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->args, (Strings{"/entry", "serve", "--port=80"}));
}

TEST(ResolveProcess, DefinitionCommandReplacesCmdOnly) {
  SpecInputs in;
  in.image.entrypoint = {"/entry"};
  in.image.cmd = {"serve"};
  in.command = {"migrate", "--all"};
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->args, (Strings{"/entry", "migrate", "--all"}));
}

TEST(ResolveProcess, DefinitionEntryPointReplacesEntrypointAndDropsImageCmd) {
  SpecInputs in;
  in.image.entrypoint = {"/entry"};
  in.image.cmd = {"serve"};
  in.entrypoint = {"/bin/sh", "-c"};
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->args, (Strings{"/bin/sh", "-c"}));

  in.command = {"echo hi"};
  p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->args, (Strings{"/bin/sh", "-c", "echo hi"}));
}

TEST(ResolveProcess, NothingToRunIsAnError) {
  auto p = resolveProcess(SpecInputs{});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error().message.find("no command"), std::string::npos);
}

TEST(ResolveProcess, EnvMergesDefinitionOverImageOverDefaults) {
  SpecInputs in = withArgs({"app"});
  in.hostname = "web";
  in.image.env = {"LANG=C", "MODE=image", "EMPTY="};
  in.env = {"MODE=definition", "EXTRA=1", "LANG"};  // "LANG" without '=' removes it
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->env, (Strings{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "HOSTNAME=web", "MODE=definition", "EMPTY=", "EXTRA=1"}));
}

TEST(ResolveProcess, ImagePathReplacesTheDefaultPath) {
  SpecInputs in = withArgs({"app"});
  in.image.env = {"PATH=/opt/bin"};
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->env, Strings{"PATH=/opt/bin"});
}

TEST(ResolveProcess, WorkingDirectoryPrecedenceAndValidation) {
  SpecInputs in = withArgs({"app"});
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->cwd, "/");
  in.image.working_dir = "/srv";
  p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->cwd, "/srv");
  in.working_dir = "/data";
  p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->cwd, "/data");
  in.working_dir = "relative";
  p = resolveProcess(in);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument);
}

TEST(ResolveProcess, NumericUsers) {
  struct Case {
    std::string user;
    uint32_t uid, gid;
  };
  for (const auto& c : std::vector<Case>{{"", 0, 0},
                                         {"root", 0, 0},
                                         {"0", 0, 0},
                                         {"1000", 1000, 0},
                                         {"1000:2000", 1000, 2000},
                                         {"root:5", 0, 5}}) {
    SpecInputs in = withArgs({"app"});
    in.image.user = c.user;
    auto p = resolveProcess(in);
    ASSERT_TRUE(p) << c.user << ": " << p.error().message;
    EXPECT_EQ(p->uid, c.uid) << c.user;
    EXPECT_EQ(p->gid, c.gid) << c.user;
  }
  SpecInputs in = withArgs({"app"});
  in.image.user = "1000";
  in.user = "33:33";  // the definition's user wins
  auto p = resolveProcess(in);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->uid, 33u);
  EXPECT_EQ(p->gid, 33u);
  for (const char* bad : {"nginx", "1000:staff", "1000:", "-1", "12x"}) {
    in.user = bad;
    p = resolveProcess(in);
    ASSERT_FALSE(p) << bad;
    EXPECT_EQ(p.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(BuildOciSpec, DefaultsRuncNeeds) {
  auto spec = specOf(withArgs({"sh"}));
  EXPECT_EQ(spec.at("ociVersion").as_string(), "1.0.2");
  EXPECT_EQ(spec.at("root").at("path").as_string(), "rootfs");
  EXPECT_FALSE(spec.at("root").at("readonly").as_bool());
  EXPECT_FALSE(spec.contains("hostname"));

  const auto& process = spec.at("process").as_object();
  EXPECT_FALSE(process.at("terminal").as_bool());
  EXPECT_FALSE(process.at("noNewPrivileges").as_bool());
  EXPECT_EQ(strings(process.at("args")), Strings{"sh"});
  EXPECT_EQ(process.at("cwd").as_string(), "/");
  EXPECT_EQ(process.at("user").at("uid").as_int64(), 0);
  EXPECT_FALSE(process.contains("rlimits"));  // inherited unless asked for
  const auto& caps = process.at("capabilities").as_object();
  for (const char* set : {"bounding", "effective", "permitted"}) {
    EXPECT_EQ(strings(caps.at(set)), defaultCapabilities()) << set;
  }
  EXPECT_FALSE(caps.contains("inheritable"));
  EXPECT_FALSE(caps.contains("ambient"));
  EXPECT_EQ(defaultCapabilities().size(), 14u);

  const auto& linux_section = spec.at("linux").as_object();
  Strings namespaces;
  for (const auto& ns : linux_section.at("namespaces").as_array()) {
    namespaces.emplace_back(ns.at("type").as_string());
    EXPECT_FALSE(ns.as_object().contains("path"));
  }
  EXPECT_EQ(namespaces, (Strings{"pid", "ipc", "uts", "mount", "network"}));
  EXPECT_FALSE(linux_section.contains("cgroupsPath"));
  const auto& devices = linux_section.at("resources").at("devices").as_array();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_FALSE(devices[0].at("allow").as_bool());
  EXPECT_EQ(devices[0].at("access").as_string(), "rwm");
  auto masked = strings(linux_section.at("maskedPaths"));
  EXPECT_NE(std::find(masked.begin(), masked.end(), "/proc/kcore"), masked.end());
  EXPECT_NE(std::find(masked.begin(), masked.end(), "/sys/firmware"), masked.end());
  EXPECT_EQ(strings(linux_section.at("readonlyPaths")),
            (Strings{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}));

  Strings destinations;
  for (const auto& m : spec.at("mounts").as_array()) {
    destinations.emplace_back(m.at("destination").as_string());
  }
  EXPECT_EQ(destinations, (Strings{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                                   "/sys/fs/cgroup"}));
}

TEST(BuildOciSpec, OverridesAndResources) {
  SpecInputs in = withArgs({"app"});
  in.hostname = "web-1";
  in.cgroups_path = "/ecs/task-1/web-1";
  in.netns_path = "/var/run/netns/task-1";
  in.readonly_rootfs = true;
  in.rlimits = {{"RLIMIT_NOFILE", 1024, 4096}};
  in.annotations = {{"com.amazonaws.ecs.task-arn", "arn:aws:ecs:task/1"}};
  in.mounts = {{"/data", "bind", "/var/lib/ecs/volumes/data", {"rbind", "rw"}},
               {"/dev/shm", "tmpfs", "shm", {"nosuid", "nodev", "size=1g"}}};
  auto spec = specOf(in);
  EXPECT_EQ(spec.at("hostname").as_string(), "web-1");
  EXPECT_TRUE(spec.at("root").at("readonly").as_bool());
  EXPECT_EQ(spec.at("linux").at("cgroupsPath").as_string(), "/ecs/task-1/web-1");
  const auto& namespaces = spec.at("linux").at("namespaces").as_array();
  EXPECT_EQ(namespaces.back().at("type").as_string(), "network");
  EXPECT_EQ(namespaces.back().at("path").as_string(), "/var/run/netns/task-1");
  const auto& rlimits = spec.at("process").at("rlimits").as_array();
  ASSERT_EQ(rlimits.size(), 1u);
  EXPECT_EQ(rlimits[0].at("type").as_string(), "RLIMIT_NOFILE");
  EXPECT_EQ(rlimits[0].at("soft").to_number<uint64_t>(), 1024u);
  EXPECT_EQ(rlimits[0].at("hard").to_number<uint64_t>(), 4096u);
  EXPECT_EQ(spec.at("annotations").at("com.amazonaws.ecs.task-arn").as_string(),
            "arn:aws:ecs:task/1");

  // The extra /dev/shm replaces the default one; /data is added.
  int shm = 0;
  bool data = false;
  for (const auto& m : spec.at("mounts").as_array()) {
    if (m.at("destination").as_string() == "/dev/shm") {
      ++shm;
      EXPECT_EQ(strings(m.at("options")), (Strings{"nosuid", "nodev", "size=1g"}));
    }
    if (m.at("destination").as_string() == "/data") {
      data = true;
      EXPECT_EQ(m.at("type").as_string(), "bind");
      EXPECT_EQ(m.at("source").as_string(), "/var/lib/ecs/volumes/data");
    }
  }
  EXPECT_EQ(shm, 1);
  EXPECT_TRUE(data);

  in.mounts = {{"relative", "bind", "/x", {}}};
  auto bad = buildOciSpec(in);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(BuildOciSpec, FromAParsedImageConfig) {
  auto config = parseImageConfig(kDockerConfig);
  ASSERT_TRUE(config);
  SpecInputs in;
  in.image = *config;
  in.env = {"LANG=en_US.UTF-8"};
  auto spec = specOf(in);
  const auto& process = spec.at("process").as_object();
  EXPECT_EQ(strings(process.at("args")),
            (Strings{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}));
  EXPECT_EQ(strings(process.at("env")),
            (Strings{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=en_US.UTF-8"}));
  EXPECT_EQ(process.at("cwd").as_string(), "/srv");
  EXPECT_EQ(process.at("user").at("uid").as_int64(), 1000);
  EXPECT_EQ(process.at("user").at("gid").as_int64(), 1000);
}

TEST(BuildExecProcessSpec, KeepsTheContainersIdentityWithNewArgs) {
  SpecInputs in = withArgs({"server"});
  in.user = "1000:1000";
  in.working_dir = "/app";
  in.env = {"TOKEN=abc"};
  auto text = buildExecProcessSpec(in, {"curl", "-f", "http://localhost/"});
  ASSERT_TRUE(text) << text.error().message;
  auto process = json::parse(*text).as_object();
  EXPECT_EQ(strings(process.at("args")), (Strings{"curl", "-f", "http://localhost/"}));
  EXPECT_EQ(process.at("cwd").as_string(), "/app");
  EXPECT_EQ(process.at("user").at("uid").as_int64(), 1000);
  auto env = strings(process.at("env"));
  EXPECT_NE(std::find(env.begin(), env.end(), "TOKEN=abc"), env.end());
  EXPECT_FALSE(process.at("terminal").as_bool());

  // The container's own command does not matter to an exec.
  auto no_command = buildExecProcessSpec(SpecInputs{}, {"true"});
  ASSERT_TRUE(no_command) << no_command.error().message;
  auto empty = buildExecProcessSpec(in, {});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ecs::runtime
