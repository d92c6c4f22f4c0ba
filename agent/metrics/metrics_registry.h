// MetricsRegistry: the agent's own metrics — counters, gauges and histograms with labels — that
// any module can feed and the endpoints' /metrics renders in the Prometheus text exposition format
// (0.0.4). It depends on nothing of the agent but common, so the lowest modules (images,
// runtime, the engine) can count without reaching up to the HTTP servers.
// Updates are lock-free atomics on a series the caller keeps a reference to; finding a series by
// its label values takes a shared lock, so hot paths look a series up once and keep it.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace ecs::metrics {

class Counter {
 public:
  void inc(double v = 1) { add(value_, v); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  static void add(std::atomic<double>& a, double v) {
    double old = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
    }
  }
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v);
  // Cumulative counts per bound (then +Inf), sum and count, read together.
  struct Snapshot {
    std::vector<uint64_t> cumulative;
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  double bound(size_t i) const { return bounds_[i]; }

 private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;  // observations are rare (pulls), so a mutex keeps sum and count exact
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric name with its label names; series are created on first use of a label-value tuple
// and live as long as the registry (their references stay valid).
template <typename Series>
class Family {
 public:
  Family(std::vector<std::string> label_names, std::function<std::unique_ptr<Series>()> make)
      : label_names_(std::move(label_names)), make_(std::move(make)) {}

  Series& labels(const std::vector<std::string>& values) {
    {
      std::shared_lock lock(mutex_);
      if (auto it = series_.find(values); it != series_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    auto& slot = series_[values];
    if (!slot) slot = make_();
    return *slot;
  }
  Series& get() { return labels({}); }

  const std::vector<std::string>& labelNames() const { return label_names_; }
  // Calls f(label values, series) for every series, in label order.
  void forEach(const std::function<void(const std::vector<std::string>&, const Series&)>& f) const {
    std::shared_lock lock(mutex_);
    for (const auto& [values, series] : series_) f(values, *series);
  }
  // Drops every series (gauges recomputed from scratch, e.g. tasks by status).
  void clear() {
    std::unique_lock lock(mutex_);
    series_.clear();
  }

 private:
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<Series>()> make_;
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Series>> series_;
};

class MetricsRegistry {
 public:
  // Registering a name twice returns the first family (the label names must match).
  Family<Counter>& counter(const std::string& name, const std::string& help,
                           std::vector<std::string> label_names = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help,
                       std::vector<std::string> label_names = {});
  Family<Histogram>& histogram(const std::string& name, const std::string& help,
                               std::vector<double> bounds,
                               std::vector<std::string> label_names = {});

  // Runs before every render: lets a module refresh gauges it computes on demand (RSS, tasks by
  // status) instead of keeping them current all the time.
  void addCollector(std::function<void()> collector);

  // The Prometheus text format of every metric, sorted by name.
  std::string render() const;

 private:
  struct Entry {
    MetricType type;
    std::string help;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
  std::vector<std::function<void()>> collectors_;
};

// Escapes a label value for the text format (backslash, double quote, newline).
std::string escapeLabelValue(std::string_view value);

}  // namespace ecs::metrics
