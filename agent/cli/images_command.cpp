// `ecs-node-agent images pull|ls|rm`: operators pre-pull images before a host registers.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "agent/cli/commands.h"
#include "agent/node/node.h"

namespace ecs::cli {
namespace {

constexpr const char* kUsage =
    "usage: ecs-node-agent images pull REF [REF...]\n"
    "       ecs-node-agent images ls [-q]\n"
    "       ecs-node-agent images rm REF [REF...]\n";

int pullImages(images::ImagePuller& puller, const Args& refs) {
  int status = 0;
  for (const auto& text : refs) {
    auto reference = images::ImageReference::parse(text);
    if (!reference) {
      fmt::print(stderr, "error: {}\n", reference.error().message);
      status = 1;
      continue;
    }
    auto started = std::chrono::steady_clock::now();
    auto pulled = puller.pull(*reference);
    if (!pulled) {
      fmt::print(stderr, "error: {}\n", pulled.error().message);
      status = 1;
      continue;
    }
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    const auto& stats = pulled->stats;
    fmt::print(
        "{}: pulled {} ({} blobs, {:.1f} MiB fetched, {} present; {} layers unpacked) in {} ms\n",
        reference->str(), pulled->image.target.digest, stats.blobs_fetched,
        static_cast<double>(stats.bytes_fetched) / (1 << 20), stats.blobs_present,
        stats.layers_unpacked, elapsed.count());
  }
  return status;
}

int listImages(images::ImagePuller& puller, bool quiet) {
  auto records = puller.list();
  if (!records) {
    fmt::print(stderr, "error: list images: {}\n", records.error().message);
    return 1;
  }
  if (quiet) {
    for (const auto& record : *records) fmt::print("{}\n", record.name);
    return 0;
  }
  fmt::print("{:<60} {:<9} {:<72} {}\n", "REF", "TYPE", "DIGEST", "CREATED");
  for (const auto& record : *records) {
    std::string_view type = record.target.media_type.find("index") != std::string::npos ||
                                    record.target.media_type.find("list") != std::string::npos
                                ? "index"
                                : "manifest";
    fmt::print("{:<60} {:<9} {:<72} {:%Y-%m-%dT%H:%M:%SZ}\n", record.name, type,
               record.target.digest,
               std::chrono::time_point_cast<std::chrono::seconds>(record.created_at));
  }
  return 0;
}

int removeImages(images::ImagePuller& puller, const Args& refs) {
  int status = 0;
  for (const auto& text : refs) {
    auto reference = images::ImageReference::parse(text);
    auto removed = reference ? puller.remove(*reference) : Result<void>(fail(reference.error()));
    if (!removed) {
      fmt::print(stderr, "error: {}\n", removed.error().message);
      status = 1;
      continue;
    }
    fmt::print("{}: removed\n", reference->str());
  }
  return status;
}

}  // namespace

int imagesCommand(const config::Config& config, const Args& args) {
  if (args.empty()) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  const std::string& verb = args[0];
  Args rest(args.begin() + 1, args.end());
  bool known = verb == "pull" || verb == "ls" || verb == "list" || verb == "rm" || verb == "remove";
  if (!known || ((verb == "pull" || verb == "rm" || verb == "remove") && rest.empty())) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  auto services = node::connectImageServices(config);
  if (!services) {
    fmt::print(stderr, "error: {}\n", services.error().message);
    return 1;
  }
  if (verb == "pull") return pullImages(*services->puller, rest);
  if (verb == "rm" || verb == "remove") return removeImages(*services->puller, rest);
  return listImages(*services->puller, !rest.empty() && rest[0] == "-q");
}

}  // namespace ecs::cli
