// The OCI spec of an ECS container: every container-definition field lands where runc reads it,
// with Docker's precedence rules and defaults, and anything that cannot be honoured is an error
// naming the field.
#include "agent/engine/container_spec.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ecs::engine {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

Strings strings(const json::value& v) {
  Strings out;
  for (const auto& item : v.as_array()) out.emplace_back(item.as_string());
  return out;
}

bool has(const Strings& v, const std::string& s) {
  return std::ranges::find(v, s) != v.end();
}

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

class ContainerSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/container_spec_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "container");
    fs::create_directories(dir_ / "host");
    write(dir_ / "host/resolv.conf",
          "# host resolver\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\n"
          "options ndots:2\n");
    write(dir_ / "host/hosts", "127.0.0.1 localhost\n10.1.1.1 hostbox\n");

    container_.name = "web";
    container_.image = "busybox";
    task_.family = "fam";
    task_.network_mode = "bridge";

    inputs_.task = &task_;
    inputs_.container = &container_;
    inputs_.image.cmd = {"/bin/sh"};
    inputs_.image.env = {"PATH=/usr/bin:/bin", "IMAGE=1", "SHARED=image"};
    inputs_.task_id = "0123abcd";
    inputs_.runtime_id = "4f1c2d3e4b5a69788796a5b4c3d2e1f0";
    inputs_.container_dir = (dir_ / "container").string();
    inputs_.host_resolv_conf = (dir_ / "host/resolv.conf").string();
    inputs_.host_hosts = (dir_ / "host/hosts").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  LinuxParameters& linuxParameters() {
    if (!container_.linux_parameters) container_.linux_parameters.emplace();
    return *container_.linux_parameters;
  }

  json::object spec() {
    auto text = buildContainerSpec(inputs_);
    EXPECT_TRUE(text) << text.error().message;
    return text ? json::parse(*text).as_object() : json::object{};
  }

  Error error() {
    auto text = buildContainerSpec(inputs_);
    EXPECT_FALSE(text);
    return text ? Error{} : text.error();
  }

  static const json::object* mountAt(const json::object& spec, std::string_view destination) {
    for (const auto& m : spec.at("mounts").as_array()) {
      if (m.at("destination").as_string() == destination) return &m.as_object();
    }
    return nullptr;
  }

  static Strings namespaceTypes(const json::object& spec) {
    Strings out;
    for (const auto& ns : spec.at("linux").at("namespaces").as_array()) {
      out.emplace_back(ns.at("type").as_string());
    }
    return out;
  }

  static const json::object* namespaceOf(const json::object& spec, std::string_view type) {
    for (const auto& ns : spec.at("linux").at("namespaces").as_array()) {
      if (ns.at("type").as_string() == type) return &ns.as_object();
    }
    return nullptr;
  }

  static Strings env(const json::object& spec) { return strings(spec.at("process").at("env")); }

  fs::path dir_;
  TaskDefinition task_;
  ContainerDefinition container_;
  ContainerSpecInputs inputs_;
};

// --- process ------------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, EntryPointReplacesTheImagesAndDropsItsCmd) {
  inputs_.image.entrypoint = {"/entry"};
  inputs_.image.cmd = {"image-arg"};
  EXPECT_EQ(strings(spec()["process"].at("args")), (Strings{"/entry", "image-arg"}));

  container_.command = {"my-arg"};
  EXPECT_EQ(strings(spec()["process"].at("args")), (Strings{"/entry", "my-arg"}));

  container_.entry_point = {"/bin/app", "-v"};
  container_.command.clear();
  EXPECT_EQ(strings(spec()["process"].at("args")), (Strings{"/bin/app", "-v"}));

  container_.command = {"run"};
  EXPECT_EQ(strings(spec()["process"].at("args")), (Strings{"/bin/app", "-v", "run"}));
}

TEST_F(ContainerSpecTest, WorkingDirectoryAndTerminal) {
  inputs_.image.working_dir = "/srv";
  EXPECT_EQ(spec()["process"].at("cwd"), "/srv");
  container_.working_directory = "/app";
  container_.interactive = true;
  container_.pseudo_terminal = true;  // unsupported for unattended runs: no terminal, no error
  auto s = spec();
  EXPECT_EQ(s["process"].at("cwd"), "/app");
  EXPECT_EQ(s["process"].at("terminal"), false);
}

// --- environment --------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, EnvironmentPrecedence) {
  write(dir_ / "a.env",
        "\xEF\xBB\xBF# comment\n\n  FROM_A=a\nSHARED=file-a\nDUP=first\nDUP=last\nIMPORTED\n"
        "SPACES= kept as is \r\nEMPTY=\n");
  write(dir_ / "b.env", "SHARED=file-b\nFROM_B=b\nDUP=other-file\n");
  container_.environment_files = {{(dir_ / "a.env").string(), "s3"},
                                  {(dir_ / "b.env").string(), "s3"}};
  inputs_.environment_files_dir = dir_.string();
  container_.environment = {{"SHARED", "environment"}, {"MINE", "1"}};
  inputs_.extra_env = {"MINE=agent", "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x"};

  const auto e = env(spec());
  EXPECT_TRUE(has(e, "PATH=/usr/bin:/bin"));
  EXPECT_TRUE(has(e, "IMAGE=1"));
  EXPECT_TRUE(has(e, "FROM_A=a"));
  EXPECT_TRUE(has(e, "FROM_B=b"));
  EXPECT_TRUE(has(e, "DUP=last"));  // last line of the first file that sets it
  EXPECT_TRUE(has(e, "SPACES= kept as is "));
  EXPECT_TRUE(has(e, "EMPTY="));
  EXPECT_TRUE(has(e, "SHARED=environment"));
  EXPECT_TRUE(has(e, "MINE=agent"));
  EXPECT_TRUE(has(e, "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x"));
  EXPECT_TRUE(has(e, "HOSTNAME=4f1c2d3e4b5a"));
  for (const auto& entry : e) EXPECT_FALSE(entry.starts_with("IMPORTED")) << entry;
  EXPECT_EQ(std::ranges::count_if(e, [](const auto& s) { return s.starts_with("SHARED="); }), 1);
}

TEST_F(ContainerSpecTest, UnreadableEnvironmentFileIsNamed) {
  container_.environment_files = {{(dir_ / "missing.env").string(), "s3"}};
  inputs_.environment_files_dir = dir_.string();
  const auto err = error();
  EXPECT_EQ(err.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(err.message.find("container \"web\": environmentFiles[0]: "), std::string::npos)
      << err.message;
  EXPECT_NE(err.message.find("missing.env: No such file or directory"), std::string::npos)
      << err.message;
}

TEST_F(ContainerSpecTest, LocalEnvironmentFilesComeOnlyFromTheAllowedDirectory) {
  fs::create_directories(dir_ / "allowed");
  write(dir_ / "secret.env", "SECRET=planted-value\n");
  write(dir_ / "allowed" / "ok.env", "FINE=1\n");
  fs::create_symlink(dir_ / "secret.env", dir_ / "allowed" / "link.env");
  fs::create_symlink("../secret.env", dir_ / "allowed" / "relative-link.env");
  auto refused = [&](const fs::path& path, const std::string& why) {
    container_.environment_files = {{path.string(), "s3"}};
    const auto err = error();
    EXPECT_NE(err.message.find(why), std::string::npos) << err.message;
    EXPECT_EQ(err.message.find("planted"), std::string::npos) << err.message;
  };
  // None allowed unless a directory is configured.
  refused(dir_ / "allowed" / "ok.env", "ECS_ENVIRONMENT_FILES_DIR");
  inputs_.environment_files_dir = (dir_ / "allowed").string();
  refused(dir_ / "secret.env", "not beneath");
  refused(dir_ / "allowed" / ".." / "secret.env", "not beneath");
  refused(dir_ / "allowed" / "link.env", "a link leads out");
  refused(dir_ / "allowed" / "relative-link.env", "a link leads out");
  refused(dir_ / "allowed", "not a regular file");
  write(dir_ / "allowed" / "huge.env", std::string((1 << 20) + 1, 'x'));
  refused(dir_ / "allowed" / "huge.env", "larger than");

  container_.environment_files = {{(dir_ / "allowed" / "ok.env").string(), "s3"}};
  EXPECT_TRUE(has(env(spec()), "FINE=1"));
}

TEST_F(ContainerSpecTest, MalformedEnvironmentFileNamesTheLine) {
  write(dir_ / "bad.env", "OK=1\nBAD KEY=2\n");
  container_.environment_files = {{(dir_ / "bad.env").string(), "s3"}};
  inputs_.environment_files_dir = dir_.string();
  const auto err = error();
  EXPECT_NE(err.message.find("bad.env line 2: the variable name contains whitespace"),
            std::string::npos)
      << err.message;
  EXPECT_EQ(err.message.find("BAD KEY"), std::string::npos) << "a file's content is never quoted";

  container_.environment_files = {{"arn:aws:s3:::bucket/x.env", "s3"}};
  EXPECT_NE(error().message.find("not supported"), std::string::npos);
}

// --- user ---------------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, NumericUserAndGroupNeedNoImageFiles) {
  container_.user = "1000:2000";
  inputs_.resolve_user = [](const std::string& user) -> Result<UserIds> {
    ADD_FAILURE() << "resolver called for " << user;
    return UserIds{};
  };
  const auto user = spec()["process"].at("user").as_object();
  EXPECT_EQ(user.at("uid"), 1000);
  EXPECT_EQ(user.at("gid"), 2000);
  EXPECT_FALSE(user.contains("additionalGids"));
  for (const char* root : {"", "root", "0"}) {  // nor does root
    container_.user = root;
    EXPECT_EQ(spec()["process"].at("user"), (json::object{{"uid", 0}, {"gid", 0}})) << root;
  }
}

TEST_F(ContainerSpecTest, NamesAndBareUidsAreResolvedInTheImage) {
  Strings asked;
  inputs_.resolve_user = [&](const std::string& user) -> Result<UserIds> {
    asked.push_back(user);
    if (user == "nobody2") {
      return fail(ErrorCode::kInvalidArgument,
                  "user \"nobody2\" not found in the image's /etc/passwd");
    }
    return UserIds{1000, 1001, {50, 999}};
  };
  container_.user = "app";
  auto user = spec()["process"].at("user").as_object();
  EXPECT_EQ(user.at("uid"), 1000);
  EXPECT_EQ(user.at("gid"), 1001);
  EXPECT_EQ(user.at("additionalGids"), (json::array{50, 999}));

  container_.user = "1000";
  spec();
  container_.user.clear();
  inputs_.image.user = "app:staff";  // the image's user when the definition has none
  spec();
  EXPECT_EQ(asked, (Strings{"app", "1000", "app:staff"}));

  container_.user = "nobody2";
  const auto err = error();
  EXPECT_EQ(err.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(err.message,
            "container \"web\": user: user \"nobody2\" not found in the image's /etc/passwd");
}

TEST_F(ContainerSpecTest, WithoutAResolverNumericUsersAndRootWork) {
  container_.user = "1234";
  auto user = spec()["process"].at("user").as_object();
  EXPECT_EQ(user.at("uid"), 1234);
  EXPECT_EQ(user.at("gid"), 0);
  container_.user.clear();
  user = spec()["process"].at("user").as_object();
  EXPECT_EQ(user.at("uid"), 0);
  container_.user = "app";
  EXPECT_EQ(error().code, ErrorCode::kInvalidArgument);
}

// --- capabilities and security ------------------------------------------------------------------

TEST_F(ContainerSpecTest, DefaultCapabilitiesAndSeccomp) {
  auto s = spec();
  const auto& caps = s["process"].at("capabilities").as_object();
  EXPECT_EQ(strings(caps.at("bounding")).size(), 14u);
  EXPECT_EQ(caps.at("effective"), caps.at("bounding"));
  EXPECT_EQ(caps.at("permitted"), caps.at("bounding"));
  EXPECT_FALSE(caps.contains("inheritable"));
  EXPECT_FALSE(caps.contains("ambient"));
  EXPECT_EQ(s["process"].at("noNewPrivileges"), false);

  const auto& seccomp = s["linux"].at("seccomp").as_object();
  EXPECT_EQ(seccomp.at("defaultAction"), "SCMP_ACT_ERRNO");
  EXPECT_EQ(seccomp.at("defaultErrnoRet"), 1);
  EXPECT_FALSE(s["linux"].at("maskedPaths").as_array().empty());
  EXPECT_FALSE(s["linux"].at("readonlyPaths").as_array().empty());
}

bool seccompAllows(const json::object& spec, std::string_view name) {
  for (const auto& rule : spec.at("linux").at("seccomp").at("syscalls").as_array()) {
    const auto& r = rule.as_object();
    if (r.at("action") != "SCMP_ACT_ALLOW" || r.contains("args")) continue;
    for (const auto& n : r.at("names").as_array()) {
      if (n.as_string() == name) return true;
    }
  }
  return false;
}

TEST_F(ContainerSpecTest, CapabilityChangesReachCapsAndSeccomp) {
  EXPECT_FALSE(seccompAllows(spec(), "mount"));
  linuxParameters().capabilities_add = {"SYS_ADMIN", "cap_net_admin"};
  linuxParameters().capabilities_drop = {"MKNOD", "CAP_CHOWN"};
  auto s = spec();
  const auto bounding = strings(s["process"].at("capabilities").at("bounding"));
  EXPECT_TRUE(has(bounding, "CAP_SYS_ADMIN"));
  EXPECT_TRUE(has(bounding, "CAP_NET_ADMIN"));
  EXPECT_FALSE(has(bounding, "CAP_MKNOD"));
  EXPECT_FALSE(has(bounding, "CAP_CHOWN"));
  EXPECT_TRUE(seccompAllows(s, "mount"));
  EXPECT_TRUE(seccompAllows(s, "unshare"));

  linuxParameters().capabilities_add = {"FLY"};
  const auto err = error();
  EXPECT_EQ(err.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(err.message,
            "container \"web\": linuxParameters: capabilities.add: unknown capability \"FLY\"");
}

TEST_F(ContainerSpecTest, DropAllAddsBackOnlyWhatIsListed) {
  linuxParameters().capabilities_drop = {"ALL"};
  linuxParameters().capabilities_add = {"NET_BIND_SERVICE"};
  auto s = spec();
  EXPECT_EQ(strings(s["process"].at("capabilities").at("bounding")),
            Strings{"CAP_NET_BIND_SERVICE"});
  EXPECT_FALSE(seccompAllows(s, "chroot"));  // CAP_SYS_CHROOT gone
}

TEST_F(ContainerSpecTest, PrivilegedIsUnconfined) {
  container_.privileged = true;
  linuxParameters().capabilities_drop = {"ALL"};  // ignored, as by Docker
  auto s = spec();
  const auto bounding = strings(s["process"].at("capabilities").at("bounding"));
  EXPECT_GT(bounding.size(), 30u);
  EXPECT_TRUE(has(bounding, "CAP_SYS_ADMIN"));
  const auto& linux_section = s["linux"].as_object();
  EXPECT_FALSE(linux_section.contains("seccomp"));
  EXPECT_FALSE(linux_section.contains("maskedPaths"));
  EXPECT_FALSE(linux_section.contains("readonlyPaths"));
  EXPECT_EQ(linux_section.at("resources").at("devices"),
            (json::array{json::object{{"allow", true}, {"access", "rwm"}}}));
  EXPECT_FALSE(has(strings(mountAt(s, "/sys")->at("options")), "ro"));
  EXPECT_FALSE(has(strings(mountAt(s, "/sys/fs/cgroup")->at("options")), "ro"));
  // Every host device, /dev/null among them.
  bool null_seen = false;
  for (const auto& d : linux_section.at("devices").as_array()) {
    if (d.at("path") == "/dev/null") {
      null_seen = true;
      EXPECT_EQ(d.at("type"), "c");
      EXPECT_EQ(d.at("major"), 1);
      EXPECT_EQ(d.at("minor"), 3);
    }
    EXPECT_FALSE(d.at("path").as_string().starts_with("/dev/pts/"));
  }
  EXPECT_TRUE(null_seen);
}

TEST_F(ContainerSpecTest, SecurityOptions) {
  container_.docker_security_options = {"no-new-privileges", "apparmor:docker-default",
                                        "label=type:svirt_apache_t", "seccomp=unconfined"};
  auto s = spec();
  EXPECT_EQ(s["process"].at("noNewPrivileges"), true);
  EXPECT_FALSE(s["linux"].as_object().contains("seccomp"));
  EXPECT_TRUE(s["linux"].as_object().contains("maskedPaths"));

  container_.docker_security_options = {"seccomp:unconfined", "no-new-privileges:false",
                                        "systempaths=unconfined"};
  s = spec();
  EXPECT_EQ(s["process"].at("noNewPrivileges"), false);
  EXPECT_FALSE(s["linux"].as_object().contains("seccomp"));
  EXPECT_FALSE(s["linux"].as_object().contains("maskedPaths"));

  container_.docker_security_options = {"seccomp=/profile.json"};
  EXPECT_NE(error().message.find("dockerSecurityOptions[0]: custom seccomp profiles"),
            std::string::npos);
  container_.docker_security_options = {"no-new-privileges", "bogus"};
  EXPECT_NE(error().message.find("dockerSecurityOptions[1]: invalid security option \"bogus\""),
            std::string::npos);
}

// --- init, mounts -------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, InitProcessRunsTheHostsTiniAsPid1) {
  write(dir_ / "tini", "#!/bin/sh\n");
  ::chmod((dir_ / "tini").c_str(), 0755);
  inputs_.init_binary = (dir_ / "tini").string();
  container_.command = {"/app", "--flag"};
  linuxParameters().init_process_enabled = true;
  auto s = spec();
  EXPECT_EQ(strings(s["process"].at("args")), (Strings{"/sbin/ecs-init", "--", "/app", "--flag"}));
  const auto* init = mountAt(s, "/sbin/ecs-init");
  ASSERT_NE(init, nullptr);
  EXPECT_EQ(init->at("source").as_string(), inputs_.init_binary);
  EXPECT_EQ(init->at("type"), "bind");
  EXPECT_EQ(strings(init->at("options")), (Strings{"bind", "ro"}));

  inputs_.init_binary = (dir_ / "no-tini").string();
  const auto err = error();
  EXPECT_EQ(err.code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(err.message.find("initProcessEnabled"), std::string::npos);
}

TEST_F(ContainerSpecTest, SharedMemorySize) {
  auto s = spec();
  EXPECT_TRUE(has(strings(mountAt(s, "/dev/shm")->at("options")), "size=65536k"));  // 64 MiB
  linuxParameters().shared_memory_size_mib = 256;
  s = spec();
  const auto* shm = mountAt(s, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->at("type"), "tmpfs");
  EXPECT_TRUE(has(strings(shm->at("options")), "size=268435456"));
  EXPECT_TRUE(has(strings(shm->at("options")), "mode=1777"));
}

TEST_F(ContainerSpecTest, TmpfsMountsMergeOptionsAsDocker) {
  linuxParameters().tmpfs = {{"/run", 64, {"exec", "mode=0700", "defaults"}},
                             {"/run/sub", 8, {"ro", "size=4m"}}};
  auto s = spec();
  const auto* run = mountAt(s, "/run");
  ASSERT_NE(run, nullptr);
  EXPECT_EQ(run->at("type"), "tmpfs");
  EXPECT_EQ(strings(run->at("options")),
            (Strings{"nosuid", "nodev", "rprivate", "size=64m", "exec", "mode=0700"}));
  const auto* sub = mountAt(s, "/run/sub");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(strings(sub->at("options")),
            (Strings{"noexec", "nosuid", "nodev", "rprivate", "ro", "size=4m"}));

  linuxParameters().tmpfs = {{"/run", 64, {"sizes=1"}}};
  EXPECT_NE(error().message.find("linuxParameters.tmpfs[0]: invalid tmpfs option \"sizes=1\""),
            std::string::npos);
}

TEST_F(ContainerSpecTest, ExtraMountsWinAndParentsComeFirst) {
  inputs_.extra_mounts = {{"/data/logs", "bind", "/host/logs", {"rbind"}},
                          {"/data", "bind", "/host/data", {"rbind"}},
                          {"/etc/hosts", "bind", "/host/hosts", {"rbind", "ro"}}};
  auto s = spec();
  std::vector<std::string> destinations;
  for (const auto& m : s["mounts"].as_array()) {
    destinations.emplace_back(m.at("destination").as_string());
  }
  const auto pos = [&](const std::string& d) {
    return std::ranges::find(destinations, d) - destinations.begin();
  };
  EXPECT_LT(pos("/data"), pos("/data/logs"));
  EXPECT_EQ(std::ranges::count(destinations, "/etc/hosts"), 1);
  EXPECT_EQ(mountAt(s, "/etc/hosts")->at("source"), "/host/hosts");

  linuxParameters().tmpfs = {{"/data", 1, {}}};
  EXPECT_NE(error().message.find("duplicate mount point /data"), std::string::npos);
}

// --- devices ------------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, DevicesAreStatedOnTheHost) {
  linuxParameters().devices = {{"/dev/null", "/dev/mynull", {"read", "write"}},
                               {"/dev/zero", "", {}}};
  auto s = spec();
  const auto& devices = s["linux"].at("devices").as_array();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].at("path"), "/dev/mynull");
  EXPECT_EQ(devices[0].at("type"), "c");
  EXPECT_EQ(devices[0].at("major"), 1);
  EXPECT_EQ(devices[0].at("minor"), 3);
  EXPECT_EQ(devices[1].at("path"), "/dev/zero");
  const auto& rules = s["linux"].at("resources").at("devices").as_array();
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0], (json::object{{"allow", false}, {"access", "rwm"}}));
  EXPECT_EQ(
      rules[1],
      (json::object{{"allow", true}, {"type", "c"}, {"major", 1}, {"minor", 3}, {"access", "rw"}}));
  EXPECT_EQ(rules[2].at("access"), "rwm");
  EXPECT_EQ(rules[2].at("minor"), 5);
}

TEST_F(ContainerSpecTest, MissingOrNonDeviceIsAnError) {
  linuxParameters().devices = {{"/dev/does-not-exist", "", {}}};
  auto err = error();
  EXPECT_EQ(err.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(err.message.find("linuxParameters.devices[0]: host device /dev/does-not-exist"),
            std::string::npos)
      << err.message;
  write(dir_ / "plain", "x");
  linuxParameters().devices = {{(dir_ / "plain").string(), "/dev/x", {}}};
  EXPECT_NE(error().message.find("is not a device"), std::string::npos);
  linuxParameters().devices = {{"/dev/null", "", {"execute"}}};
  EXPECT_NE(error().message.find("unknown permission \"execute\""), std::string::npos);
}

// --- resources ----------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, CpuSharesAreClampedAsTheRealAgentDoes) {
  EXPECT_EQ(spec()["linux"].at("resources").at("cpu").at("shares"), 2);  // 0 or 1 -> 2
  container_.cpu = 512;
  EXPECT_EQ(spec()["linux"].at("resources").at("cpu").at("shares"), 512);
  container_.cpu = 300000;
  EXPECT_EQ(spec()["linux"].at("resources").at("cpu").at("shares"), 262144);
}

TEST_F(ContainerSpecTest, MemoryLimitAndReservation) {
  EXPECT_FALSE(spec()["linux"].at("resources").as_object().contains("memory"));
  container_.memory_mib = 512;
  container_.memory_reservation_mib = 128;
  auto memory = spec()["linux"].at("resources").at("memory").as_object();
  EXPECT_EQ(memory.at("limit"), 512 * 1024 * 1024);
  EXPECT_EQ(memory.at("reservation"), 128 * 1024 * 1024);
  EXPECT_FALSE(memory.contains("swap"));
  container_.memory_mib = 2;
  EXPECT_EQ(spec()["linux"].at("resources").at("memory").at("limit"), 4 * 1024 * 1024);
}

TEST_F(ContainerSpecTest, SwapLimits) {
  if (!fs::exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")) {
    GTEST_SKIP() << "no cgroup v1 swap accounting on this host: swap settings are dropped";
  }
  container_.memory_mib = 100;
  linuxParameters().max_swap_mib = 50;
  auto memory = spec()["linux"].at("resources").at("memory").as_object();
  EXPECT_EQ(memory.at("swap"), 150 * 1024 * 1024);
  EXPECT_EQ(memory.at("swappiness"), 60);  // ECS's default
  linuxParameters().swappiness = 0;
  EXPECT_EQ(spec()["linux"].at("resources").at("memory").at("swappiness"), 0);
  linuxParameters().max_swap_mib = -1;
  EXPECT_EQ(spec()["linux"].at("resources").at("memory").at("swap"), -1);
  container_.memory_mib.reset();
  EXPECT_NE(error().message.find("maxSwap needs a container memory limit"), std::string::npos);
}

TEST_F(ContainerSpecTest, Ulimits) {
  container_.ulimits = {{"nofile", 1024, 4096}, {"CORE", -1, -1}};
  const auto rlimits = spec()["process"].at("rlimits").as_array();
  ASSERT_EQ(rlimits.size(), 2u);
  EXPECT_EQ(rlimits[0], (json::object{{"type", "RLIMIT_NOFILE"}, {"hard", 4096}, {"soft", 1024}}));
  EXPECT_EQ(rlimits[1].at("type"), "RLIMIT_CORE");
  EXPECT_EQ(rlimits[1].at("hard").as_uint64(), UINT64_MAX);

  container_.ulimits = {{"nofile", 10, 5}};
  EXPECT_NE(error().message.find("ulimits[0]: nofile soft limit 10 is above the hard limit 5"),
            std::string::npos);
  container_.ulimits = {{"files", 10, 10}};
  EXPECT_NE(error().message.find("ulimits[0]: unknown ulimit \"files\""), std::string::npos);
}

TEST_F(ContainerSpecTest, SystemControls) {
  container_.system_controls = {{"net.core.somaxconn", "1024"}, {"kernel.shmmax", "4096"}};
  auto sysctl = spec()["linux"].at("sysctl").as_object();
  EXPECT_EQ(sysctl.at("net.core.somaxconn"), "1024");
  EXPECT_EQ(sysctl.at("kernel.shmmax"), "4096");

  task_.network_mode = "host";
  EXPECT_NE(error().message.find("net.core.somaxconn is not allowed with the host's network"),
            std::string::npos);
  task_.network_mode = "bridge";
  task_.ipc_mode = "host";
  EXPECT_NE(error().message.find("kernel.shmmax is not allowed with the host's IPC"),
            std::string::npos);
  task_.ipc_mode.clear();
  container_.system_controls = {{"vm.swappiness", "1"}};
  EXPECT_NE(error().message.find("systemControls[0]: vm.swappiness is not in a kernel namespace"),
            std::string::npos);
}

TEST_F(ContainerSpecTest, ReadonlyRootfsAndCgroupsPath) {
  EXPECT_EQ(spec()["root"].at("readonly"), false);
  container_.readonly_root_filesystem = true;
  inputs_.cgroups_path = "/ecs/0123abcd/web";
  auto s = spec();
  EXPECT_EQ(s["root"].at("readonly"), true);
  EXPECT_EQ(s["linux"].at("cgroupsPath"), "/ecs/0123abcd/web");
  EXPECT_TRUE(has(strings(mountAt(s, "/etc/resolv.conf")->at("options")), "ro"));
}

TEST_F(ContainerSpecTest, DockerLabelsAreNotSpecContent) {
  container_.docker_labels = {{"team", "unique-label-value"}};
  auto text = buildContainerSpec(inputs_);
  ASSERT_TRUE(text);
  EXPECT_EQ(text->find("unique-label-value"), std::string::npos);
}

// --- namespaces and network files ---------------------------------------------------------------

TEST_F(ContainerSpecTest, DefaultNamespacesAndNetnsPath) {
  auto s = spec();
  EXPECT_EQ(namespaceTypes(s), (Strings{"pid", "ipc", "uts", "mount", "network"}));
  EXPECT_FALSE(namespaceOf(s, "network")->contains("path"));
  inputs_.netns_path = "/var/run/netns/task";
  EXPECT_EQ(namespaceOf(spec(), "network")->at("path"), "/var/run/netns/task");
  container_.disable_networking = true;  // loopback only, whatever the task has
  EXPECT_FALSE(namespaceOf(spec(), "network")->contains("path"));
}

TEST_F(ContainerSpecTest, HostModes) {
  task_.network_mode = "host";
  task_.pid_mode = "host";
  task_.ipc_mode = "host";
  inputs_.netns_path = "/var/run/netns/ignored";
  auto s = spec();
  EXPECT_EQ(namespaceTypes(s), (Strings{"uts", "mount"}));
  const auto* shm = mountAt(s, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->at("type"), "bind");
  EXPECT_EQ(shm->at("source"), "/dev/shm");

  container_.disable_networking = true;
  EXPECT_EQ(namespaceTypes(spec()), (Strings{"uts", "mount", "network"}));

  task_.pid_mode = "task";  // like the default until task namespaces exist
  task_.ipc_mode = "none";
  s = spec();
  EXPECT_TRUE(has(namespaceTypes(s), "pid"));
  EXPECT_TRUE(has(namespaceTypes(s), "ipc"));
  EXPECT_EQ(mountAt(s, "/dev/shm"), nullptr);
}

TEST_F(ContainerSpecTest, NetworkFilesInBridgeMode) {
  container_.extra_hosts = {{"db", "10.0.0.5"}};
  inputs_.ip_address = "172.17.0.4";
  auto s = spec();
  EXPECT_EQ(s["hostname"], "4f1c2d3e4b5a");
  const fs::path dir = inputs_.container_dir;
  for (const char* name : {"hosts", "resolv.conf", "hostname"}) {
    const auto* m = mountAt(s, std::string("/etc/") + name);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ(m->at("type"), "bind");
    EXPECT_EQ(m->at("source").as_string(), (dir / name).string());
    EXPECT_EQ(strings(m->at("options")), (Strings{"rbind", "rprivate"}));
  }
  EXPECT_EQ(readText(dir / "hostname"), "4f1c2d3e4b5a\n");
  const auto hosts = readText(dir / "hosts");
  EXPECT_TRUE(hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost"));
  EXPECT_NE(hosts.find("10.0.0.5\tdb\n"), std::string::npos);
  EXPECT_TRUE(hosts.ends_with("172.17.0.4\t4f1c2d3e4b5a\n"));
  // The host's loopback resolver is unreachable from the container's namespace.
  EXPECT_EQ(readText(dir / "resolv.conf"),
            "# host resolver\nnameserver 10.0.0.2\nsearch corp.example\noptions ndots:2\n");
}

TEST_F(ContainerSpecTest, ResolvConfFallsBackToPublicDns) {
  write(inputs_.host_resolv_conf, "nameserver 127.0.0.1\nnameserver ::1\n");
  spec();
  EXPECT_EQ(readText(fs::path(inputs_.container_dir) / "resolv.conf"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
}

TEST_F(ContainerSpecTest, DnsSettingsBuildResolvConf) {
  container_.dns_servers = {"1.1.1.1", "9.9.9.9"};
  container_.dns_search_domains = {"a.example", "b.example"};
  container_.hostname = "myhost";
  auto s = spec();
  EXPECT_EQ(s["hostname"], "myhost");
  EXPECT_TRUE(has(env(s), "HOSTNAME=myhost"));
  const fs::path dir = inputs_.container_dir;
  EXPECT_EQ(readText(dir / "resolv.conf"),
            "search a.example b.example\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n"
            "options ndots:2\n");
  EXPECT_TRUE(readText(dir / "hosts").ends_with("127.0.0.1\tmyhost\n"));
}

TEST_F(ContainerSpecTest, HostNetworkCopiesTheHostsFiles) {
  task_.network_mode = "host";
  container_.extra_hosts = {{"db", "10.0.0.5"}};
  auto s = spec();
  char name[256] = {};
  ASSERT_EQ(::gethostname(name, sizeof(name) - 1), 0);
  EXPECT_EQ(s["hostname"].as_string(), name);
  const fs::path dir = inputs_.container_dir;
  EXPECT_EQ(readText(dir / "hosts"), "127.0.0.1 localhost\n10.1.1.1 hostbox\n10.0.0.5\tdb\n");
  EXPECT_EQ(readText(dir / "resolv.conf"), readText(inputs_.host_resolv_conf));
}

TEST_F(ContainerSpecTest, NoContainerDirMeansNoNetworkFiles) {
  inputs_.container_dir.clear();
  auto s = spec();
  EXPECT_EQ(mountAt(s, "/etc/hosts"), nullptr);
  EXPECT_EQ(mountAt(s, "/etc/resolv.conf"), nullptr);
}

TEST_F(ContainerSpecTest, MissingDefinitionsAreAnError) {
  inputs_.container = nullptr;
  EXPECT_EQ(error().code, ErrorCode::kInvalidArgument);
}

// --- exec ---------------------------------------------------------------------------------------

TEST_F(ContainerSpecTest, ExecProcessRunsAsTheContainer) {
  inputs_.resolve_user = [](const std::string&) -> Result<UserIds> {
    return UserIds{1000, 1001, {50}};
  };
  container_.user = "app";
  container_.environment = {{"MODE", "prod"}};
  container_.docker_security_options = {"no-new-privileges"};
  linuxParameters().capabilities_add = {"NET_ADMIN"};
  container_.ulimits = {{"nofile", 100, 200}};
  auto text = buildExecProcess(inputs_, {"/bin/check", "--health"});
  ASSERT_TRUE(text) << text.error().message;
  const auto process = json::parse(*text).as_object();
  EXPECT_EQ(strings(process.at("args")), (Strings{"/bin/check", "--health"}));
  EXPECT_EQ(process.at("user").at("uid"), 1000);
  EXPECT_EQ(process.at("user").at("additionalGids"), (json::array{50}));
  EXPECT_TRUE(has(strings(process.at("env")), "MODE=prod"));
  EXPECT_TRUE(has(strings(process.at("capabilities").at("bounding")), "CAP_NET_ADMIN"));
  EXPECT_EQ(process.at("noNewPrivileges"), true);
  EXPECT_EQ(process.at("rlimits").as_array().size(), 1u);
  EXPECT_FALSE(buildExecProcess(inputs_, {}));
}

}  // namespace
}  // namespace ecs::engine
