// The telemetry requests as pure functions: the CPU and memory stats sets from synthetic usage
// samples, PublishMetricsRequest chunking (tasks and bytes, one messageId, instanceMetrics first,
// fin last, idle), PublishHealthRequest and PublishInstanceStatusRequest shapes, timestamps, the
// session query and the signed frame (its Authorization compared with botocore's).
#include "agent/tcs/tcs_messages.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>
#include <set>

#include "agent/tcs/tcs_session.h"
#include "tests/support/botocore_reference.h"

namespace ecs::tcs {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using ecs::testing::BotocoreReference;
using metadata::UsageSample;

constexpr std::uint64_t kMiB = 1024 * 1024;
const SystemTime kNow = SystemTime(std::chrono::milliseconds(1700000000123));
const RequestIdentity kIdentity{"my-cluster", "arn:aws:ecs:us-west-2:1:container-instance/c/i"};

// A sample `seconds` after the first, `cpu_seconds` of cpu used so far on a host of `cpus`.
UsageSample sample(std::uint64_t tick, double seconds, double cpu_seconds, std::uint32_t cpus,
                   std::uint64_t usage = 0, std::uint64_t cache = 0) {
  UsageSample s;
  s.tick = tick;
  s.read = std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9)) + 1000s);
  s.cpu_usage_ns = static_cast<std::uint64_t>(cpu_seconds * 1e9);
  s.online_cpus = cpus;
  s.memory_usage_bytes = usage;
  s.memory_cache_bytes = cache;
  return s;
}

json::object parse(const std::string& text) {
  return json::parse(text).as_object();
}

const json::object& message(const json::object& envelope) {
  return envelope.at("message").as_object();
}

TEST(TcsStatsSets, NeedTwoSamples) {
  EXPECT_FALSE(containerStatsSets({}, 0));
  EXPECT_FALSE(containerStatsSets({sample(1, 0, 0, 2)}, 0));
}

TEST(TcsStatsSets, CpuIsPercentOfTheWholeHost) {
  // Four CPUs: two busy cores for one second is 50 % of the host, one core for half a second
  // over 0.5 s is 25 %, nothing for two seconds is 0 %.
  std::vector<UsageSample> samples{sample(1, 0.0, 10.0, 4), sample(2, 1.0, 12.0, 4),
                                   sample(3, 1.5, 12.5, 4), sample(4, 3.5, 12.5, 4)};
  auto sets = containerStatsSets(samples, 0);
  ASSERT_TRUE(sets);
  EXPECT_EQ(sets->cpu.sample_count, 3u);
  EXPECT_NEAR(sets->cpu.max, 50.0, 1e-9);
  EXPECT_NEAR(sets->cpu.min, 0.0, 1e-9);
  EXPECT_NEAR(sets->cpu.sum, 50.0 + 25.0 + 0.0, 1e-9);
  EXPECT_EQ(sets->last_tick, 4u);
}

TEST(TcsStatsSets, MemoryIsUsageLessCacheInWholeMiB) {
  std::vector<UsageSample> samples{sample(1, 0, 0, 1, 300 * kMiB + 1234, 100 * kMiB),
                                   sample(2, 1, 0.5, 1, 210 * kMiB - 1, 0),
                                   sample(3, 2, 1.0, 1, 10, 4096)};  // cache above usage: 0
  auto sets = containerStatsSets(samples, 0);
  ASSERT_TRUE(sets);
  EXPECT_EQ(sets->memory.sample_count, 3u);
  EXPECT_EQ(sets->memory.max, 209.0);  // rounded down
  EXPECT_EQ(sets->memory.min, 0.0);
  EXPECT_EQ(sets->memory.sum, 200.0 + 209.0 + 0.0);
  EXPECT_EQ(sets->cpu.sample_count, 2u);
  EXPECT_NEAR(sets->cpu.min, 50.0, 1e-9);
}

TEST(TcsStatsSets, OnlySamplesAfterTheLastPublish) {
  std::vector<UsageSample> samples{sample(7, 0, 0, 1, kMiB), sample(8, 1, 0.1, 1, 2 * kMiB),
                                   sample(9, 2, 0.4, 1, 3 * kMiB)};
  auto sets = containerStatsSets(samples, 8);
  ASSERT_TRUE(sets);
  // Sample 9's cpu value uses sample 8 as its base, though 8 was published.
  EXPECT_EQ(sets->cpu.sample_count, 1u);
  EXPECT_NEAR(sets->cpu.sum, 30.0, 1e-9);
  EXPECT_EQ(sets->memory.sample_count, 1u);
  EXPECT_EQ(sets->memory.sum, 3.0);
  EXPECT_EQ(sets->last_tick, 9u);
  EXPECT_FALSE(containerStatsSets(samples, 9));  // nothing new
}

TEST(TcsStatsSets, ACounterGoingBackwardsOrAStalledClockIsSkipped) {
  std::vector<UsageSample> samples{sample(1, 0, 5.0, 1), sample(2, 1, 1.0, 1), sample(3, 1, 1.5, 1),
                                   sample(4, 2, 1.6, 1)};
  auto sets = containerStatsSets(samples, 0);
  ASSERT_TRUE(sets);
  EXPECT_EQ(sets->cpu.sample_count, 1u);
  EXPECT_NEAR(sets->cpu.sum, 10.0, 1e-6);
  EXPECT_FALSE(containerStatsSets({sample(1, 0, 5.0, 1), sample(2, 1, 1.0, 1)}, 0));
}

TaskMetric task(int i, std::size_t name_bytes = 8) {
  return TaskMetric{"arn:aws:ecs:us-west-2:1:task/c/" + std::to_string(i),
                    "my-cluster",
                    "family",
                    "3",
                    {ContainerMetric{std::string(name_bytes, 'n'), {1, 2, 3, 2}, {10, 20, 30, 2}}}};
}

TEST(TcsMetricsRequests, AnIdleInstanceSendsOneIdleFinalRequest) {
  auto requests = metricsRequests(kIdentity, "m-1", {}, kNow);
  ASSERT_EQ(requests.size(), 1u);
  auto envelope = parse(requests[0]);
  EXPECT_EQ(envelope.at("type"), "PublishMetricsRequest");
  const auto& m = message(envelope);
  EXPECT_EQ(m.at("metadata"), (json::object{{"cluster", "my-cluster"},
                                            {"containerInstance", kIdentity.container_instance},
                                            {"messageId", "m-1"},
                                            {"idle", true},
                                            {"fin", true}}));
  EXPECT_FALSE(m.contains("taskMetrics"));
  EXPECT_FALSE(m.contains("instanceMetrics"));
}

TEST(TcsMetricsRequests, TimestampIsEpochSecondsWithMilliseconds) {
  auto m = message(parse(metricsRequests(kIdentity, "m", {task(1)}, kNow)[0]));
  ASSERT_TRUE(m.at("timestamp").is_double());
  EXPECT_EQ(std::llround(m.at("timestamp").as_double() * 1000), 1700000000123);
  EXPECT_EQ(timestampJson(SystemTime(std::chrono::microseconds(1500999))).as_double(), 1.5);
}

TEST(TcsMetricsRequests, AtMostTenTasksPerChunkSharingOneMessageId) {
  std::vector<TaskMetric> tasks;
  for (int i = 0; i < 25; ++i) tasks.push_back(task(i));
  json::object instance{{"storage", json::object{{"rootFilesystem", json::object{}}}}};
  auto requests = metricsRequests(kIdentity, "shared-id", tasks, kNow, instance);
  ASSERT_EQ(requests.size(), 3u);
  std::vector<std::size_t> sizes;
  std::set<std::string> arns;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto m = message(parse(requests[i]));
    const auto& metadata = m.at("metadata").as_object();
    EXPECT_EQ(metadata.at("messageId"), "shared-id");
    EXPECT_EQ(metadata.at("idle"), false);
    EXPECT_EQ(metadata.at("fin"), i + 1 == requests.size());
    EXPECT_EQ(m.contains("instanceMetrics"), i == 0);
    sizes.push_back(m.at("taskMetrics").as_array().size());
    for (const auto& t : m.at("taskMetrics").as_array()) {
      arns.insert(std::string(t.at("taskArn").as_string()));
    }
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{10, 10, 5}));
  EXPECT_EQ(arns.size(), 25u);  // every task once, none twice
  auto first = message(parse(requests[0])).at("taskMetrics").as_array()[0].as_object();
  EXPECT_EQ(first.at("taskDefinitionFamily"), "family");
  EXPECT_EQ(first.at("taskDefinitionVersion"), "3");
  EXPECT_EQ(first.at("clusterArn"), "my-cluster");
  auto container = first.at("containerMetrics").as_array()[0].as_object();
  EXPECT_EQ(container.at("cpuStatsSet"),
            (json::object{{"min", 1.0}, {"max", 2.0}, {"sampleCount", 2}, {"sum", 3.0}}));
  EXPECT_EQ(container.at("memoryStatsSet").at("sum"), 30.0);
}

TEST(TcsMetricsRequests, ChunksStayUnderTheByteLimit) {
  std::vector<TaskMetric> tasks;
  for (int i = 0; i < 7; ++i) tasks.push_back(task(i, 300));
  ChunkLimits limits{.max_tasks = 10, .max_bytes = 1200};
  auto requests = metricsRequests(kIdentity, "id", tasks, kNow, std::nullopt, limits);
  ASSERT_GT(requests.size(), 1u);
  std::size_t total = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    EXPECT_LE(requests[i].size(), limits.max_bytes) << i;
    auto m = message(parse(requests[i]));
    EXPECT_EQ(m.at("metadata").at("fin"), i + 1 == requests.size());
    total += m.at("taskMetrics").as_array().size();
  }
  EXPECT_EQ(total, 7u);
  // Greedy: each chunk but the last would have crossed the limit with the next chunk's first
  // task (fin:false is one byte longer than the fin:true of a lone request).
  std::size_t begin = 0;
  for (std::size_t i = 0; i + 1 < requests.size(); ++i) {
    std::size_t n = message(parse(requests[i])).at("taskMetrics").as_array().size();
    std::vector<TaskMetric> grown(tasks.begin() + static_cast<long>(begin),
                                  tasks.begin() + static_cast<long>(begin + n + 1));
    auto one = metricsRequests(kIdentity, "id", grown, kNow);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_GT(one[0].size() + 1, limits.max_bytes) << i;
    begin += n;
  }
}

TEST(TcsMetricsRequests, ATaskLargerThanTheLimitGoesAlone) {
  ChunkLimits limits{.max_tasks = 10, .max_bytes = 500};
  auto requests = metricsRequests(kIdentity, "id", {task(0, 10), task(1, 2000), task(2, 10)}, kNow,
                                  std::nullopt, limits);
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_GT(requests[1].size(), 500u);
}

TEST(TcsHealthRequests, ChunksOfTenWithStatusesAndSince) {
  std::vector<TaskHealth> tasks;
  for (int i = 0; i < 12; ++i) {
    tasks.push_back(TaskHealth{"arn:task/" + std::to_string(i),
                               "my-cluster",
                               "fam",
                               "2",
                               {{"web", engine::HealthStatus::kHealthy, kNow - 5s, ""},
                                {"db", engine::HealthStatus::kUnhealthy, kNow, "exit 1"},
                                {"side", engine::HealthStatus::kUnknown, kNow, ""}}});
  }
  auto requests = healthRequests(kIdentity, "h-1", tasks, kNow);
  ASSERT_EQ(requests.size(), 2u);
  auto first = parse(requests[0]);
  EXPECT_EQ(first.at("type"), "PublishHealthRequest");
  const auto& m = message(first);
  EXPECT_EQ(m.at("metadata"), (json::object{{"cluster", "my-cluster"},
                                            {"containerInstance", kIdentity.container_instance},
                                            {"messageId", "h-1"},
                                            {"fin", false}}));
  EXPECT_EQ(m.at("tasks").as_array().size(), 10u);
  const auto& containers = m.at("tasks").as_array()[0].at("containers").as_array();
  ASSERT_EQ(containers.size(), 3u);
  EXPECT_EQ(containers[0].at("healthStatus"), "HEALTHY");
  EXPECT_EQ(std::llround(containers[0].at("statusSince").as_double() * 1000), 1700000000123 - 5000);
  EXPECT_FALSE(containers[0].as_object().contains("statusMessage"));
  EXPECT_EQ(containers[1].at("healthStatus"), "UNHEALTHY");
  EXPECT_EQ(containers[1].at("statusMessage"), "exit 1");
  EXPECT_EQ(containers[2].at("healthStatus"), "UNKNOWN");
  auto second = message(parse(requests[1]));
  EXPECT_EQ(second.at("metadata").at("fin"), true);
  EXPECT_EQ(second.at("metadata").at("messageId"), "h-1");
  EXPECT_EQ(second.at("tasks").as_array().size(), 2u);
  EXPECT_TRUE(healthRequests(kIdentity, "h", {}, kNow).empty());
}

TEST(TcsInstanceStatusRequest, Shape) {
  auto envelope = parse(
      instanceStatusRequest(kIdentity, "r-1",
                            {{"ContainerRuntime", InstanceStatusValue::kOk, "", kNow, kNow - 60s},
                             {"Agent", InstanceStatusValue::kImpaired, "stuck", kNow, kNow}},
                            kNow));
  EXPECT_EQ(envelope.at("type"), "PublishInstanceStatusRequest");
  const auto& m = message(envelope);
  EXPECT_EQ(m.at("metadata"), (json::object{{"cluster", "my-cluster"},
                                            {"containerInstance", kIdentity.container_instance},
                                            {"requestId", "r-1"}}));
  const auto& statuses = m.at("statuses").as_array();
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[0].at("type"), "ContainerRuntime");
  EXPECT_EQ(statuses[0].at("status"), "OK");
  EXPECT_FALSE(statuses[0].as_object().contains("statusReason"));
  EXPECT_EQ(std::llround(statuses[0].at("lastStatusChange").as_double() * 1000),
            1700000000123 - 60000);
  EXPECT_EQ(statuses[1].at("status"), "IMPAIRED");
  EXPECT_EQ(statuses[1].at("statusReason"), "stuck");
  EXPECT_TRUE(m.at("timestamp").is_double());
}

TEST(TcsQuery, HoldsTheDocumentedKeysSortedAndEncoded) {
  TcsSessionOptions o;
  o.cluster = "my cluster";
  o.container_instance_arn = "arn:ci/1";
  o.agent_version = "1.2.3";
  o.agent_hash = "abc";
  EXPECT_EQ(tcsQuery(o),
            "agentHash=abc&agentVersion=1.2.3&cluster=my%20cluster&containerInstance=arn%3Aci%2F1");
  o.docker_version = "20.10";
  EXPECT_EQ(tcsQuery(o).substr(tcsQuery(o).rfind('&')), "&dockerVersion=20.10");
}

TEST(TcsSignedFrame, HeaderBlockBlankLineEnvelopeSignedLikeBotocore) {
  const std::string url =
      "http://127.0.0.1:8080/tcs/ws?agentHash=abc&agentVersion=1.2.3&cluster=c&"
      "containerInstance=ci";
  const std::string envelope = R"({"type":"PublishMetricsRequest","message":{}})";
  aws::Credentials credentials{.access_key_id = "AKIDEXAMPLE",
                               .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               .session_token = "token/+=",
                               .expiration = std::nullopt,
                               .source = "test"};
  // 2015-08-30T12:36:00Z
  const auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1440938160));
  auto frame = signedFrame(url, envelope, "us-west-2", credentials, at);
  ASSERT_TRUE(frame) << frame.error().message;
  auto split = frame->find("\r\n\r\n");
  ASSERT_NE(split, std::string::npos);
  EXPECT_EQ(frame->substr(split + 4), envelope);
  std::vector<std::pair<std::string, std::string>> headers;
  std::string head = frame->substr(0, split) + "\r\n";
  for (std::size_t pos = 0; pos < head.size();) {
    auto end = head.find("\r\n", pos);
    auto line = head.substr(pos, end - pos);
    auto colon = line.find(": ");
    ASSERT_NE(colon, std::string::npos) << line;
    headers.emplace_back(line.substr(0, colon), line.substr(colon + 2));
    pos = end + 2;
  }
  std::vector<std::string> names;
  for (const auto& [name, value] : headers) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"Authorization", "Host", "X-Amz-Date",
                                             "X-Amz-Security-Token"}));
  EXPECT_EQ(headers[1].second, "127.0.0.1:8080");
  EXPECT_EQ(headers[2].second, "20150830T123600Z");
  EXPECT_EQ(headers[3].second, "token/+=");

  BotocoreReference botocore;
  auto reference = botocore.sign({.method = "GET",
                                  .url = url,
                                  .headers = {},
                                  .body = envelope,
                                  .params = std::nullopt,
                                  .service = "ecs",
                                  .region = "us-west-2",
                                  .access_key = credentials.access_key_id,
                                  .secret_key = credentials.secret_access_key,
                                  .token = credentials.session_token,
                                  .amz_date = "20150830T123600Z"});
  ASSERT_EQ(reference.error, "");
  EXPECT_EQ(headers[0].second, reference.authorization);
}

}  // namespace
}  // namespace ecs::tcs
