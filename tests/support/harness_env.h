// Test-side view of the integration harness (tests/harness/harness.sh): where its private
// containerd and registries are, a fresh containerd namespace per test, running helper commands,
// and the per-test leak check. Integration tests run under ctest's `harness` fixture, which sets
// ECS_TEST_HARNESS_ENV to the harness.env file written by `harness.sh up`.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ecs::testing {

// The KEY=VALUE pairs of harness.env. Accessors throw std::runtime_error naming the key and the
// file if a key is missing, which fails the calling test with that message.
class HarnessEnv {
 public:
  // Parses a harness.env file; throws std::runtime_error if it cannot be read.
  static HarnessEnv load(const std::string& path);

  const std::string& get(const std::string& key) const;
  bool has(const std::string& key) const { return values_.contains(key); }
  const std::string& path() const { return path_; }

  // Private containerd.
  const std::string& containerdAddress() const { return get("ECS_TEST_CONTAINERD_ADDRESS"); }
  const std::string& containerdRoot() const { return get("ECS_TEST_CONTAINERD_ROOT"); }
  const std::string& containerdState() const { return get("ECS_TEST_CONTAINERD_STATE"); }

  // Registries as host:port: anonymous, htpasswd Basic auth, Bearer token auth.
  const std::string& registry() const { return get("ECS_TEST_REGISTRY"); }
  const std::string& basicRegistry() const { return get("ECS_TEST_BASIC_REGISTRY"); }
  const std::string& tokenRegistry() const { return get("ECS_TEST_TOKEN_REGISTRY"); }
  const std::string& tokenServer() const { return get("ECS_TEST_TOKEN_SERVER"); }  // http://…/token
  // Credentials accepted by the Basic registry and the token server.
  const std::string& registryUser() const { return get("ECS_TEST_REGISTRY_USER"); }
  const std::string& registryPassword() const { return get("ECS_TEST_REGISTRY_PASSWORD"); }

  // Manifest digests as the registries serve them (identical in all three).
  const std::string& busyboxOciDigest() const { return get("ECS_TEST_IMAGE_DIGEST_BUSYBOX_OCI"); }
  const std::string& busyboxDockerDigest() const {
    return get("ECS_TEST_IMAGE_DIGEST_BUSYBOX_DOCKER");
  }
  const std::string& multiarchDigest() const { return get("ECS_TEST_IMAGE_DIGEST_MULTIARCH"); }

  const std::string& workdir() const { return get("ECS_TEST_WORKDIR"); }
  const std::string& harnessScript() const { return get("ECS_TEST_HARNESS_SH"); }
  const std::string& faultProxyScript() const { return get("ECS_TEST_FAULT_PROXY"); }

 private:
  std::string path_;
  std::map<std::string, std::string> values_;
};

// The harness of this test run, loaded once from $ECS_TEST_HARNESS_ENV. Throws
// std::runtime_error (failing the test) if the variable is unset or the file is unreadable.
const HarnessEnv& harnessEnv();

// A containerd namespace no other test uses: "t-<name>-<random hex>", valid for containerd
// (letters, digits, '-', at most 76 characters).
std::string uniqueNamespace(std::string_view test_name);

struct RunResult {
  int exit_code = -1;  // the exit status; 128 + signal if killed by a signal
  std::string out;
  std::string err;
  bool timed_out = false;

  bool ok() const { return exit_code == 0 && !timed_out; }
  // "exit 1; stdout: …; stderr: …" for assertion messages.
  std::string describe() const;
};

// Runs argv[0] (looked up on PATH) without a shell, with the current environment plus
// `env_additions` ("KEY=VALUE", overriding), capturing stdout and stderr. After `timeout` the
// command's process group is killed and `timed_out` is set. Never throws for a failing command;
// exit_code is 127 if it could not be started.
RunResult runCommand(const std::vector<std::string>& argv,
                     const std::vector<std::string>& env_additions = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Removes every image in containerd namespace `ns` of the harness (synchronous GC), so that the
// leak check that follows sees only what the test itself left.
void removeAllImages(const std::string& ns);

// A port nothing on the host holds right now (bound on 0.0.0.0 and released): for host-mode
// and static mappings, and for the agent's own servers in tests. `type`: SOCK_STREAM or
// SOCK_DGRAM.
int unusedPort(int type = SOCK_STREAM);

// Runs `harness.sh check-leaks WORKDIR NS` and ADD_FAILUREs with its report if anything (an
// image, container, task, lease, snapshot, content or ingest) is left in namespace `ns`.
void expectNoLeaks(const std::string& ns);

}  // namespace ecs::testing
