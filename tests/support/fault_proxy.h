// FaultProxy: tests/harness/fault_proxy.py in front of a harness registry, for the lifetime of
// one object. Blob downloads through it are truncated, corrupted or stalled on purpose; manifests
// and everything else pass unchanged. Stopped (SIGTERM, then SIGKILL) on destruction.
#pragma once

#include <sys/types.h>

#include <string>

namespace ecs::testing {

class FaultProxy {
 public:
  // `mode`: pass, truncate, corrupt, truncate-once, corrupt-once or stall (see fault_proxy.py).
  // `upstream`: host:port of the registry, e.g. harnessEnv().registry().
  // Throws std::runtime_error (failing the test) if the proxy does not come up within 10 s.
  FaultProxy(const std::string& upstream, const std::string& mode);
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;
  ~FaultProxy();

  // host:port to use in place of the upstream registry.
  const std::string& address() const { return address_; }
  // The proxy's counters as JSON: requests, blob_gets, truncated, corrupted, stalled.
  std::string statsJson() const;

 private:
  void stop();

  std::string dir_;
  std::string address_;
  pid_t pid_ = -1;
};

}  // namespace ecs::testing
