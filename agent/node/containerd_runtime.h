// The engine's ContainerRuntime and ImageSource over containerd: the ContainerdClient and the
// ImagePuller, plus the one piece of mount(2) work the engine needs (reading an image's
// /etc/passwd and /etc/group from a throwaway read-only snapshot).
#pragma once

#include "agent/engine/container_runtime.h"
#include "agent/images/image_puller.h"
#include "agent/runtime/containerd_client.h"

namespace ecs::node {

class ContainerdRuntime : public engine::ContainerRuntime {
 public:
  explicit ContainerdRuntime(runtime::ContainerdClient& client) : client_(client) {}

  Result<void> createContainer(const runtime::ContainerSpec& spec) override;
  Result<uint32_t> startTask(const std::string& id, const std::string& stdout_path,
                             const std::string& stderr_path,
                             const std::map<std::string, std::string>& log_options) override;
  Result<void> killTask(const std::string& id, int signal, bool all) override;
  Result<void> deleteTask(const std::string& id) override;
  Result<void> deleteContainer(const std::string& id) override;
  Result<int> exec(const std::string& id, const std::string& exec_id,
                   const std::string& process_spec_json, const std::string& output_path,
                   std::chrono::milliseconds timeout) override;
  Result<engine::UserIds> resolveUser(const std::string& id, const std::string& image_chain_id,
                                      const std::string& user) override;
  Result<engine::RuntimeContainerState> inspect(const std::string& id) override;
  void onExit(std::function<void(const std::string& id, uint32_t exit_status)> cb) override;
  void onOom(std::function<void(const std::string& id)> cb) override;

 private:
  runtime::ContainerdClient& client_;
};

class PullerImageSource : public engine::ImageSource {
 public:
  explicit PullerImageSource(images::ImagePuller& puller) : puller_(puller) {}

  Result<images::ResolvedImage> resolveLocal(const images::ImageReference& image) override;
  Result<images::ResolvedImage> pull(const images::ImageReference& image,
                                     const engine::PullLimits& limits) override;

 private:
  images::ImagePuller& puller_;
};

}  // namespace ecs::node
