#include "agent/metrics/metrics_registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ecs::metrics {

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(bounds.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double v) {
  std::lock_guard lock(mutex_);
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  std::lock_guard lock(mutex_);
  Snapshot s;
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

Family<Counter>& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[name];
  if (!e.counter) {
    e.type = MetricType::kCounter;
    e.help = help;
    e.counter = std::make_unique<Family<Counter>>(std::move(label_names),
                                                  [] { return std::make_unique<Counter>(); });
  }
  return *e.counter;
}

Family<Gauge>& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[name];
  if (!e.gauge) {
    e.type = MetricType::kGauge;
    e.help = help;
    e.gauge = std::make_unique<Family<Gauge>>(std::move(label_names),
                                              [] { return std::make_unique<Gauge>(); });
  }
  return *e.gauge;
}

Family<Histogram>& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                              std::vector<double> bounds,
                                              std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  auto& e = entries_[name];
  if (!e.histogram) {
    e.type = MetricType::kHistogram;
    e.help = help;
    e.histogram = std::make_unique<Family<Histogram>>(
        std::move(label_names), [bounds] { return std::make_unique<Histogram>(bounds); });
  }
  return *e.histogram;
}

void MetricsRegistry::addCollector(std::function<void()> collector) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collector));
}

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string formatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

// {a="x",b="y"} with an optional extra label (le for histogram buckets); "" for no labels.
std::string labelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     std::string_view extra_name = {}, std::string_view extra_value = {}) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out +=
        fmt::format("{}{}=\"{}\"", out.empty() ? "" : ",", names[i], escapeLabelValue(values[i]));
  }
  if (!extra_name.empty()) {
    out += fmt::format("{}{}=\"{}\"", out.empty() ? "" : ",", extra_name, extra_value);
  }
  return out.empty() ? out : "{" + out + "}";
}

}  // namespace

std::string MetricsRegistry::render() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
  }
  // Collectors may register or update metrics, so they run without the registry lock.
  for (const auto& c : collectors) c();

  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& [name, e] : entries_) {
    switch (e.type) {
      case MetricType::kCounter:
        out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, e.help, name);
        e.counter->forEach([&](const auto& values, const Counter& c) {
          out += fmt::format("{}{} {}\n", name, labelSet(e.counter->labelNames(), values),
                             formatValue(c.value()));
        });
        break;
      case MetricType::kGauge:
        out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, e.help, name);
        e.gauge->forEach([&](const auto& values, const Gauge& g) {
          out += fmt::format("{}{} {}\n", name, labelSet(e.gauge->labelNames(), values),
                             formatValue(g.value()));
        });
        break;
      case MetricType::kHistogram:
        out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, e.help, name);
        e.histogram->forEach([&](const auto& values, const Histogram& h) {
          const auto& names = e.histogram->labelNames();
          auto s = h.snapshot();
          for (size_t i = 0; i < s.cumulative.size(); ++i) {
            std::string le = i + 1 < s.cumulative.size() ? formatValue(h.bound(i)) : "+Inf";
            out += fmt::format("{}_bucket{} {}\n", name, labelSet(names, values, "le", le),
                               s.cumulative[i]);
          }
          out += fmt::format("{}_sum{} {}\n", name, labelSet(names, values), formatValue(s.sum));
          out += fmt::format("{}_count{} {}\n", name, labelSet(names, values), s.count);
        });
        break;
    }
  }
  return out;
}

}  // namespace ecs::metrics
