// HttpClient's transport against servers in this process: connections kept alive between requests
// (and a request sent again on a fresh connection when a kept one turns out dead), HTTP proxies
// from the environment (absolute targets, credentials, CONNECT for https, no_proxy), and TLS with
// the peer verified against the trust store (SSL_CERT_FILE) and for the URL's host name.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/aws/http_client.h"
#include "agent/aws/proxy.h"
#include "agent/aws/tls_context.h"
#include "tests/support/loopback_http_server.h"

namespace ecs::aws {
namespace {

using ecs::testing::httpResponse;
using ecs::testing::LoopbackConnection;
using ecs::testing::LoopbackHttpServer;
using ecs::testing::LoopbackRequest;

HttpRequest get(std::string url) {
  HttpRequest request;
  request.url = std::move(url);
  return request;
}

// Sets environment variables for one test and puts the old values back after it.
class ScopedEnvironment {
 public:
  ScopedEnvironment(
      std::initializer_list<std::pair<const char*, std::optional<std::string>>> vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value) {
        setenv(name, value->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// No proxy from the machine's environment in the tests that do not set one.
ScopedEnvironment noProxies() {
  return ScopedEnvironment{{"http_proxy", std::nullopt},  {"HTTP_PROXY", std::nullopt},
                           {"https_proxy", std::nullopt}, {"HTTPS_PROXY", std::nullopt},
                           {"all_proxy", std::nullopt},   {"ALL_PROXY", std::nullopt},
                           {"no_proxy", std::nullopt},    {"NO_PROXY", std::nullopt}};
}

// A loopback TCP server running `serve(fd)` on a thread per connection; counts connections.
class RawServer {
 public:
  explicit RawServer(std::function<void(int fd)> serve) : serve_(std::move(serve)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    EXPECT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] {
      while (!stopping_) {
        pollfd fd{listen_fd_, POLLIN, 0};
        if (poll(&fd, 1, 50) != 1) continue;
        const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) continue;
        std::lock_guard lock(mutex_);
        ++connections_;
        fds_.push_back(client);
        workers_.emplace_back([this, client] { serve_(client); });
      }
    });
  }
  ~RawServer() {
    stopping_ = true;
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    }
    for (auto& worker : workers_) worker.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  int port() const { return port_; }
  int connections() {
    std::lock_guard lock(mutex_);
    return connections_;
  }

 private:
  std::function<void(int)> serve_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mutex_;
  int connections_ = 0;
  std::vector<int> fds_;
  std::vector<std::thread> workers_;
};

// Reads one request head (requests here carry no body); empty when the client hung up first.
std::string readHead(int fd) {
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (recv(fd, &c, 1, 0) != 1) return {};
    head += c;
  }
  return head;
}

void writeAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Answers requests on a connection with kept-alive 200s whose body is the request line; after
// `answered_per_connection` answers (0: no limit) it reads one more request and hangs up without
// answering it, as a server that timed the idle connection out at that moment would.
std::function<void(int)> keepAlive(int answered_per_connection, std::atomic<int>* requests) {
  return [=](int fd) {
    for (int answered = 0;; ++answered) {
      const std::string head = readHead(fd);
      if (head.empty()) return;
      ++*requests;
      if (answered_per_connection > 0 && answered == answered_per_connection) {
        shutdown(fd, SHUT_RDWR);
        return;
      }
      const std::string line = head.substr(0, head.find("\r\n"));
      writeAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(line.size()) +
                       "\r\n\r\n" + line);
    }
  };
}

TEST(HttpClientTransportTest, KeepsTheConnectionAliveBetweenRequests) {
  auto environment = noProxies();
  std::atomic<int> requests{0};
  RawServer server(keepAlive(0, &requests));
  HttpClient client;
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  for (int i = 0; i < 3; ++i) {
    auto response = client.perform(get(base + "/r" + std::to_string(i)));
    ASSERT_TRUE(response) << response.error().asError().message;
    EXPECT_EQ(response->body, "GET /r" + std::to_string(i) + " HTTP/1.1");
  }
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(requests, 3);
}

TEST(HttpClientTransportTest, ARequestOnAKeptConnectionThatDiedGoesAgainOnAFreshOne) {
  auto environment = noProxies();
  std::atomic<int> requests{0};
  RawServer server(keepAlive(1, &requests));
  HttpClient client;
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
  auto first = client.perform(get(base + "/one"));
  ASSERT_TRUE(first) << first.error().asError().message;
  HttpRequest post = get(base + "/two");
  post.method = "POST";
  post.body = "{}";
  auto second = client.perform(post);
  ASSERT_TRUE(second) << second.error().asError().message;
  EXPECT_EQ(second->body, "POST /two HTTP/1.1");
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(requests, 3);  // the second went twice: dropped unanswered, then answered
}

TEST(HttpClientTransportTest, HeadReadsNoBody) {
  auto environment = noProxies();
  LoopbackHttpServer server([](const LoopbackRequest&, LoopbackConnection& connection) {
    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n");
  });
  HttpClient client;
  HttpRequest request = get(server.url("/blob"));
  request.method = "HEAD";
  auto response = client.perform(request);
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers.get("content-length"), "1234");
  EXPECT_EQ(response->body, "");
  EXPECT_EQ(server.requests().at(0).method, "HEAD");
}

TEST(HttpClientTransportTest, RelativeRedirectsAreMadeAbsolute) {
  auto environment = noProxies();
  LoopbackHttpServer server([](const LoopbackRequest& request, LoopbackConnection& connection) {
    connection.write(httpResponse(
        "302 Found",
        request.target == "/a/b" ? "Location: c?d=1\r\n" : "Location: //example.com/x\r\n", ""));
  });
  HttpClient client;
  auto sibling = client.perform(get(server.url("/a/b")));
  ASSERT_TRUE(sibling) << sibling.error().asError().message;
  EXPECT_EQ(sibling->redirect_url, server.url("/a/c?d=1"));
  auto other_host = client.perform(get(server.url("/z")));
  ASSERT_TRUE(other_host) << other_host.error().asError().message;
  EXPECT_EQ(other_host->redirect_url, "http://example.com/x");
}

TEST(HttpClientTransportTest, HttpGoesThroughTheEnvironmentsProxyWithItsCredentials) {
  LoopbackHttpServer proxy([](const LoopbackRequest&, LoopbackConnection& c) {
    c.write(httpResponse("200 OK", "", "via"));
  });
  ScopedEnvironment environment{{"http_proxy", "http://agent:p%40ss@" + proxy.address()},
                                {"HTTP_PROXY", std::nullopt},
                                {"no_proxy", std::nullopt},
                                {"NO_PROXY", std::nullopt},
                                {"all_proxy", std::nullopt},
                                {"ALL_PROXY", std::nullopt}};
  HttpClient client;
  auto response = client.perform(get("http://registry.invalid:5000/v2/?n=1"));
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->body, "via");
  const LoopbackRequest seen = proxy.requests().at(0);
  EXPECT_EQ(seen.target, "http://registry.invalid:5000/v2/?n=1");
  EXPECT_EQ(seen.header("Host"), "registry.invalid:5000");
  EXPECT_EQ(seen.header("Proxy-Authorization"), "Basic YWdlbnQ6cEBzcw==");  // agent:p@ss
}

TEST(HttpClientTransportTest, LoopbackIsNeverProxied) {
  LoopbackHttpServer proxy([](const LoopbackRequest&, LoopbackConnection& c) {
    c.write(httpResponse("200 OK", "", "via"));
  });
  LoopbackHttpServer origin([](const LoopbackRequest&, LoopbackConnection& c) {
    c.write(httpResponse("200 OK", "", "direct"));
  });
  ScopedEnvironment environment{{"http_proxy", "http://" + proxy.address()},
                                {"HTTP_PROXY", "http://" + proxy.address()},
                                {"no_proxy", std::nullopt},
                                {"NO_PROXY", std::nullopt}};
  HttpClient client;
  auto response = client.perform(get(origin.url("/x")));
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->body, "direct");
  EXPECT_TRUE(proxy.requests().empty());
}

TEST(HttpClientTransportTest, HttpsThroughAProxyAsksForATunnel) {
  LoopbackHttpServer proxy([](const LoopbackRequest&, LoopbackConnection& c) {
    c.write(httpResponse("403 Forbidden", "", "no tunnels here"));
  });
  ScopedEnvironment environment{{"https_proxy", "http://" + proxy.address()},
                                {"HTTPS_PROXY", std::nullopt},
                                {"no_proxy", std::nullopt},
                                {"NO_PROXY", std::nullopt}};
  HttpClient client;
  auto response = client.perform(get("https://ecs.us-west-2.amazonaws.com/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kConnect);
  EXPECT_NE(response.error().cause.message.find("refused the tunnel: HTTP 403"), std::string::npos)
      << response.error().cause.message;
  const LoopbackRequest seen = proxy.requests().at(0);
  EXPECT_EQ(seen.method, "CONNECT");
  EXPECT_EQ(seen.target, "ecs.us-west-2.amazonaws.com:443");
}

// A self-signed certificate for 127.0.0.1 only, made with the openssl command.
struct Certificate {
  std::string key, cert;
};

Certificate makeCertificate(const std::filesystem::path& dir, const std::string& name) {
  Certificate made{(dir / (name + ".key")).string(), (dir / (name + ".pem")).string()};
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=" +
      name + " -addext subjectAltName=IP:127.0.0.1 -keyout " + made.key + " -out " + made.cert +
      " 2>/dev/null";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return made;
}

class HttpClientTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ecs-http-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    server_cert_ = makeCertificate(dir_, "server");
    other_cert_ = makeCertificate(dir_, "other");
    context_ = SSL_CTX_new(TLS_server_method());
    ASSERT_EQ(SSL_CTX_use_certificate_file(context_, server_cert_.cert.c_str(), SSL_FILETYPE_PEM),
              1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey_file(context_, server_cert_.key.c_str(), SSL_FILETYPE_PEM), 1);
    server_.emplace([this](int fd) {
      SSL* ssl = SSL_new(context_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) {
        std::string head;
        char c;
        while (head.find("\r\n\r\n") == std::string::npos && SSL_read(ssl, &c, 1) == 1) head += c;
        const std::string response =
            httpResponse("200 OK", "", "secret over tls for " + head.substr(0, head.find("\r\n")));
        SSL_write(ssl, response.data(), static_cast<int>(response.size()));
        SSL_shutdown(ssl);
      }
      SSL_free(ssl);
      shutdown(fd, SHUT_RDWR);
    });
  }
  void TearDown() override {
    server_.reset();
    SSL_CTX_free(context_);
    std::filesystem::remove_all(dir_);
  }

  std::string url(const std::string& host, const std::string& target) const {
    return "https://" + host + ":" + std::to_string(server_->port()) + target;
  }

  std::filesystem::path dir_;
  Certificate server_cert_, other_cert_;
  SSL_CTX* context_ = nullptr;
  std::optional<RawServer> server_;
};

TEST_F(HttpClientTlsTest, ATrustedServerAnswersOverTls) {
  ScopedEnvironment environment{{"SSL_CERT_FILE", server_cert_.cert},
                                {"https_proxy", std::nullopt},
                                {"HTTPS_PROXY", std::nullopt},
                                {"all_proxy", std::nullopt},
                                {"ALL_PROXY", std::nullopt}};
  HttpClient client;
  auto response = client.perform(get(url("127.0.0.1", "/v2/")));
  ASSERT_TRUE(response) << response.error().asError().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "secret over tls for GET /v2/ HTTP/1.1");
}

TEST_F(HttpClientTlsTest, AnUntrustedCertificateOrAnotherHostsIsRefused) {
  {
    ScopedEnvironment environment{{"SSL_CERT_FILE", other_cert_.cert},
                                  {"https_proxy", std::nullopt},
                                  {"HTTPS_PROXY", std::nullopt},
                                  {"all_proxy", std::nullopt},
                                  {"ALL_PROXY", std::nullopt}};
    HttpClient client;
    auto response = client.perform(get(url("127.0.0.1", "/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().failure, HttpFailure::kConnect);
    EXPECT_NE(response.error().cause.message.find("certificate"), std::string::npos)
        << response.error().cause.message;
  }
  // Trusted, but made for 127.0.0.1, not for "localhost".
  ScopedEnvironment environment{{"SSL_CERT_FILE", server_cert_.cert}, {"https_proxy", std::nullopt},
                                {"HTTPS_PROXY", std::nullopt},        {"all_proxy", std::nullopt},
                                {"ALL_PROXY", std::nullopt},          {"no_proxy", std::nullopt}};
  HttpClient client;
  auto response = client.perform(get(url("localhost", "/")));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().failure, HttpFailure::kConnect);
  EXPECT_NE(response.error().cause.message.find("hostname mismatch"), std::string::npos)
      << response.error().cause.message;
}

// proxyFor(scheme, host) as "host:port", "direct", or "error: <message>".
std::string routeOf(std::string_view scheme, std::string_view host) {
  auto proxy = proxyFor(scheme, host);
  if (!proxy) return "error: " + proxy.error().message;
  if (!*proxy) return "direct";
  return (*proxy)->host + ":" + (*proxy)->port;
}

TEST(ProxyForTest, TheEcsGuidesHttpProxyCarriesEveryScheme) {
  auto environment = noProxies();
  EXPECT_EQ(routeOf("https", "ecs.us-west-2.amazonaws.com"), "direct");
  ScopedEnvironment guide{{"HTTP_PROXY", "10.0.0.131:3128"}};
  EXPECT_EQ(routeOf("https", "ecs.us-west-2.amazonaws.com"), "10.0.0.131:3128");
  EXPECT_EQ(routeOf("wss", "ecs-a-1.us-west-2.amazonaws.com"), "10.0.0.131:3128");
  EXPECT_EQ(routeOf("http", "registry.example.com"), "10.0.0.131:3128");
  // ... but never the instance metadata service or the credentials endpoint, unless NO_PROXY says
  // otherwise.
  EXPECT_EQ(routeOf("http", "169.254.169.254"), "direct");
  EXPECT_EQ(routeOf("http", "169.254.170.2"), "direct");
  ScopedEnvironment own{{"NO_PROXY", "example.com"}};
  EXPECT_EQ(routeOf("http", "169.254.169.254"), "10.0.0.131:3128");
}

TEST(ProxyForTest, EachSchemeTakesItsOwnVariableFirst) {
  auto environment = noProxies();
  ScopedEnvironment set{{"HTTPS_PROXY", "http://secure:1"},
                        {"HTTP_PROXY", "http://upper:2"},
                        {"http_proxy", "http://lower:3"}};
  EXPECT_EQ(routeOf("https", "a.example.com"), "secure:1");
  EXPECT_EQ(routeOf("wss", "a.example.com"), "secure:1");
  EXPECT_EQ(routeOf("http", "a.example.com"), "lower:3");
  EXPECT_EQ(routeOf("ws", "a.example.com"), "lower:3");
  ScopedEnvironment all{{"HTTPS_PROXY", std::nullopt},
                        {"HTTP_PROXY", std::nullopt},
                        {"http_proxy", std::nullopt},
                        {"ALL_PROXY", "http://all:4"}};
  EXPECT_EQ(routeOf("https", "a.example.com"), "all:4");
  EXPECT_EQ(routeOf("http", "a.example.com"), "all:4");
}

TEST(ProxyForTest, NoProxyNamesAddressesAndBlocksAndLoopbackGoDirect) {
  auto environment = noProxies();
  ScopedEnvironment set{{"HTTPS_PROXY", "http://proxy.internal:3128"},
                        {"NO_PROXY", ".example.com, 10.0.0.0/8,registry.local:5000"}};
  EXPECT_EQ(routeOf("https", "example.com"), "direct");
  EXPECT_EQ(routeOf("https", "api.EXAMPLE.com"), "direct");
  EXPECT_EQ(routeOf("https", "badexample.com"), "proxy.internal:3128");
  EXPECT_EQ(routeOf("https", "10.1.2.3"), "direct");
  EXPECT_EQ(routeOf("https", "11.1.2.3"), "proxy.internal:3128");
  EXPECT_EQ(routeOf("https", "registry.local"), "direct");
  for (const char* loopback : {"127.0.0.1", "127.9.9.9", "localhost", "::1", "[::1]"}) {
    EXPECT_EQ(routeOf("https", loopback), "direct") << loopback;
  }
  ScopedEnvironment everything{{"NO_PROXY", "*"}};
  EXPECT_EQ(routeOf("https", "badexample.com"), "direct");
}

TEST(ProxyForTest, CredentialsBecomeBasicAuthAndBadProxiesAreNamedNotShown) {
  auto environment = noProxies();
  {
    ScopedEnvironment set{{"HTTPS_PROXY", "http://agent:p%40ss@proxy.internal"}};
    auto proxy = proxyFor("https", "ecs.us-west-2.amazonaws.com");
    ASSERT_TRUE(proxy && *proxy);
    EXPECT_EQ((*proxy)->port, "1080");
    EXPECT_EQ((*proxy)->authorization, "Basic YWdlbnQ6cEBzcw==");  // agent:p@ss
  }
  ScopedEnvironment socks{{"HTTPS_PROXY", "socks5://agent:secret@proxy.internal:1080"}};
  const std::string route = routeOf("https", "ecs.us-west-2.amazonaws.com");
  EXPECT_EQ(route, "error: HTTPS_PROXY does not name an http:// proxy");
  ScopedEnvironment port{{"HTTPS_PROXY", "http://proxy.internal:web"}};
  EXPECT_EQ(routeOf("https", "ecs.us-west-2.amazonaws.com"),
            "error: HTTPS_PROXY has a port that is not a number");
}

TEST(SharedTlsContextTest, OneTrustStoreServesEveryConnectionOfTheProcess) {
  ScopedEnvironment environment{{"SSL_CERT_FILE", std::nullopt}, {"SSL_CERT_DIR", std::nullopt}};
  auto first = sharedTlsClientContext();
  EXPECT_EQ(sharedTlsClientContext(), first) << "the trust store must be read once, not per user";
  {
    ScopedEnvironment other{{"SSL_CERT_FILE", "/dev/null"}};
    EXPECT_NE(sharedTlsClientContext(), first) << "another trust store needs a context of its own";
  }
}

}  // namespace
}  // namespace ecs::aws
