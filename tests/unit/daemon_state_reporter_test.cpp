// StateReporter with a fake sink: what becomes a SubmitTaskStateChange, in which order, how often.
#include <gtest/gtest.h>

#include <mutex>

#include "agent/daemon/state_reporter.h"
#include "tests/support/wait_for.h"

namespace ecs::daemon {
namespace {

using namespace std::chrono_literals;
using ecs::testing::pollUntil;
using ecsapi::ReportedStatus;
using engine::ContainerStatus;

// Records what it is given; fails the first `failures` calls with `error_type`.
class FakeSink {
 public:
  TaskChangeSink sink() {
    return [this](const ecsapi::TaskStateChange& change, std::stop_token) -> aws::AwsResult<void> {
      std::lock_guard lock(mutex_);
      ++calls_;
      if (failures_ > 0) {
        --failures_;
        aws::AwsError error;
        error.type = error_type_;
        error.http_status = error_type_ == "InvalidParameterException" ? 400 : 500;
        error.retryable = error_type_ != "InvalidParameterException";
        return std::unexpected(error);
      }
      accepted_.push_back(change);
      return {};
    };
  }
  void fail(int n, std::string type = "ServerException") {
    std::lock_guard lock(mutex_);
    failures_ = n;
    error_type_ = std::move(type);
  }
  std::vector<ecsapi::TaskStateChange> accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
  }
  int calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<ecsapi::TaskStateChange> accepted_;
  int failures_ = 0;
  int calls_ = 0;
  std::string error_type_;
};

StateReporterOptions fastOptions() {
  StateReporterOptions o;
  o.cluster = "unit";
  o.retry.base = 1ms;
  o.retry.cap = 2ms;
  o.container_flush_min = 20ms;
  o.container_flush_max = 40ms;
  return o;
}

engine::StateChange taskChange(const std::string& arn, ContainerStatus status,
                               std::string reason = "") {
  engine::StateChange c;
  c.task_arn = arn;
  c.status = status;
  c.reason = std::move(reason);
  return c;
}

engine::StateChange containerChange(const std::string& arn, const std::string& name,
                                    ContainerStatus status) {
  engine::StateChange c = taskChange(arn, status);
  c.container_name = name;
  c.runtime_id = arn + "-" + name;
  c.image_digest = "sha256:abc";
  if (status == ContainerStatus::kStopped) {
    c.exit_code = 3;
    c.reason = "exited";
  }
  c.network_bindings.push_back({"0.0.0.0", 80, 62001, "tcp", "", ""});
  return c;
}

TEST(StateReporterTest, RunningCarriesItsContainersAndEarlierStatusesStayLocal) {
  FakeSink sink;
  StateReporter reporter(sink.sink(), fastOptions());
  reporter.start();
  reporter.submit(containerChange("t1", "web", ContainerStatus::kPulled));
  reporter.submit(taskChange("t1", ContainerStatus::kCreated));
  reporter.submit(containerChange("t1", "web", ContainerStatus::kRunning));
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 1; }, 5s));
  auto change = sink.accepted()[0];
  EXPECT_EQ(change.status, ReportedStatus::kRunning);
  EXPECT_EQ(change.cluster, "unit");
  ASSERT_EQ(change.containers.size(), 1u);
  const auto& c = change.containers[0];
  EXPECT_EQ(c.container_name, "web");
  EXPECT_EQ(c.status, ReportedStatus::kRunning);
  EXPECT_EQ(c.runtime_id, "t1-web");
  EXPECT_EQ(c.image_digest, "sha256:abc");
  EXPECT_FALSE(c.exit_code);
  ASSERT_EQ(c.network_bindings.size(), 1u);
  EXPECT_EQ(c.network_bindings[0].host_ports.first, 62001);
  EXPECT_EQ(c.network_bindings[0].container_ports.first, 80);
  reporter.stop();
  EXPECT_TRUE(reporter.pending().empty());
}

TEST(StateReporterTest, NeverTheSameStatusTwiceAndStoppedAfterRunning) {
  FakeSink sink;
  std::vector<std::string> stopped;
  auto options = fastOptions();
  options.on_task_stopped = [&](const std::string& arn) { stopped.push_back(arn); };
  StateReporter reporter(sink.sink(), options);
  sink.fail(5);  // the first attempts fail: order must hold through the retries
  reporter.start();
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  reporter.submit(containerChange("t1", "web", ContainerStatus::kStopped));
  reporter.submit(taskChange("t1", ContainerStatus::kStopped, "Essential container exited"));
  reporter.submit(taskChange("t1", ContainerStatus::kStopped, "again"));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 2; }, 5s));
  reporter.stop(1s);
  auto accepted = sink.accepted();
  ASSERT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted[0].status, ReportedStatus::kRunning);
  EXPECT_EQ(accepted[1].status, ReportedStatus::kStopped);
  EXPECT_EQ(accepted[1].reason, "Essential container exited");
  ASSERT_EQ(accepted[1].containers.size(), 1u);
  EXPECT_EQ(accepted[1].containers[0].exit_code, 3);
  EXPECT_EQ(accepted[1].containers[0].reason, "exited");
  EXPECT_EQ(sink.calls(), 7);
  EXPECT_EQ(stopped, std::vector<std::string>{"t1"});
}

TEST(StateReporterTest, AContainerStoppingInARunningTaskIsFlushedOnItsOwn) {
  FakeSink sink;
  StateReporter reporter(sink.sink(), fastOptions());
  reporter.start();
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 1; }, 5s));
  reporter.submit(containerChange("t1", "sidecar", ContainerStatus::kStopped));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 2; }, 5s));
  auto flushed = sink.accepted()[1];
  EXPECT_EQ(flushed.status, ReportedStatus::kRunning);
  ASSERT_EQ(flushed.containers.size(), 1u);
  EXPECT_EQ(flushed.containers[0].container_name, "sidecar");
  EXPECT_EQ(flushed.containers[0].status, ReportedStatus::kStopped);
  // The same container change is not sent again with the task's STOPPED.
  reporter.submit(containerChange("t1", "sidecar", ContainerStatus::kStopped));
  reporter.submit(taskChange("t1", ContainerStatus::kStopped));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 3; }, 5s));
  EXPECT_TRUE(sink.accepted()[2].containers.empty());
}

TEST(StateReporterTest, InvalidParameterDropsTheChangeAndTheNextOneGoes) {
  FakeSink sink;
  StateReporter reporter(sink.sink(), fastOptions());
  sink.fail(1, "InvalidParameterException");
  reporter.start();
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  reporter.submit(taskChange("t1", ContainerStatus::kStopped));
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 1; }, 5s));
  reporter.stop(1s);
  EXPECT_EQ(sink.accepted()[0].status, ReportedStatus::kStopped);
  EXPECT_TRUE(reporter.pending().empty());
}

TEST(StateReporterTest, UnrecognizedTasksAreReportedOnce) {
  FakeSink sink;
  StateReporter reporter(sink.sink(), fastOptions());
  reporter.start();
  reporter.reportUnrecognized("bad", "arn:aws:ecs:us-west-2:1:cluster/c",
                              "UnrecognizedTaskError: x");
  reporter.reportUnrecognized("bad", "arn:aws:ecs:us-west-2:1:cluster/c",
                              "UnrecognizedTaskError: x");
  ASSERT_TRUE(pollUntil([&] { return sink.accepted().size() == 1; }, 5s));
  reporter.stop(1s);
  ASSERT_EQ(sink.accepted().size(), 1u);
  auto change = sink.accepted()[0];
  EXPECT_EQ(change.status, ReportedStatus::kStopped);
  EXPECT_EQ(change.cluster, "arn:aws:ecs:us-west-2:1:cluster/c");
  EXPECT_EQ(change.reason, "UnrecognizedTaskError: x");
}

TEST(StateReporterTest, StopKeepsWhatWasNotDelivered) {
  FakeSink sink;
  StateReporter reporter(sink.sink(), fastOptions());
  sink.fail(1000000);
  reporter.start();
  reporter.submit(taskChange("t1", ContainerStatus::kRunning));
  reporter.submit(taskChange("t2", ContainerStatus::kRunning));
  ASSERT_TRUE(pollUntil([&] { return sink.calls() >= 4; }, 5s));
  reporter.stop(10ms);
  auto pending = reporter.pending();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_TRUE(sink.accepted().empty());
}

TEST(StateReporterTest, OneSlowTaskDoesNotHoldUpTheOthers) {
  FakeSink sink;
  auto options = fastOptions();
  options.senders = 2;
  std::atomic<bool> release{false};
  std::vector<std::string> order;
  std::mutex mutex;
  StateReporter reporter(
      [&](const ecsapi::TaskStateChange& change, std::stop_token stop) -> aws::AwsResult<void> {
        if (change.task_arn == "slow") {
          while (!release && !stop.stop_requested()) std::this_thread::sleep_for(1ms);
        }
        std::lock_guard lock(mutex);
        order.push_back(change.task_arn);
        return {};
      },
      options);
  reporter.start();
  reporter.submit(taskChange("slow", ContainerStatus::kRunning));
  reporter.submit(taskChange("fast", ContainerStatus::kRunning));
  ASSERT_TRUE(pollUntil(
      [&] {
        std::lock_guard lock(mutex);
        return order.size() == 1;
      },
      5s));
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(order[0], "fast");
  }
  release = true;
  reporter.stop(1s);
  EXPECT_EQ(order.size(), 2u);
}

}  // namespace
}  // namespace ecs::daemon
