// A standalone task endpoint server for bench/endpoints_bench.sh: the real AgentEndpoints with
// the rate limit off, serving one synthetic task (three containers, task-role credentials)
// without containerd or the CLI. Prints "port=<p> endpoint=<id> credentials=<id>" and serves
// until SIGINT/SIGTERM.
#include <fmt/format.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>

#include "agent/endpoints/agent_endpoints.h"
#include "agent/endpoints/endpoints_resource.h"

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts

  ecs::credentials::CredentialsStore store;
  ecs::endpoints::EndpointsOptions options;
  options.task_server_port = 0;
  options.task_server_threads = threads;
  options.rate_limit = std::nullopt;
  options.introspection = false;
  options.context.cluster = "bench";
  options.context.region = "us-west-2";
  ecs::endpoints::AgentEndpoints endpoints(options, store, nullptr);

  auto task = std::make_shared<ecs::engine::TaskSnapshot>();
  task->id = "0123456789abcdef0123456789abcdef";
  task->arn = "arn:aws:ecs:us-west-2:000000000000:task/bench/" + task->id;
  task->cluster = "bench";
  task->family = "bench";
  task->revision = 1;
  task->known = ecs::engine::ContainerStatus::kRunning;
  task->started_at = std::chrono::system_clock::now();
  for (auto name : {"web", "sidecar", "log-router"}) {
    ecs::engine::ContainerSnapshot c;
    c.name = name;
    c.runtime_id = task->id + "-" + name;
    c.image = "public.ecr.aws/docker/library/nginx:latest";
    c.image_id = "sha256:" + std::string(64, 'a');
    c.known = ecs::engine::ContainerStatus::kRunning;
    c.cpu = 256;
    c.memory_mib = 512;
    c.created_at = c.started_at = std::chrono::system_clock::now();
    c.labels = {{"com.amazonaws.ecs.task-arn", task->arn},
                {"com.amazonaws.ecs.container-name", name}};
    c.resources.network_mode = "bridge";
    c.resources.ip_address = "172.31.0.2";
    task->containers.push_back(c);
  }
  auto endpoint_id = ecs::endpoints::newUuid();
  endpoints.directory().registerEndpoint(endpoint_id, task->arn, "web");
  endpoints.update(task);
  endpoints.setStateLoaded();
  ecs::aws::Credentials creds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                              std::string(300, 'T'),
                              std::chrono::system_clock::now() + std::chrono::hours(6), "bench"};
  auto credentials_id = store.add(task->arn, "arn:aws:iam::000000000000:role/bench",
                                  ecs::credentials::RoleType::kTask, creds);

  if (auto started = endpoints.start(); !started) {
    std::cerr << started.error().message << "\n";
    return 1;
  }
  std::cout << fmt::format("port={} endpoint={} credentials={}", endpoints.taskServerPort(),
                           endpoint_id, credentials_id)
            << std::endl;
  int sig = 0;
  sigwait(&signals, &sig);
  endpoints.stop();
  return 0;
}
