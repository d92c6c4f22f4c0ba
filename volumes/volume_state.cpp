#include "volumes/volume_state.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "agent/common/replace_file.h"

namespace ecs::volumes {

namespace json = boost::json;

Result<VolumeState> VolumeState::load(std::string path) {
  VolumeState state(path);
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return state;
    return fail(ErrorCode::kInternal, "read {}: {}", path, std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = parse(text.str());
  if (!parsed) return fail(parsed.error().wrap(path));
  state.mounts_ = std::move(parsed->mounts);
  state.owners_ = std::move(parsed->owners);
  return state;
}

TrackedMount* VolumeState::find(const std::string& target) {
  auto it = std::ranges::find(mounts_, target, &TrackedMount::target);
  return it == mounts_.end() ? nullptr : &*it;
}

void VolumeState::add(TrackedMount mount) {
  remove(mount.target);
  mounts_.push_back(std::move(mount));
}

void VolumeState::remove(const std::string& target) {
  std::erase_if(mounts_, [&](const TrackedMount& m) { return m.target == target; });
}

std::string VolumeState::toJson() const {
  json::array mounts;
  for (const auto& m : mounts_) {
    json::array tasks;
    for (const auto& t : m.tasks) tasks.emplace_back(t);
    mounts.push_back(json::object{
        {"target", m.target}, {"volume", m.volume}, {"kind", m.kind}, {"tasks", std::move(tasks)}});
  }
  json::object owners;
  for (const auto& [task, process] : owners_) {
    owners[task] = json::object{{"pid", process.pid}, {"start_time", process.start_time}};
  }
  return json::serialize(
      json::object{{"version", 1}, {"mounts", std::move(mounts)}, {"owners", std::move(owners)}});
}

Result<VolumeState::Parsed> VolumeState::parse(const std::string& text) {
  boost::system::error_code ec;
  auto value = json::parse(text, ec);
  if (ec) return fail(ErrorCode::kDataLoss, "malformed volume state: {}", ec.message());
  Parsed parsed;
  auto& out = parsed.mounts;
  try {
    for (const auto& m : value.at("mounts").as_array()) {
      const auto& o = m.as_object();
      TrackedMount mount;
      mount.target = json::value_to<std::string>(o.at("target"));
      mount.volume = json::value_to<std::string>(o.at("volume"));
      mount.kind = json::value_to<std::string>(o.at("kind"));
      for (const auto& t : o.at("tasks").as_array()) {
        mount.tasks.push_back(json::value_to<std::string>(t));
      }
      out.push_back(std::move(mount));
    }
    if (const auto* owners = value.as_object().if_contains("owners")) {
      for (const auto& [task, record] : owners->as_object()) {
        const auto& o = record.as_object();
        parsed.owners[std::string(task)] = ProcessIdentity{
            json::value_to<int>(o.at("pid")), json::value_to<uint64_t>(o.at("start_time"))};
      }
    }
  } catch (const std::exception& e) {
    return fail(ErrorCode::kDataLoss, "malformed volume state: {}", e.what());
  }
  return parsed;
}

Result<void> VolumeState::save() const {
  return replaceFile(path_, toJson(), 0600);
}

}  // namespace ecs::volumes
