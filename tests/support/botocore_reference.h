// BotocoreReference: the AWS Python SDK (Debian's python3-botocore) in a child process, as the
// independent reference the SigV4 and ECS API tests compare against: it signs requests with
// botocore.auth.SigV4Auth at a given X-Amz-Date, and validates request bodies against botocore's
// ECS service model. One child serves a whole test (botocore takes a while to import); requests
// and answers are JSON lines over a socket pair. Thread-safe (a loopback server's handlers use it).
// Header-only, so the unit and integration test executables can both use it.
#pragma once

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace ecs::testing {

class BotocoreReference {
 public:
  using Pairs = std::vector<std::pair<std::string, std::string>>;

  struct SignRequest {
    std::string method = "GET";
    std::string url;
    Pairs headers;  // in order; repeated names stay repeated
    std::string body;
    // When set, botocore canonicalises these (its own RFC 3986 encoding) instead of the URL's
    // query.
    std::optional<Pairs> params;
    std::string service = "service", region = "us-east-1";
    std::string access_key = "AKIDEXAMPLE";
    std::string secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    std::string token;  // empty: none
    std::string amz_date = "20150830T123600Z";
    bool content_sha256 = false;  // send X-Amz-Content-SHA256 (the payload hash), as S3 clients do
  };

  struct Signed {
    std::string error;          // empty when botocore signed it
    std::string authorization;  // botocore's Authorization header
    Pairs headers;              // every header after signing
    std::string header(std::string_view name) const {
      std::vector<std::string> values = valuesOf(headers, name);
      return values.empty() ? std::string() : values.front();
    }
  };

  BotocoreReference() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::runtime_error("socketpair failed");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    std::string python = "/usr/bin/python3";
    std::string flag = "-c";
    std::string script = kScript;
    char* argv[] = {python.data(), flag.data(), script.data(), nullptr};
    int rc = posix_spawn(&pid_, python.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
    if (rc != 0) throw std::runtime_error("cannot start /usr/bin/python3");
  }

  ~BotocoreReference() {
    close(fd_);  // EOF on its stdin: the child exits
    int status = 0;
    if (pid_ > 0) waitpid(pid_, &status, 0);
  }
  BotocoreReference(const BotocoreReference&) = delete;
  BotocoreReference& operator=(const BotocoreReference&) = delete;

  Signed sign(const SignRequest& request) {
    boost::json::object query{{"op", "sign"},
                              {"method", request.method},
                              {"url", request.url},
                              {"headers", toJson(request.headers)},
                              {"body", request.body},
                              {"service", request.service},
                              {"region", request.region},
                              {"access_key", request.access_key},
                              {"secret_key", request.secret_key},
                              {"token", request.token},
                              {"amz_date", request.amz_date},
                              {"content_sha256", request.content_sha256}};
    if (request.params) query["params"] = toJson(*request.params);
    boost::json::object answer = ask(query);
    Signed out;
    if (auto* error = answer.if_contains("error")) {
      out.error = std::string(error->as_string());
      return out;
    }
    out.authorization = std::string(answer.at("authorization").as_string());
    for (const auto& pair : answer.at("headers").as_array()) {
      out.headers.emplace_back(std::string(pair.as_array()[0].as_string()),
                               std::string(pair.as_array()[1].as_string()));
    }
    return out;
  }

  // Checks a signed request as a server would: recomputes its Authorization with botocore from
  // the headers it names as signed, its X-Amz-Date, the credential scope it claims and
  // `secret_key`. Empty when they agree; else what differs. `url` is "http://<Host><target>".
  std::string verify(const std::string& method, const std::string& url, const Pairs& headers,
                     const std::string& body, const std::string& secret_key) {
    auto find = [&](std::string_view name) { return valuesOf(headers, name); };
    std::vector<std::string> authorization = find("Authorization");
    if (authorization.size() != 1) return "expected one Authorization header";
    const std::string& auth = authorization[0];
    auto between = [&](std::string_view start) -> std::string {
      size_t from = auth.find(start);
      if (from == std::string::npos) return {};
      from += start.size();
      return auth.substr(from, auth.find(',', from) - from);
    };
    std::vector<std::string> scope = split(between("Credential="), '/');
    if (!auth.starts_with("AWS4-HMAC-SHA256 ") || scope.size() != 5) {
      return "malformed Authorization: " + auth;
    }
    std::vector<std::string> dates = find("X-Amz-Date");
    std::vector<std::string> tokens = find("X-Amz-Security-Token");
    if (dates.size() != 1) return "expected one X-Amz-Date header";
    SignRequest request{.method = method,
                        .url = url,
                        .body = body,
                        .service = scope[3],
                        .region = scope[2],
                        .access_key = scope[0],
                        .secret_key = secret_key,
                        .token = tokens.empty() ? "" : tokens[0],
                        .amz_date = dates[0]};
    for (const std::string& name : split(between("SignedHeaders="), ';')) {
      if (name == "x-amz-date" || name == "x-amz-security-token") continue;  // botocore adds them
      for (const std::string& value : find(name)) request.headers.emplace_back(name, value);
    }
    Signed expected = sign(request);
    if (!expected.error.empty()) return "botocore: " + expected.error;
    if (expected.authorization != auth) {
      return "botocore computes " + expected.authorization + " but the request has " + auth;
    }
    return {};
  }

  // The header fields of a raw request head (the request line skipped), in order.
  static Pairs headerLines(std::string_view head) {
    Pairs out;
    size_t start = head.find("\r\n");
    while (start != std::string_view::npos) {
      start += 2;
      size_t end = head.find("\r\n", start);
      std::string_view line = head.substr(start, end == std::string_view::npos ? end : end - start);
      if (size_t colon = line.find(':'); colon != std::string_view::npos) {
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        out.emplace_back(std::string(line.substr(0, colon)), std::string(value));
      }
      start = end;
    }
    return out;
  }

  // Empty when `body` is valid input for the ECS operation per botocore's model; else botocore's
  // report.
  std::string validateEcsInput(const std::string& operation, const boost::json::object& body) {
    boost::json::object answer =
        ask(boost::json::object{{"op", "validate"}, {"operation", operation}, {"params", body}});
    if (auto* error = answer.if_contains("error")) return std::string(error->as_string());
    return {};
  }

 private:
  static boost::json::array toJson(const Pairs& pairs) {
    boost::json::array out;
    for (const auto& [key, value] : pairs) out.emplace_back(boost::json::array{key, value});
    return out;
  }

  static std::vector<std::string> valuesOf(const Pairs& pairs, std::string_view name) {
    std::vector<std::string> out;
    for (const auto& [key, value] : pairs) {
      if (key.size() == name.size() &&
          std::equal(key.begin(), key.end(), name.begin(),
                     [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
        out.push_back(value);
      }
    }
    return out;
  }

  static std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size() && !text.empty()) {
      size_t end = text.find(separator, start);
      if (end == std::string::npos) end = text.size();
      out.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return out;
  }

  boost::json::object ask(const boost::json::object& query) {
    std::lock_guard lock(mutex_);
    std::string line = boost::json::serialize(query) + "\n";
    for (size_t sent = 0; sent < line.size();) {
      ssize_t n = send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return {{"error", "botocore child is gone"}};
      sent += static_cast<size_t>(n);
    }
    size_t newline;
    while ((newline = buffer_.find('\n')) == std::string::npos) {
      char chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof chunk);
      if (n <= 0) return {{"error", "botocore child is gone (is python3-botocore installed?)"}};
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    std::string reply = buffer_.substr(0, newline);
    buffer_.erase(0, newline + 1);
    return boost::json::parse(reply).as_object();
  }

  static constexpr const char* kScript = R"PY(
import datetime, hashlib, json, sys, types
import botocore.auth as auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.validate import ParamValidator

class Clock(datetime.datetime):
    fixed = None
    @classmethod
    def utcnow(cls):
        return cls.fixed

# SigV4Auth.add_auth reads the time from datetime.datetime.utcnow(); pin it per request.
auth.datetime = types.SimpleNamespace(datetime=Clock)
ecs_model = None

def sign(q):
    Clock.fixed = Clock.strptime(q['amz_date'], '%Y%m%dT%H%M%SZ')
    body = q['body'].encode('utf-8')
    params = [tuple(p) for p in q['params']] if 'params' in q else None
    r = AWSRequest(method=q['method'], url=q['url'], data=body, params=params)
    for k, v in q['headers']:
        r.headers[k] = v
    if q['content_sha256']:
        r.headers['X-Amz-Content-SHA256'] = hashlib.sha256(body).hexdigest()
    creds = Credentials(q['access_key'], q['secret_key'], q['token'] or None)
    auth.SigV4Auth(creds, q['service'], q['region']).add_auth(r)
    return {'authorization': r.headers['Authorization'],
            'headers': [[k, v] for k, v in r.headers.items()]}

def validate(q):
    global ecs_model
    if ecs_model is None:
        ecs_model = botocore.session.get_session().get_service_model('ecs')
    shape = ecs_model.operation_model(q['operation']).input_shape
    report = ParamValidator().validate(q['params'], shape)
    return {'error': report.generate_report()} if report.has_errors() else {}

for line in sys.stdin:
    try:
        q = json.loads(line)
        out = sign(q) if q['op'] == 'sign' else validate(q)
    except Exception as e:
        out = {'error': '%s: %s' % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
)PY";

  pid_t pid_ = -1;
  int fd_ = -1;
  std::mutex mutex_;
  std::string buffer_;
};

}  // namespace ecs::testing
