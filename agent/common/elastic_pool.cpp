#include "agent/common/elastic_pool.h"

namespace ecs {

ElasticPool::ElasticPool(size_t max_threads, std::chrono::milliseconds idle_timeout)
    : max_threads_(max_threads == 0 ? 1 : max_threads), idle_timeout_(idle_timeout) {}

ElasticPool::~ElasticPool() {
  join();
}

size_t ElasticPool::threads() const {
  std::lock_guard lock(mutex_);
  return live_.size() - ended_.size();
}

// Moves the threads that have returned out of live_, for joining outside the lock.
void ElasticPool::reapLocked(std::vector<std::thread>& out) {
  for (size_t id : ended_) {
    if (auto it = live_.find(id); it != live_.end()) {
      out.push_back(std::move(it->second));
      live_.erase(it);
    }
  }
  ended_.clear();
}

void ElasticPool::post(Work work) {
  std::vector<std::thread> finished;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    reapLocked(finished);
    queue_.push_back(std::move(work));
    if (idle_ >= queue_.size()) {
      wake_.notify_one();
    } else if (live_.size() < max_threads_) {
      const size_t id = next_id_++;
      live_.emplace(id, std::thread([this, id] { run(id); }));
    }
  }
  for (auto& thread : finished) thread.join();
}

void ElasticPool::run(size_t id) {
  std::unique_lock lock(mutex_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) break;
      ++idle_;
      const bool woken =
          wake_.wait_for(lock, idle_timeout_, [&] { return !queue_.empty() || stopping_; });
      --idle_;
      if (!woken) break;  // idle for idle_timeout_: this thread is not needed now
      continue;
    }
    Work work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    work();
    work = nullptr;  // what the work captured goes before the lock is taken again
    lock.lock();
  }
  ended_.push_back(id);
}

void ElasticPool::join() {
  std::vector<std::thread> all;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
    for (auto& [id, thread] : live_) all.push_back(std::move(thread));
    live_.clear();
    ended_.clear();
  }
  for (auto& thread : all) thread.join();
  // Nothing runs queued work now: a pool joined with work still queued (no thread had started
  // for it) runs it here, as the threads would have.
  std::deque<Work> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(queue_);
  }
  for (auto& work : left) work();
}

}  // namespace ecs
