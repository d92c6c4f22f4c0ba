#include "agent/metadata/stats_sampler.h"

namespace ecs::metadata {

struct StatsSampler::Impl {
  StatsSamplerOptions options;
};

StatsSampler::StatsSampler(boost::asio::io_context&, StatsSamplerOptions options)
    : impl_(std::make_unique<Impl>(Impl{std::move(options)})) {}
StatsSampler::~StatsSampler() = default;
void StatsSampler::update(const engine::TaskSnapshotPtr&) {}
void StatsSampler::start() {}
void StatsSampler::stop() {}
std::optional<boost::json::object> StatsSampler::containerStats(std::string_view, bool) const {
  return std::nullopt;
}
boost::json::object StatsSampler::taskStats(const engine::TaskSnapshot&, bool) const {
  return {};
}

}  // namespace ecs::metadata
