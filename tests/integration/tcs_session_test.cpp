// TcsSession against the stand-in control plane, which checks each frame's SigV4 signature (the
// header block before the envelope) with botocore and every envelope against the TCS wire model:
// idle publishes every interval, the CPU and memory of a real busy process in a real container
// cgroup (read by the real StatsSampler), health and instance status, heartbeats keeping a
// connection, the heartbeat timeout closing it, and reconnects after a close, an abort and stop.
#include "agent/tcs/tcs_session.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cgroup_sandbox.h"
#include "tests/support/fake_control_plane.h"
#include "tests/support/wait_for.h"

namespace ecs::tcs {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using ecs::testing::CgroupSandbox;
using ecs::testing::FakeControlPlane;
using ecs::testing::waitFor;

const std::string kCluster = "tcs-session-test";
const std::string kInstance =
    "arn:aws:ecs:us-west-2:123456789012:container-instance/tcs-session-test/0123456789abcdef";
const std::string kTaskArn = "arn:aws:ecs:us-west-2:123456789012:task/tcs-session-test/t1";

class TcsSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plane_.settings({{"require_registered_instance", false}});
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (session_) session_->stop();
    session_.reset();
    sampler_.stop();
    work_.reset();
    thread_.join();
    EXPECT_TRUE(plane_.signatureFailures().empty())
        << json::serialize(json::value_from(plane_.signatureFailures()));
    EXPECT_TRUE(plane_.violations().empty())
        << json::serialize(json::value_from(plane_.violations()));
  }

  TcsSessionOptions options() {
    TcsSessionOptions o;
    o.cluster = kCluster;
    o.container_instance_arn = kInstance;
    o.agent_version = "1.2.3";
    o.agent_hash = "abc1234";
    o.region = plane_.options().region;
    o.credentials = [this]() -> Result<aws::Credentials> {
      return aws::Credentials{.access_key_id = plane_.options().access_key,
                              .secret_access_key = plane_.options().secret_key,
                              .session_token = {},
                              .expiration = std::nullopt,
                              .source = "test"};
    };
    o.endpoint = [url = plane_.tcsEndpoint()]() -> Result<std::string> { return url; };
    o.publish_interval = 300ms;
    o.heartbeat_timeout = 30s;
    o.heartbeat_jitter = 0ms;
    o.backoff_initial = 20ms;
    o.backoff_jitter = 0;
    o.close_timeout = 1s;
    return o;
  }

  void start(TcsSessionOptions o) {
    session_ = std::make_unique<TcsSession>(io_, std::move(o), sampler_);
    session_->start();
  }

  std::int64_t connect(std::int64_t after = 0, std::chrono::milliseconds timeout = 10s) {
    auto connection = plane_.waitForTcsConnection(timeout, after);
    EXPECT_TRUE(connection) << plane_.log();
    if (!connection) return -1;
    return connection->at("conn").to_number<std::int64_t>();
  }

  // `count` PublishMetricsRequest frames matching `match` after `after`, each signed and clean.
  std::vector<json::object> metricsFrames(std::size_t count, const json::object& match,
                                          std::int64_t after = 0,
                                          std::chrono::milliseconds timeout = 15s) {
    json::object filter{
        {"kind", "frame"}, {"channel", "tcs"}, {"type", "PublishMetricsRequest"}, {"after", after}};
    if (!match.empty()) filter["match"] = match;
    auto frames = plane_.waitForEvents(filter, count, timeout);
    EXPECT_TRUE(frames) << "waiting for " << count << " metrics frames " << json::serialize(match);
    if (!frames) return {};
    for (const auto& f : *frames) expectSignedAndClean(f);
    return *frames;
  }

  static void expectSignedAndClean(const json::object& frame) {
    EXPECT_EQ(frame.at("signed"), true) << json::serialize(frame);
    EXPECT_EQ(frame.at("signature_ok"), true) << json::serialize(frame);
    EXPECT_TRUE(frame.at("problems").as_array().empty()) << json::serialize(frame);
  }

  static const json::object& message(const json::object& frame) {
    return frame.at("message").as_object();
  }

  FakeControlPlane plane_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::thread thread_;
  metadata::StatsSampler sampler_{io_, {.interval = 100ms}};
  std::unique_ptr<TcsSession> session_;
};

TEST_F(TcsSessionTest, AnIdleInstancePublishesOneSignedIdleRequestEveryInterval) {
  auto began = std::chrono::steady_clock::now();
  start(options());
  auto connection = plane_.waitForTcsConnection(10s);
  ASSERT_TRUE(connection) << plane_.log();
  EXPECT_EQ(connection->at("query"), (json::object{{"agentHash", "abc1234"},
                                                   {"agentVersion", "1.2.3"},
                                                   {"cluster", kCluster},
                                                   {"containerInstance", kInstance}}));
  auto frames =
      metricsFrames(4, {{"metadata", json::object{{"idle", true}, {"fin", true}}}}, 0, 10s);
  ASSERT_EQ(frames.size(), 4u);
  auto took = std::chrono::steady_clock::now() - began;
  // One at once, then one per interval: four take three intervals, not four.
  EXPECT_GE(took, 3 * 300ms - 50ms);
  std::set<std::string> ids;
  for (const auto& f : frames) {
    const auto& m = message(f);
    EXPECT_EQ(m.at("metadata").at("cluster"), json::value(kCluster));
    EXPECT_EQ(m.at("metadata").at("containerInstance"), json::value(kInstance));
    EXPECT_FALSE(m.contains("taskMetrics"));
    EXPECT_TRUE(m.at("timestamp").is_number());
    ids.insert(std::string(m.at("metadata").at("messageId").as_string()));
  }
  EXPECT_EQ(ids.size(), 4u);  // a fresh messageId per tick
  // Acknowledged (the stand-in acks every good publish) and no other kind of frame sent.
  EXPECT_FALSE(
      plane_.events({{"kind", "sent"}, {"channel", "tcs"}, {"type", "AckPublishMetric"}}).empty());
  EXPECT_TRUE(plane_.tcsFrames("PublishHealthRequest").empty());
  EXPECT_TRUE(plane_.tcsFrames("PublishInstanceStatusRequest").empty());
}

TEST_F(TcsSessionTest, InstanceStatusIsSentOnlyAfterAChange) {
  start(options());
  session_->setInstanceStatus("ContainerRuntime", InstanceStatusValue::kOk);
  session_->setInstanceStatus("Agent", InstanceStatusValue::kOk);
  auto first = plane_.waitForTcsFrame("PublishInstanceStatusRequest", 10s);
  ASSERT_TRUE(first) << plane_.log();
  expectSignedAndClean(*first);
  const auto& statuses = message(*first).at("statuses").as_array();
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0].at("type"), "Agent");
  EXPECT_EQ(statuses[1].at("status"), "OK");
  // The same status again: nothing new over the next ticks.
  session_->setInstanceStatus("ContainerRuntime", InstanceStatusValue::kOk);
  auto mark = first->at("seq").to_number<std::int64_t>();
  metricsFrames(3, {}, mark);
  EXPECT_EQ(plane_.tcsFrames("PublishInstanceStatusRequest").size(), 1u);
  session_->setInstanceStatus("ContainerRuntime", InstanceStatusValue::kImpaired, "no runtime");
  auto second = plane_.waitForTcsFrame("PublishInstanceStatusRequest", {}, 10s, mark);
  ASSERT_TRUE(second);
  expectSignedAndClean(*second);
  bool impaired = false;
  for (const auto& s : message(*second).at("statuses").as_array()) {
    if (s.at("type") == "ContainerRuntime") {
      impaired = s.at("status") == "IMPAIRED" && s.at("statusReason") == "no runtime";
    }
  }
  EXPECT_TRUE(impaired) << json::serialize(message(*second));
  EXPECT_NE(message(*first).at("metadata").at("requestId"),
            message(*second).at("metadata").at("requestId"));
}

TEST_F(TcsSessionTest, ReconnectsAfterACloseAndAnAbortAndKeepsPublishing) {
  start(options());
  auto first = connect();
  ASSERT_GE(first, 0);
  metricsFrames(1, {}, 0);
  auto mark = plane_.lastSeq();
  EXPECT_EQ(plane_.dropTcs(1000, "bye"), 1);
  auto second = connect(mark);
  EXPECT_GT(second, first);
  auto after_close = metricsFrames(1, {}, plane_.lastSeq());
  ASSERT_EQ(after_close.size(), 1u);
  EXPECT_EQ(after_close[0].at("conn").to_number<std::int64_t>(), second);

  mark = plane_.lastSeq();
  EXPECT_EQ(plane_.abortTcs(), 1);
  auto third = connect(mark);
  EXPECT_GT(third, second);
  auto after_abort = metricsFrames(1, {}, mark);
  ASSERT_EQ(after_abort.size(), 1u);
  EXPECT_EQ(after_abort[0].at("conn").to_number<std::int64_t>(), third);
  EXPECT_TRUE(waitFor([&] { return session_->connections() == 3; }, 5s, "three connections"));

  // stop() closes with 1000 and ends the session.
  mark = plane_.lastSeq();
  session_->stop();
  EXPECT_FALSE(session_->connected());
  auto closed =
      plane_.waitForEvent({{"kind", "disconnect"}, {"channel", "tcs"}, {"after", mark}}, 5s);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->at("code"), 1000);
  EXPECT_EQ(closed->at("by"), "agent");
}

TEST_F(TcsSessionTest, ClosesAtMaximumAgeAndReconnectsAtOnce) {
  auto o = options();
  o.max_connection_age = 400ms;
  o.connection_age_jitter = 0ms;
  o.backoff_initial = 10s;  // a reconnect within the wait below is not a backoff
  start(o);
  auto first = connect();
  auto closed =
      plane_.waitForEvent({{"kind", "disconnect"}, {"channel", "tcs"}, {"conn", first}}, 5s);
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->at("by"), "agent");
  EXPECT_EQ(closed->at("code"), 1000);
  auto second = connect(closed->at("seq").to_number<std::int64_t>(), 3s);
  EXPECT_GT(second, first);
}

TEST_F(TcsSessionTest, HeartbeatsKeepTheConnectionAndSilenceClosesIt) {
  plane_.settings({{"tcs_heartbeat_interval_ms", 100}, {"tcs_auto_ack", false}});
  auto o = options();
  o.heartbeat_timeout = 700ms;
  o.publish_interval = 60s;
  start(o);
  connect();
  // Ten heartbeats (a second) with no acknowledgements: the connection stays.
  auto beats = plane_.waitForEvents(
      {{"kind", "sent"}, {"channel", "tcs"}, {"type", "HeartbeatMessage"}}, 10, 10s);
  ASSERT_TRUE(beats);
  EXPECT_EQ(session_->connections(), 1);
  EXPECT_TRUE(session_->connected());
  // No answer to a heartbeat: the only frame is the first publish.
  EXPECT_EQ(plane_.tcsFrames().size(), 1u);

  // Silence: the session closes with 1000 itself and reconnects at once.
  auto mark = plane_.lastSeq();
  plane_.settings({{"tcs_heartbeat_interval_ms", 0}});
  ASSERT_EQ(plane_.dropTcs(), 1);  // the new session gets no heartbeats
  auto silent = connect(mark);
  mark = plane_.lastSeq();
  auto expired =
      plane_.waitForEvent({{"kind", "disconnect"}, {"channel", "tcs"}, {"conn", silent}}, 5s);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->at("by"), "agent");
  EXPECT_EQ(expired->at("code"), 1000);
  connect(mark, 5s);
}

// A v1 cgroup tree of files (cpuacct and memory only) and a /proc for a sampler that reads no
// kernel: enough to give many tasks samples.
class FakeCgroupTree {
 public:
  FakeCgroupTree() {
    char tmpl[] = "/tmp/tcs-session-test-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
    write("proc/stat", "cpu  100 0 50 1000 10 0 5 7 0 0\ncpu0 50 0 25 500 5 0 2 0 0 0\n");
    write("proc/meminfo", "MemTotal:        8000000 kB\n");
  }
  ~FakeCgroupTree() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  void container(const std::string& path, std::uint64_t cpu_ns, std::uint64_t memory) {
    write("cgroup/cpuacct" + path + "/cpuacct.usage", std::to_string(cpu_ns) + "\n");
    write("cgroup/memory" + path + "/memory.usage_in_bytes", std::to_string(memory) + "\n");
    write("cgroup/memory" + path + "/memory.stat", "cache 0\n");
  }
  metadata::StatsSamplerOptions options() const {
    return {.cgroup_root = dir_ + "/cgroup", .interval = 1h, .proc_root = dir_ + "/proc"};
  }

 private:
  void write(const std::string& relative, const std::string& text) {
    auto path = std::filesystem::path(dir_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  std::string dir_;
};

TEST_F(TcsSessionTest, ManyTasksAreSplitIntoChunksSharingAMessageId) {
  FakeCgroupTree tree;
  metadata::StatsSampler sampler(io_, tree.options());
  std::vector<engine::TaskSnapshotPtr> tasks;
  for (int i = 0; i < 12; ++i) {
    auto task = std::make_shared<engine::TaskSnapshot>();
    task->arn = kTaskArn + "-" + std::to_string(i);
    task->id = "t" + std::to_string(i);
    task->family = "many";
    task->revision = 1;
    task->network_mode = "host";
    engine::ContainerSnapshot c;
    c.name = "app";
    c.runtime_id = "c" + std::to_string(i);
    c.known = engine::ContainerStatus::kRunning;
    c.cgroup_path = "/ecs/" + task->id + "/" + c.runtime_id;
    c.health = engine::HealthStatus::kUnhealthy;
    c.health_checked_at = std::chrono::system_clock::now();
    c.health_output = "exit status 1";
    task->containers.push_back(c);
    tree.container(c.cgroup_path, 1'000'000, 100u << 20);
    sampler.update(task);
    tasks.push_back(std::move(task));
  }
  session_ = std::make_unique<TcsSession>(io_, options(), sampler);
  for (const auto& task : tasks) session_->update(task);
  session_->start();

  // No samples yet: the ticks carry health (in two chunks) but no metrics, not even idle ones.
  auto health = plane_.waitForEvents(
      {{"kind", "frame"}, {"channel", "tcs"}, {"type", "PublishHealthRequest"}}, 2, 10s);
  ASSERT_TRUE(health);
  EXPECT_TRUE(plane_.tcsFrames("PublishMetricsRequest").empty());
  const auto& h0 = message((*health)[0]);
  const auto& h1 = message((*health)[1]);
  expectSignedAndClean((*health)[0]);
  expectSignedAndClean((*health)[1]);
  EXPECT_EQ(h0.at("metadata").at("messageId"), h1.at("metadata").at("messageId"));
  EXPECT_EQ(h0.at("metadata").at("fin"), false);
  EXPECT_EQ(h1.at("metadata").at("fin"), true);
  EXPECT_EQ(h0.at("tasks").as_array().size(), 10u);
  EXPECT_EQ(h1.at("tasks").as_array().size(), 2u);
  EXPECT_EQ(h0.at("tasks").as_array()[0].at("containers").as_array()[0].at("healthStatus"),
            "UNHEALTHY");

  // Two samples each, a second apart in cpu time: the next tick publishes all twelve tasks.
  sampler.sampleOnce();
  for (int i = 0; i < 12; ++i) {
    tree.container("/ecs/t" + std::to_string(i) + "/c" + std::to_string(i), 2'000'000, 100u << 20);
  }
  sampler.sampleOnce();
  auto frames = metricsFrames(2, {{"metadata", json::object{{"idle", false}}}}, 0);
  ASSERT_EQ(frames.size(), 2u);
  const auto& m0 = message(frames[0]);
  const auto& m1 = message(frames[1]);
  EXPECT_EQ(m0.at("metadata").at("messageId"), m1.at("metadata").at("messageId"));
  EXPECT_EQ(m0.at("metadata").at("fin"), false);
  EXPECT_EQ(m1.at("metadata").at("fin"), true);
  EXPECT_EQ(m0.at("taskMetrics").as_array().size(), 10u);
  EXPECT_EQ(m1.at("taskMetrics").as_array().size(), 2u);
  const auto& memory =
      m0.at("taskMetrics").as_array()[0].at("containerMetrics").as_array()[0].at("memoryStatsSet");
  EXPECT_EQ(memory.at("max"), 100.0);
  EXPECT_EQ(memory.at("sampleCount"), 2);
  session_.reset();  // before the sampler it reads
}

// A busy child holding 64 MiB in a real container cgroup: the published CPU is about the share
// of the host one core is, the memory about what it holds.
TEST_F(TcsSessionTest, ReportsTheCpuAndMemoryOfARealProcess) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  CgroupSandbox sandbox;
  ASSERT_NE(sandbox.manager(), nullptr) << sandbox.error();
  auto created = sandbox.manager()->createTask("t1", {});
  ASSERT_TRUE(created) << created.error().message;
  const auto cgroup = sandbox.manager()->containerCgroupsPath("t1", "ctr");
  ASSERT_TRUE(sandbox.makeCgroup(cgroup));

  // The child allocates only after it was moved into the cgroup, so its memory is charged there.
  constexpr std::size_t kHeld = 64u << 20;
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char byte;
    ::close(go[1]);
    if (::read(go[0], &byte, 1) != 1) ::_exit(1);
    void* held = ::mmap(nullptr, kHeld, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (held == MAP_FAILED) ::_exit(2);
    // Through a volatile pointer: stores to memory nothing reads would be optimised away.
    volatile char* bytes = static_cast<char*>(held);
    for (std::size_t i = 0; i < kHeld; i += 4096) bytes[i] = 1;
    volatile std::uint64_t spin = 0;
    for (;;) spin = spin + 1;
  }
  sandbox.adopt(pid);
  ::close(go[0]);
  ASSERT_TRUE(sandbox.moveInto(cgroup, pid, {"cpu", "cpuacct", "memory", "blkio", "pids"}));
  ASSERT_EQ(::write(go[1], "x", 1), 1);
  ::close(go[1]);

  auto task = std::make_shared<engine::TaskSnapshot>();
  task->arn = kTaskArn;
  task->id = "t1";
  task->cluster = kCluster;
  task->family = "busy";
  task->revision = 4;
  task->network_mode = "host";
  task->known = engine::ContainerStatus::kRunning;
  engine::ContainerSnapshot c;
  c.name = "spinner";
  c.runtime_id = "ctr";
  c.known = engine::ContainerStatus::kRunning;
  c.cgroup_path = cgroup;
  c.health = engine::HealthStatus::kHealthy;
  c.health_checked_at = std::chrono::system_clock::now();
  task->containers.push_back(c);
  sampler_.update(task);
  sampler_.start();
  // Wait until the sampler sees the memory, so the first published set is not the child's
  // start-up.
  ASSERT_TRUE(waitFor(
      [&] {
        auto s = sampler_.usageSamples("ctr");
        return !s.empty() && s.back().memory_usage_bytes - s.back().memory_cache_bytes >= kHeld;
      },
      20s, "the sampler to see the child's memory"));
  const std::uint32_t cpus = sampler_.usageSamples("ctr").back().online_cpus;
  ASSERT_GT(cpus, 0u);

  auto o = options();
  o.publish_interval = 2s;
  start(o);
  session_->update(task);
  json::object match{{"metadata", json::object{{"idle", false}, {"fin", true}}},
                     {"taskMetrics", json::array{json::object{{"taskArn", kTaskArn}}}}};
  auto frames = metricsFrames(2, match, 0, 30s);
  ASSERT_EQ(frames.size(), 2u);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& metric = message(frames[i]).at("taskMetrics").as_array()[0].as_object();
    EXPECT_EQ(metric.at("clusterArn"), json::value(kCluster));
    EXPECT_EQ(metric.at("taskDefinitionFamily"), "busy");
    EXPECT_EQ(metric.at("taskDefinitionVersion"), "4");
    const auto& container = metric.at("containerMetrics").as_array()[0].as_object();
    EXPECT_EQ(container.at("containerName"), "spinner");
    const auto& cpu = container.at("cpuStatsSet").as_object();
    const auto& memory = container.at("memoryStatsSet").as_object();
    auto count = cpu.at("sampleCount").to_number<double>();
    // 2 s of 100 ms samples; the second set holds only what came after the first.
    EXPECT_GE(count, 1);
    if (i == 1) {
      EXPECT_LE(count, 2s / 100ms + 10);
    }
    const double one_core = 100.0 / cpus;
    const double average = cpu.at("sum").to_number<double>() / count;
    // The child wants one whole core; the machine is shared, so it may get less, never more (a
    // single 100 ms sample can overshoot by the sampler's own scheduling delay).
    EXPECT_GT(average, 0.3 * one_core) << "one core is " << one_core << " %";
    EXPECT_LT(average, 1.1 * one_core + 1) << "one core is " << one_core << " %";
    EXPECT_LT(cpu.at("max").to_number<double>(), 1.5 * one_core + 2);
    const double held_mib = static_cast<double>(kHeld >> 20);
    // The first set may start before the child touched its memory.
    if (i == 1) {
      EXPECT_GE(memory.at("min").to_number<double>(), held_mib);
    }
    EXPECT_GE(memory.at("max").to_number<double>(), held_mib);
    EXPECT_LE(memory.at("max").to_number<double>(), held_mib + 16);
    EXPECT_EQ(memory.at("sampleCount").to_number<double>(),
              count + (i == 0 ? 1 : 0));  // the first set's oldest sample has no cpu value
  }
  // Health rides along on the same tick.
  auto health = plane_.waitForTcsFrame("PublishHealthRequest", 10s);
  ASSERT_TRUE(health);
  expectSignedAndClean(*health);
  const auto& tasks = message(*health).at("tasks").as_array();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].at("taskArn"), json::value(kTaskArn));
  EXPECT_EQ(tasks[0].at("containers").as_array()[0].at("healthStatus"), "HEALTHY");
  EXPECT_EQ(message(*health).at("metadata").at("fin"), true);

  // The task goes: the instance is idle again.
  auto gone = std::make_shared<engine::TaskSnapshot>(*task);
  gone->removed = true;
  session_->update(gone);
  sampler_.update(gone);
  auto mark = plane_.lastSeq();
  metricsFrames(1, {{"metadata", json::object{{"idle", true}}}}, mark);
  session_->stop();
  sampler_.stop();
  auto leftovers = sandbox.sweep();
  EXPECT_TRUE(leftovers.empty());
}

}  // namespace
}  // namespace ecs::tcs
