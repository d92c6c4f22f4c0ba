// SigV4 signing: the AWS SigV4 test suite's published signatures (AKIDEXAMPLE, us-east-1,
// service "service", 20150830T123600Z), each also recomputed by botocore; then requests shaped
// like the agent's own (an ECS JSON call with session credentials, a websocket URL whose query
// holds spaces, '+', '/', '~' and UTF-8, odd paths, ports and headers) signed by both and compared
// header for header; the query encoder; signing an HttpRequest in place; and the refusals.
#include "agent/aws/sigv4.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/support/botocore_reference.h"

namespace ecs::aws {
namespace {

using ecs::testing::BotocoreReference;
using namespace std::chrono_literals;

// 2015-08-30T12:36:00Z, the test suite's time.
const std::chrono::system_clock::time_point kSuiteTime =
    std::chrono::sys_days(std::chrono::year{2015} / 8 / 30) + 12h + 36min;
const std::string kSuiteKeyId = "AKIDEXAMPLE";
const std::string kSuiteSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const std::string kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

Credentials suiteCredentials(std::string token = {}) {
  return Credentials{.access_key_id = kSuiteKeyId,
                     .secret_access_key = kSuiteSecret,
                     .session_token = std::move(token)};
}

HttpHeaders headersOf(const BotocoreReference::Pairs& pairs) {
  HttpHeaders out;
  for (const auto& [name, value] : pairs) out.add(name, value);
  return out;
}

// Signs with ours; the Authorization header (or the error's message).
std::string ourAuthorization(const std::string& method, const std::string& url,
                             const BotocoreReference::Pairs& headers, const std::string& body,
                             const SigV4Scope& scope, const Credentials& credentials,
                             std::chrono::system_clock::time_point time) {
  auto signature = signV4(SigV4Request{.method = method,
                                       .url = url,
                                       .headers = headersOf(headers),
                                       .payload_sha256 = sha256Hex(body)},
                          scope, credentials, time);
  if (!signature) return "error: " + signature.error().message;
  return signature->headers.get("Authorization");
}

struct SuiteCase {
  const char* name;
  std::string method;
  std::string url;
  BotocoreReference::Pairs headers;
  std::string body;
  std::string signed_headers;
  std::string signature;
};

// From the AWS SigV4 test suite (aws-sig-v4-test-suite), as AWS publishes them.
const SuiteCase kSuite[] = {
    {"get-vanilla",
     "GET",
     "https://example.amazonaws.com/",
     {{"Host", "example.amazonaws.com"}},
     "",
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-query-order-key-case",
     "GET",
     "https://example.amazonaws.com/?Param2=value2&Param1=value1",
     {{"Host", "example.amazonaws.com"}},
     "",
     "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-empty-query-key",
     "GET",
     "https://example.amazonaws.com/?Param1=value1",
     {{"Host", "example.amazonaws.com"}},
     "",
     "host;x-amz-date",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-utf8-query",
     "GET",
     "https://example.amazonaws.com/?%E1%88%B4=bar",
     {{"Host", "example.amazonaws.com"}},
     "",
     "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"post-vanilla",
     "POST",
     "https://example.amazonaws.com/",
     {{"Host", "example.amazonaws.com"}},
     "",
     "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-x-www-form-urlencoded",
     "POST",
     "https://example.amazonaws.com/",
     {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}},
     "Param1=value1",
     "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"get-header-value-trim",
     "GET",
     "https://example.amazonaws.com/",
     {{"Host", "example.amazonaws.com"},
      {"My-Header1", " value1"},
      {"My-Header2", " \"a   b   c\""}},
     "",
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
};

TEST(SigV4Test, AwsTestSuiteSignaturesAgreeWithOursAndBotocore) {
  BotocoreReference botocore;
  const SigV4Scope scope{.service = "service", .region = "us-east-1"};
  for (const SuiteCase& test : kSuite) {
    SCOPED_TRACE(test.name);
    const std::string expected =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=" +
        test.signed_headers + ", Signature=" + test.signature;
    EXPECT_EQ(ourAuthorization(test.method, test.url, test.headers, test.body, scope,
                               suiteCredentials(), kSuiteTime),
              expected);
    auto reference = botocore.sign(
        {.method = test.method, .url = test.url, .headers = test.headers, .body = test.body});
    ASSERT_EQ(reference.error, "");
    EXPECT_EQ(reference.authorization, expected);
  }
}

TEST(SigV4Test, GetVanillaCanonicalRequestAndStringToSign) {
  auto signature = signV4(
      SigV4Request{.url = "https://example.amazonaws.com/", .payload_sha256 = sha256Hex("")},
      SigV4Scope{.service = "service", .region = "us-east-1"}, suiteCredentials(), kSuiteTime);
  ASSERT_TRUE(signature) << signature.error().message;
  EXPECT_EQ(signature->canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "host;x-amz-date\n" +
                kEmptySha256);
  EXPECT_EQ(signature->string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  ASSERT_EQ(signature->headers.fields().size(), 2u);
  EXPECT_EQ(signature->headers.fields()[0], (HttpHeaders::Field{"X-Amz-Date", "20150830T123600Z"}));
  EXPECT_EQ(signature->headers.fields()[1].first, "Authorization");
}

struct CrossCase {
  const char* name;
  std::string method;
  std::string url;
  BotocoreReference::Pairs headers;
  std::string body;
  std::string token;
  bool content_sha256 = false;
};

TEST(SigV4Test, AgentShapedRequestsMatchBotocore) {
  const std::string token =
      "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLXdlc3QtMiJHMEUCIQD+token/with+plus==";
  const std::string query = encodeQuery({
      {"agentHash", "4023248"},
      {"agentVersion", "1.83.0"},
      {"clusterArn", "arn:aws:ecs:us-west-2:123456789012:cluster/my cluster"},
      {"containerInstanceArn",
       "arn:aws:ecs:us-west-2:123456789012:container-instance/my/0123456789abcdef"},
      {"dockerVersion", "DockerVersion: 20.10.24 + containerd"},
      {"protocolVersion", "2"},
      {"sendCredentials", "true"},
      {"seqNum", "1"},
      {"tilde~and/slash", "ünïcødé ☃ a=b&c"},
      {"empty", ""},
  });
  const std::string ecs_body =
      R"({"cluster":"default","containerInstance":"arn:aws:ecs:us-west-2:1:container-instance/x","zoneId":""})";
  const CrossCase cases[] = {
      {"ecs-json-call-with-session-token",
       "POST",
       "https://ecs.us-west-2.amazonaws.com/",
       {{"Content-Type", "application/x-amz-json-1.1"},
        {"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DiscoverPollEndpoint"}},
       ecs_body,
       token},
      {"acs-websocket-upgrade",
       "GET",
       "wss://ecs-a-1.us-west-2.amazonaws.com/ws?" + query,
       {},
       "",
       token},
      {"tcs-websocket-without-token",
       "GET",
       "https://ecs-t-1.us-west-2.amazonaws.com/ws?" + query,
       {},
       ""},
      {"loopback-port-and-odd-path",
       "POST",
       "http://127.0.0.1:8443/a/./b/../c//d%20e/~x/",
       {{"Content-Type", "application/x-amz-json-1.1"}},
       "{}",
       token},
      {"default-port-written-out", "GET", "https://Example.AmazonAWS.com:443/path", {}, ""},
      {"ipv6-host", "GET", "http://[::1]:51678/v1/metadata?b=2&a=1", {}, ""},
      {"repeated-and-messy-headers",
       "PUT",
       "https://service.us-west-2.amazonaws.com/x",
       {{"X-Custom", "  one   two  "},
        {"x-custom", "three"},
        {"User-Agent", "not signed"},
        {"X-Amzn-Trace-Id", "not signed either"},
        {"Content-Type", "text/plain"}},
       "payload bytes",
       ""},
      {"content-sha256-header",
       "PUT",
       "https://bucket.s3.us-west-2.amazonaws.com/key",
       {},
       "object body",
       token,
       true},
  };

  BotocoreReference botocore;
  const auto time = std::chrono::sys_days(std::chrono::year{2026} / 12 / 3) + 9h + 8min + 7s;
  for (const CrossCase& test : cases) {
    SCOPED_TRACE(test.name);
    const SigV4Scope scope{
        .service = "ecs", .region = "us-west-2", .content_sha256_header = test.content_sha256};
    auto ours = signV4(SigV4Request{.method = test.method,
                                    .url = test.url,
                                    .headers = headersOf(test.headers),
                                    .payload_sha256 = sha256Hex(test.body)},
                       scope, suiteCredentials(test.token), time);
    ASSERT_TRUE(ours) << ours.error().message;
    // botocore knows no ws/wss scheme; the URL is otherwise the same request.
    std::string url = test.url;
    if (url.starts_with("wss://")) url = "https://" + url.substr(6);
    auto reference = botocore.sign({.method = test.method,
                                    .url = url,
                                    .headers = test.headers,
                                    .body = test.body,
                                    .service = "ecs",
                                    .region = "us-west-2",
                                    .token = test.token,
                                    .amz_date = "20261203T090807Z",
                                    .content_sha256 = test.content_sha256});
    ASSERT_EQ(reference.error, "");
    EXPECT_EQ(ours->headers.get("Authorization"), reference.authorization)
        << "canonical request:\n"
        << ours->canonical_request;
    EXPECT_EQ(ours->headers.get("X-Amz-Date"), "20261203T090807Z");
    EXPECT_EQ(ours->headers.get("X-Amz-Security-Token"), test.token);
    EXPECT_EQ(ours->headers.contains("X-Amz-Security-Token"), !test.token.empty());
    EXPECT_EQ(ours->headers.get("x-amz-content-sha256"),
              test.content_sha256 ? sha256Hex(test.body) : "");
    EXPECT_EQ(ours->headers.contains("x-amz-content-sha256"), test.content_sha256);
  }
}

TEST(SigV4Test, QuerySentIsTheQueryBotocoreCanonicalisesFromParameters) {
  // botocore encodes these parameters itself; the signatures only agree if encodeQuery() produced
  // exactly botocore's canonical query.
  const QueryParameters parameters = {
      {"dockerVersion", "DockerVersion: 20.10.24"},
      {"plus", "a+b"},
      {"slash", "a/b"},
      {"tilde", "~x~"},
      {"utf8", "日本 ü"},
      {"reserved", "!*'();:@&=$,?#[]%"},
      {"a", "2"},
      {"a", "1"},
  };
  const std::string url = "https://ecs-a-1.us-west-2.amazonaws.com/ws";
  BotocoreReference botocore;
  auto reference = botocore.sign({.url = url, .params = parameters, .service = "ecs"});
  ASSERT_EQ(reference.error, "");
  EXPECT_EQ(ourAuthorization("GET", url + "?" + encodeQuery(parameters), {}, "",
                             SigV4Scope{.service = "ecs", .region = "us-east-1"},
                             suiteCredentials(), kSuiteTime),
            reference.authorization);
}

TEST(SigV4Test, EncodeQuerySortsAndEscapesPerRfc3986) {
  EXPECT_EQ(encodeQuery({{"b", "x y"}, {"a", "1+1=2"}, {"c", "/~-_."}, {"d", "é"}, {"a", "0"}}),
            "a=0&a=1%2B1%3D2&b=x%20y&c=%2F~-_.&d=%C3%A9");
  EXPECT_EQ(encodeQuery({}), "");
  EXPECT_EQ(encodeQuery({{"k", ""}}), "k=");
  EXPECT_EQ(uriEncode("a b/c", true), "a%20b/c");
  EXPECT_EQ(uriEncode("a b/c"), "a%20b%2Fc");
  EXPECT_EQ(uriEncode("AZaz09-_.~"), "AZaz09-_.~");
}

TEST(SigV4Test, QueryNotInCanonicalFormIsSignedAsAServerReadsIt) {
  // Unsorted, '+' for a space, lowercase escapes, a bare key: canonicalised the way the ECS front
  // end reads them, so the signature holds for the query as sent.
  auto signature =
      signV4(SigV4Request{.url = "https://h.example/ws?b=Docker+1.0&a=%2f%7e&flag",
                          .payload_sha256 = sha256Hex("")},
             SigV4Scope{.service = "ecs", .region = "us-east-1"}, suiteCredentials(), kSuiteTime);
  ASSERT_TRUE(signature) << signature.error().message;
  EXPECT_TRUE(signature->canonical_request.starts_with(
      "GET\n/ws\na=%2F~&b=Docker%201.0&flag=\nhost:h.example\n"))
      << signature->canonical_request;
}

TEST(SigV4Test, SignHttpRequestAddsHeadersAndReplacesAnEarlierSignature) {
  HttpRequest request;
  request.method = "POST";
  request.url = "https://ecs.us-east-1.amazonaws.com/";
  request.headers.add("Content-Type", "application/x-amz-json-1.1");
  request.headers.add("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters");
  request.body = "{}";
  const SigV4Scope scope{.service = "ecs", .region = "us-east-1"};
  ASSERT_TRUE(signHttpRequest(request, scope, suiteCredentials("token-1"), kSuiteTime));
  const std::string first = request.headers.get("Authorization");
  EXPECT_TRUE(first.find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
                         "x-amz-target,") != std::string::npos)
      << first;
  EXPECT_FALSE(request.headers.contains("x-amz-content-sha256"));

  // A retry a second later with refreshed credentials: one signature, the new one.
  ASSERT_TRUE(signHttpRequest(request, scope, suiteCredentials("token-2"), kSuiteTime + 1s));
  EXPECT_EQ(request.headers.getAll("Authorization").size(), 1u);
  EXPECT_EQ(request.headers.getAll("X-Amz-Date"), (std::vector<std::string>{"20150830T123601Z"}));
  EXPECT_EQ(request.headers.getAll("X-Amz-Security-Token"), (std::vector<std::string>{"token-2"}));
  EXPECT_NE(request.headers.get("Authorization"), first);

  BotocoreReference botocore;
  auto reference = botocore.sign(
      {.method = "POST",
       .url = request.url,
       .headers = {{"Content-Type", "application/x-amz-json-1.1"},
                   {"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.ListClusters"}},
       .body = "{}",
       .service = "ecs",
       .token = "token-2",
       .amz_date = "20150830T123601Z"});
  EXPECT_EQ(request.headers.get("Authorization"), reference.authorization);
}

TEST(SigV4Test, HostHeaderDropsDefaultPortsAndLowercases) {
  EXPECT_EQ(hostHeader("https://ECS.us-east-1.amazonaws.com/"), "ecs.us-east-1.amazonaws.com");
  EXPECT_EQ(hostHeader("https://h:443/x"), "h");
  EXPECT_EQ(hostHeader("wss://h:443/ws?x=1"), "h");
  EXPECT_EQ(hostHeader("ws://h:80"), "h");
  EXPECT_EQ(hostHeader("http://h:443/"), "h:443");
  EXPECT_EQ(hostHeader("http://user:pw@127.0.0.1:8080/"), "127.0.0.1:8080");
  EXPECT_EQ(hostHeader("http://[FD00:EC2::254]/latest"), "[fd00:ec2::254]");
  EXPECT_EQ(hostHeader("no-scheme.example"), "");
}

TEST(SigV4Test, RefusesUrlsWithoutHostAndCredentialsWithoutKeys) {
  const SigV4Scope scope{.service = "ecs", .region = "us-east-1"};
  auto no_host = signV4(SigV4Request{.url = "ecs.us-east-1.amazonaws.com/"}, scope,
                        suiteCredentials(), kSuiteTime);
  ASSERT_FALSE(no_host);
  EXPECT_EQ(no_host.error().code, ErrorCode::kInvalidArgument);
  auto no_key = signV4(SigV4Request{.url = "https://h/"}, scope, Credentials{}, kSuiteTime);
  ASSERT_FALSE(no_key);
  EXPECT_EQ(no_key.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ecs::aws
