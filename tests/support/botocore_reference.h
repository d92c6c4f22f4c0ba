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
      for (const auto& [key, value] : headers) {
        if (key.size() == name.size() &&
            std::equal(key.begin(), key.end(), name.begin(),
                       [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
          return value;
        }
      }
      return {};
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
