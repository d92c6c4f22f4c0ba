// ElasticPool: up to a fixed number of threads, started as work arrives and ended after a while
// without any. A burst (ten tasks in one payload) gets all of them side by side; an idle agent
// keeps none, since each costs about 16 KB of resident stack and thread-local storage.
//
// post() may be called from any thread; work runs in the order it was posted, on whichever
// thread is free. join() runs what is queued, then ends every thread; work posted after it is
// dropped. The destructor joins.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace ecs {

class ElasticPool {
 public:
  using Work = std::move_only_function<void()>;

  explicit ElasticPool(size_t max_threads,
                       std::chrono::milliseconds idle_timeout = std::chrono::seconds(30));
  ~ElasticPool();
  ElasticPool(const ElasticPool&) = delete;
  ElasticPool& operator=(const ElasticPool&) = delete;

  void post(Work work);
  void join();

  size_t threads() const;  // running now (for tests)

 private:
  void run(size_t id);
  void reapLocked(std::vector<std::thread>& out);

  const size_t max_threads_;
  const std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Work> queue_;              // guarded by mutex_
  std::map<size_t, std::thread> live_;  // guarded by mutex_
  std::vector<size_t> ended_;           // guarded by mutex_: threads that returned, to join
  size_t idle_ = 0;                     // guarded by mutex_: threads waiting for work
  size_t next_id_ = 0;                  // guarded by mutex_
  bool stopping_ = false;               // guarded by mutex_
};

}  // namespace ecs
