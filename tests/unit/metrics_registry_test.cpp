// MetricsRegistry: the Prometheus text it renders for counters, gauges and histograms.
#include "agent/metrics/metrics_registry.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace ecs::metrics {
namespace {

TEST(MetricsRegistryTest, RendersPrometheusText) {
  MetricsRegistry metrics;
  auto& requests = metrics.counter("ecs_requests_total", "Requests.", {"path", "status"});
  requests.labels({"/v2/credentials", "200"}).inc();
  requests.labels({"/v2/credentials", "200"}).inc();
  requests.labels({"/v4/\"q\"", "404"}).inc();
  metrics.gauge("ecs_threads", "Threads.").get().set(7);
  auto& h = metrics.histogram("ecs_pull_seconds", "Pulls.", {1, 5}).get();
  h.observe(0.5);
  h.observe(3);
  h.observe(100);
  int collected = 0;
  metrics.addCollector([&] { ++collected; });
  auto text = metrics.render();
  EXPECT_EQ(collected, 1);
  EXPECT_NE(text.find("# TYPE ecs_requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_requests_total{path=\"/v2/credentials\",status=\"200\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ecs_requests_total{path=\"/v4/\\\"q\\\"\",status=\"404\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ecs_threads 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_pull_seconds_bucket{le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_pull_seconds_bucket{le=\"5\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_pull_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_pull_seconds_sum 103.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ecs_pull_seconds_count 3\n"), std::string::npos) << text;
}

TEST(MetricsRegistryTest, RegisteringANameTwiceReturnsTheFirstFamily) {
  MetricsRegistry metrics;
  auto& first = metrics.counter("ecs_pulls_total", "Pulls.", {"result"});
  auto& again = metrics.counter("ecs_pulls_total", "Pulls.", {"result"});
  EXPECT_EQ(&first, &again);
  first.labels({"ok"}).inc();
  EXPECT_EQ(again.labels({"ok"}).value(), 1);
}

TEST(MetricsRegistryTest, CountersAddUpAcrossThreads) {
  MetricsRegistry metrics;
  auto& family = metrics.counter("ecs_events_total", "Events.", {"kind"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) family.labels({"a"}).inc();
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(family.labels({"a"}).value(), 4000);
  EXPECT_NE(metrics.render().find("ecs_events_total{kind=\"a\"} 4000\n"), std::string::npos);
}

}  // namespace
}  // namespace ecs::metrics
