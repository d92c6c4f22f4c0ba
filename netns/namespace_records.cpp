#include "netns/namespace_records.h"

#include <boost/json.hpp>
#include <map>

#include "netns/allocation_file.h"

namespace ecs::netns {
namespace {

namespace json = boost::json;

struct NamespaceOwner {
  ProcessIdentity process;
};

// Sorted, so the file's bytes depend only on its content.
using NamespaceState = std::map<std::string, NamespaceOwner>;

// {"owners": {"<task id>": {"pid": ..., "start_time": ...}}}
Result<NamespaceState> parseState(std::string_view content) {
  NamespaceState state;
  auto parsed = parseOwners(content,
                            [&](const std::string& owner, const json::object&,
                                const ProcessIdentity& process) -> Result<void> {
                              state[owner].process = process;
                              return {};
                            });
  if (!parsed) return fail(parsed.error());
  return state;
}

std::string serializeState(const NamespaceState& state) {
  json::object owners;
  for (const auto& [owner, entry] : state) {
    json::object record;
    processToJson(entry.process, record);
    owners[owner] = std::move(record);
  }
  return json::serialize(json::object{{"owners", std::move(owners)}}) + "\n";
}

class NamespaceRecordsImpl final : public OwnedStateStore<NamespaceRecords, NamespaceState> {
 public:
  explicit NamespaceRecordsImpl(std::string state_path)
      : OwnedStateStore({std::move(state_path), "network namespaces", parseState, serializeState}) {
  }

  using OwnedStateStore::load;

  Result<void> record(const std::string& owner) override {
    if (owner.empty()) return fail(ErrorCode::kInvalidArgument, "record a namespace: no owner");
    std::lock_guard lock(mutex_);
    auto updated = file_.update([&](NamespaceState& state) -> Result<void> {
      state[owner].process = currentProcess();
      return {};
    });
    if (!updated) return fail(updated.error().wrap("record the network namespaces of " + owner));
    return {};
  }
};

}  // namespace

Result<std::unique_ptr<NamespaceRecords>> NamespaceRecords::open(std::string state_path) {
  auto records = std::make_unique<NamespaceRecordsImpl>(std::move(state_path));
  if (auto loaded = records->load(); !loaded) return fail(loaded.error());
  return std::unique_ptr<NamespaceRecords>(std::move(records));
}

std::unique_ptr<OwnerStore> openNamespaceOwners(const std::string& state_path) {
  return openExistingOwners<NamespaceState>(state_path, "network namespaces", parseState,
                                            serializeState);
}

}  // namespace ecs::netns
