// The persistence shared by HostPortAllocator and Ipam: a small state file that several agent
// processes on one host read and rewrite, and the identity of the agent process that made an
// allocation, so that allocations of a crashed agent can be told apart from those of a live one.
// Internal to the netns module.
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/process_identity.h"
#include "agent/common/result.h"
#include "netns/owner_store.h"

namespace boost::json {
class object;
}  // namespace boost::json

namespace ecs::netns {

// Owns a file descriptor; closes it when destroyed.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_;
};

// The agent process that answers for an owner's entry (agent/common/process_identity.h).
using ecs::currentProcess;
using ecs::isAlive;
using ecs::ProcessIdentity;
using ecs::processStartTime;

// The "pid" and "start_time" members of an owner's record in a state file.
Result<ProcessIdentity> processFromJson(const boost::json::object& record);
void processToJson(const ProcessIdentity& process, boost::json::object& record);

// The state files' shape: {"owners": {"<owner>": {"pid": ..., "start_time": ..., ...}}}.
// parseOwners() calls `each` with every owner's name, whole record and process ("" — a file
// just created — has none); an error from `each` ends the parse with it, named after the owner.
// serializeOwners() writes the records `each_record` filled in (process members added).
using OwnerRecordReader = std::function<Result<void>(
    const std::string& owner, const boost::json::object& record, const ProcessIdentity& process)>;
Result<void> parseOwners(std::string_view content, const OwnerRecordReader& each);

// A state file rewritten under flock(2). Every operation opens the file, takes the lock, and
// makes sure the locked inode is still the one at `path` (a writer replaces the file by
// rename(2), so a process that waited on the old inode must retry on the new one). Writes go to
// `<path>.tmp`, are fsynced, and are renamed over `path`: a crash leaves the old or the new
// content, never a torn one. The parent directory is created when missing.
class AllocationFile {
 public:
  explicit AllocationFile(std::string path) : path_(std::move(path)) {}

  const std::string& path() const { return path_; }

  // Under an exclusive lock: passes the current content ("" for a new file) to `change`, and
  // writes what it returns unless that is the same content. An error from `change` is returned
  // as is and nothing is written.
  using Change = std::function<Result<std::string>(std::string_view content)>;
  Result<void> update(const Change& change) const;

  // The current content, under a shared lock.
  Result<std::string> read() const;

 private:
  std::string path_;
};

// The state both allocators keep: a map from owner (a task ID) to an entry whose `process`
// member is the agent process that answers for it, parsed and serialized by the allocator's own
// functions. Every operation is one locked read-modify-write (or read) of the file.
template <typename State>
class OwnedStateFile {
 public:
  using Parse = Result<State> (*)(std::string_view content);
  using Serialize = std::string (*)(const State& state);

  // `what`: what the file holds, for log lines ("host ports", "addresses").
  OwnedStateFile(std::string path, std::string what, Parse parse, Serialize serialize)
      : file_(std::move(path)), what_(std::move(what)), parse_(parse), serialize_(serialize) {}

  const std::string& path() const { return file_.path(); }

  // Parses the state, lets `change` edit it, writes it back (unless it is unchanged). An error
  // from parsing or from `change` writes nothing.
  Result<void> update(const std::function<Result<void>(State&)>& change) const {
    return file_.update([&](std::string_view content) -> Result<std::string> {
      auto state = parse_(content);
      if (!state) return fail(state.error().wrap(fmt::format("state file {}", file_.path())));
      if (auto changed = change(*state); !changed) return fail(changed.error());
      return serialize_(*state);
    });
  }

  // The allocator operations that cannot fail for their caller: a state file that cannot be
  // read or written is logged (naming `what_`) and the result is empty.
  void release(const std::string& owner) const {
    auto released = update([&](State& state) -> Result<void> {
      state.erase(owner);
      return {};
    });
    if (!released) {
      spdlog::warn("release {} of task {}: {}", what_, owner, released.error().message);
    }
  }

  std::vector<std::string> owners() const {
    auto content = file_.read();
    auto state = content ? parse_(*content) : fail(content.error());
    if (!state) {
      spdlog::warn("{}: state file {}: {}", what_, file_.path(), state.error().message);
      return {};
    }
    std::vector<std::string> names;
    for (const auto& [owner, entry] : *state) names.push_back(owner);
    return names;
  }

  // The current state, parsed (under a shared lock).
  Result<State> read() const {
    auto content = file_.read();
    if (!content) return fail(content.error());
    auto state = parse_(*content);
    if (!state) return fail(state.error().wrap(fmt::format("state file {}", file_.path())));
    return state;
  }

  // Makes the calling process answer for `owner`'s entry, leaving what it holds as it is: how a
  // restarted agent takes over a task an earlier (dead) agent process made. kNotFound when the
  // file holds nothing for `owner`.
  Result<void> adopt(const std::string& owner) const {
    return update([&](State& state) -> Result<void> {
      auto it = state.find(owner);
      if (it == state.end()) {
        return fail(ErrorCode::kNotFound, "no {} are recorded for task {} in {}", what_, owner,
                    file_.path());
      }
      it->second.process = currentProcess();
      return {};
    });
  }

  // The owners whose agent process is gone, left in place (what sweepDead() would drop).
  std::vector<std::string> deadOwners() const {
    auto state = read();
    if (!state) {
      spdlog::warn("{}: {}", what_, state.error().message);
      return {};
    }
    std::vector<std::string> dead;
    for (const auto& [owner, entry] : *state) {
      if (!isAlive(entry.process)) dead.push_back(owner);
    }
    return dead;
  }

  // Drops the owners whose agent process is gone; returns them.
  std::vector<std::string> sweepDead() const {
    std::vector<std::string> dead;
    auto updated = update([&](State& state) -> Result<void> {
      dead.clear();
      std::erase_if(state, [&](const auto& item) {
        if (isAlive(item.second.process)) return false;
        dead.push_back(item.first);
        return true;
      });
      return {};
    });
    if (!updated) {
      spdlog::warn("sweep {} of dead agents: {}", what_, updated.error().message);
      return {};
    }
    return dead;
  }

 private:
  AllocationFile file_;
  std::string what_;
  Parse parse_;
  Serialize serialize_;
};

// The OwnerStore operations over an OwnedStateFile, one at a time within this process: what the
// stores (addresses, host ports, namespace records) answer alike. `Base` is the store's
// interface (an OwnerStore); an implementation adds its own operations on file_ under mutex_.
template <typename Base, typename State>
class OwnedStateStore : public Base {
 public:
  void release(const std::string& owner) override {
    std::lock_guard lock(mutex_);
    file_.release(owner);
  }
  std::vector<std::string> owners() const override {
    std::lock_guard lock(mutex_);
    return file_.owners();
  }
  std::vector<std::string> sweepDead() override {
    std::lock_guard lock(mutex_);
    return file_.sweepDead();
  }
  std::vector<std::string> deadOwners() const override {
    std::lock_guard lock(mutex_);
    return file_.deadOwners();
  }
  Result<void> adopt(const std::string& owner) override {
    std::lock_guard lock(mutex_);
    return file_.adopt(owner);
  }

 protected:
  explicit OwnedStateStore(OwnedStateFile<State> file) : file_(std::move(file)) {}

  // Reads (and for a new file, writes) the state once, so that a bad file fails at open.
  Result<void> load() {
    return file_.update([](State&) -> Result<void> { return {}; });
  }

  OwnedStateFile<State> file_;
  mutable std::mutex mutex_;  // one operation at a time from this process
};

// An OwnedStateFile as an OwnerStore, for housekeeping on a store that already exists: null
// when there is no file at `path`, so that looking creates nothing.
template <typename State>
std::unique_ptr<OwnerStore> openExistingOwners(
    std::string path, std::string what, typename OwnedStateFile<State>::Parse parse,
    typename OwnedStateFile<State>::Serialize serialize) {
  class Store final : public OwnedStateStore<OwnerStore, State> {
   public:
    explicit Store(OwnedStateFile<State> file)
        : OwnedStateStore<OwnerStore, State>(std::move(file)) {}
  };
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return nullptr;
  return std::make_unique<Store>(
      OwnedStateFile<State>(std::move(path), std::move(what), parse, serialize));
}

}  // namespace ecs::netns
