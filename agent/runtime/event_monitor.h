// Internal to agent/runtime: the EventMonitor behind ContainerdClient::events().
//
// Two threads:
//  - the reader owns the one Events.Subscribe stream (filters: this namespace's /tasks/exit,
//    /tasks/oom and our own sync topic), decodes TaskExit/TaskOOM and hands them out; when the
//    stream breaks it resubscribes with backoff (100 ms doubling to 2 s), also while containerd
//    is away (each attempt dials afresh).
//  - the syncer makes each new stream trustworthy: it publishes a sync event until the stream
//    delivers one (proof that containerd registered the subscription; no exit after that point
//    can be missed), then re-checks with Tasks.List/Tasks.Get for exits that happened while no
//    stream was live, synthesizing them from the task's exit status.
// Waiting: waitExit registers a waiter, then looks at the buffer and asks Tasks.Get, then sleeps
// on a condition variable; an event, a re-check or deleteTask resolves it. The destructor
// cancels the stream and the monitor's calls in flight and joins both threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/runtime/containerd_client.h"
#include "agent/runtime/containerd_connection.h"

namespace ecs::runtime::internal {

class EventMonitorImpl final : public EventMonitor {
 public:
  // At most this many exits are buffered; beyond it the oldest is dropped (and counted).
  static constexpr size_t kMaxBufferedExits = 4096;
  static constexpr const char* kSyncTopic = "/ecs-node-agent/monitor-sync";

  explicit EventMonitorImpl(std::shared_ptr<const Connection> conn);
  ~EventMonitorImpl() override;
  EventMonitorImpl(const EventMonitorImpl&) = delete;
  EventMonitorImpl& operator=(const EventMonitorImpl&) = delete;

  void start();
  // True once a stream is confirmed live (or false after `timeout`).
  bool waitLive(std::chrono::milliseconds timeout);

  // Bookkeeping from the client. A new task forgets the container's old exits and notes the
  // init pid, so that a late exit of a previous task with the same id is not taken for its own.
  void taskCreated(const std::string& container_id, uint32_t pid);
  // A deleted task/process resolves its waiters with the exit containerd returned and forgets it.
  void processCreated(const std::string& container_id, const std::string& exec_id);
  void taskDeleted(const TaskExit& exit);
  void processDeleted(const TaskExit& exit);
  void containerDeleted(const std::string& container_id);

  Result<TaskExit> waitExit(const std::string& container_id,
                            std::chrono::milliseconds timeout) override;
  Result<TaskExit> waitExecExit(const std::string& container_id, const std::string& exec_id,
                                std::chrono::milliseconds timeout) override;
  void onExit(std::function<void(const TaskExit&)> callback) override;
  void onOom(std::function<void(const std::string&)> callback) override;
  EventMonitorStats stats() const override;
  void dropStreamForTesting(std::chrono::milliseconds pause) override;

 private:
  using Key = std::pair<std::string, std::string>;  // container id, exec id ("" = init)
  struct Waiter {
    Key key;
    uint64_t serial = 0;  // registration order
    std::optional<Result<TaskExit>> outcome;
  };
  struct Buffered {
    TaskExit exit;
    uint64_t seq = 0;
  };

  Result<TaskExit> wait(const Key& key, std::chrono::milliseconds timeout);
  void readerLoop();
  void syncerLoop();
  void handleEnvelope(const ::containerd::services::events::v1::Envelope& envelope);
  void publishSync();
  void recheck();
  // Records an exit and resolves its waiters. False for a duplicate or a stale exit.
  bool deliverLocked(const TaskExit& exit);
  void resolveLocked(const Key& key, const Result<TaskExit>& outcome);
  void forgetContainerLocked(const std::string& container_id);
  void notifyExit(const TaskExit& exit);
  Result<std::optional<TaskInfo>> probe(const Key& key);
  // Registers a unary call of the monitor's own threads so that the destructor can cancel it
  // instead of waiting out its deadline.
  class ActiveCall;

  std::shared_ptr<const Connection> conn_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  CallContext* stream_ctx_ = nullptr;
  std::set<CallContext*> active_calls_;
  uint64_t generation_ = 0;          // streams opened so far
  uint64_t live_generation_ = 0;     // newest stream that delivered a sync event
  uint64_t checked_generation_ = 0;  // newest stream after which the re-check ran
  std::chrono::steady_clock::time_point hold_until_{};
  std::map<Key, Buffered> exits_;
  uint64_t seq_ = 0;
  std::map<std::string, uint32_t> init_pids_;
  std::list<Waiter*> waiters_;
  uint64_t waiter_serial_ = 0;
  EventMonitorStats stats_;

  std::mutex callbacks_mutex_;
  std::vector<std::function<void(const TaskExit&)>> exit_callbacks_;
  std::vector<std::function<void(const std::string&)>> oom_callbacks_;

  std::thread reader_;
  std::thread syncer_;
};

}  // namespace ecs::runtime::internal
