#include "agent/images/registry_auth.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "agent/common/base64.h"
#include "agent/common/text.h"

namespace ecs::images {
namespace {

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && text::lowercase(s.substr(0, prefix.size())) == prefix;
}

// Docker Hub goes by several names; keys and images using any of them mean the same registry.
bool isDockerHubHost(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

const boost::json::string* stringField(const boost::json::object& object, std::string_view key) {
  const boost::json::value* value = object.if_contains(key);
  return value != nullptr ? value->if_string() : nullptr;
}

// `docker`: {"username": "…", "password": "…", "email": "…"}
Result<BasicCredentials> parseDockerEntry(const boost::json::value& value) {
  const boost::json::object* object = value.if_object();
  if (object == nullptr) return fail(ErrorCode::kInvalidArgument, "not a JSON object");
  const boost::json::string* username = stringField(*object, "username");
  if (username == nullptr || username->empty()) {
    return fail(ErrorCode::kInvalidArgument, "no \"username\"");
  }
  const boost::json::string* password = stringField(*object, "password");
  if (object->contains("password") && password == nullptr) {
    return fail(ErrorCode::kInvalidArgument, "\"password\" is not a string");
  }
  return BasicCredentials{std::string(*username), password ? std::string(*password) : ""};
}

// `dockercfg`: {"auth": "<base64 of user:password>", "email": "…"}
Result<BasicCredentials> parseDockercfgEntry(const boost::json::value& value) {
  const boost::json::object* object = value.if_object();
  if (object == nullptr) return fail(ErrorCode::kInvalidArgument, "not a JSON object");
  const boost::json::string* auth = stringField(*object, "auth");
  if (auth == nullptr) return fail(ErrorCode::kInvalidArgument, "no \"auth\" string");
  std::optional<std::string> decoded = decodeBase64(*auth);
  if (!decoded) return fail(ErrorCode::kInvalidArgument, "\"auth\" is not valid base64");
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "\"auth\" does not decode to user:password");
  }
  if (colon == 0) return fail(ErrorCode::kInvalidArgument, "\"auth\" has an empty user name");
  return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

struct RegistryKey {
  std::string host;  // lower-cased host[:port]; "docker.io" for any Docker Hub name
  std::string path;  // repository prefix, no leading or trailing '/'
};

// "https://index.docker.io/v1/" -> {docker.io, ""}; "http://reg:5000/team/" -> {reg:5000, team}
RegistryKey normaliseKey(std::string_view key) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (startsWithIgnoreCase(key, scheme)) key.remove_prefix(scheme.size());
  }
  size_t slash = key.find('/');
  RegistryKey out{text::lowercase(key.substr(0, slash)), ""};
  if (slash != std::string_view::npos) {
    std::string_view path = key.substr(slash + 1);
    while (path.ends_with('/')) path.remove_suffix(1);
    out.path = path;
  }
  if (isDockerHubHost(out.host)) {
    out.host = "docker.io";
    if (out.path == "v1") out.path.clear();  // the legacy index URL names no repository
  }
  return out;
}

bool pathMatches(std::string_view prefix, std::string_view repository) {
  if (prefix.empty()) return true;
  return repository == prefix ||
         (repository.starts_with(prefix) && repository[prefix.size()] == '/');
}

}  // namespace

std::string basicAuthorization(const BasicCredentials& credentials) {
  return "Basic " + encodeBase64(credentials.username + ":" + credentials.password);
}

std::unique_ptr<EngineAuthProvider> EngineAuthProvider::fromConfig(
    const std::string& auth_type, const std::string& auth_data,
    std::vector<std::string>* warnings) {
  auto provider = std::make_unique<EngineAuthProvider>();
  auto warn = [&](std::string line) {
    if (warnings != nullptr) {
      warnings->push_back(std::move(line));
    } else {
      spdlog::warn("{}", line);
    }
  };

  if (auth_type.empty()) {
    if (!auth_data.empty()) {
      warn("ECS_ENGINE_AUTH_DATA is set but ECS_ENGINE_AUTH_TYPE is not; no registry credentials");
    }
    return provider;
  }
  if (auth_type != "docker" && auth_type != "dockercfg") {
    warn(fmt::format(
        "ECS_ENGINE_AUTH_TYPE \"{}\" is not \"docker\" or \"dockercfg\"; no registry credentials",
        auth_type));
    return provider;
  }
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(auth_data, ec);
  if (ec || !root.is_object()) {
    // The data may hold passwords: name the fault, never quote the input.
    warn(fmt::format("ECS_ENGINE_AUTH_DATA is not a JSON object ({}); no registry credentials",
                     ec ? ec.message() : "wrong JSON type"));
    return provider;
  }

  for (const auto& [key, value] : root.as_object()) {
    Result<BasicCredentials> credentials =
        auth_type == "docker" ? parseDockerEntry(value) : parseDockercfgEntry(value);
    if (!credentials) {
      warn(fmt::format("ECS_ENGINE_AUTH_DATA entry \"{}\": {}; skipped", std::string_view(key),
                       credentials.error().message));
      continue;
    }
    RegistryKey normalised = normaliseKey(key);
    if (normalised.host.empty()) {
      warn(fmt::format("ECS_ENGINE_AUTH_DATA entry \"{}\": no registry host; skipped",
                       std::string_view(key)));
      continue;
    }
    auto same = std::find_if(
        provider->entries_.begin(), provider->entries_.end(),
        [&](const Entry& e) { return e.host == normalised.host && e.path == normalised.path; });
    if (same != provider->entries_.end()) {
      warn(
          fmt::format("ECS_ENGINE_AUTH_DATA entry \"{}\" names the same registry as an earlier "
                      "entry; the later one is used",
                      std::string_view(key)));
      provider->entries_.erase(same);
    }
    provider->entries_.push_back(
        Entry{std::move(normalised.host), std::move(normalised.path), std::move(*credentials)});
  }
  return provider;
}

std::optional<BasicCredentials> EngineAuthProvider::lookup(const ImageReference& image) const {
  std::string host = text::lowercase(image.domain);
  if (isDockerHubHost(host)) host = "docker.io";
  // Longest matching repository prefix wins; a key without a path matches the whole registry.
  const Entry* best = nullptr;
  for (const Entry& entry : entries_) {
    if (entry.host != host || !pathMatches(entry.path, image.repository)) continue;
    if (best == nullptr || entry.path.size() > best->path.size()) best = &entry;
  }
  if (best == nullptr) return std::nullopt;
  return best->credentials;
}

// challenge = scheme 1*SP param *( "," param ); param = name "=" ( token / quoted-string )
std::optional<AuthChallenge> AuthChallenge::parse(std::string_view header) {
  auto isSpace = [](char c) { return c == ' ' || c == '\t'; };
  size_t i = 0;
  while (i < header.size() && isSpace(header[i])) ++i;
  size_t start = i;
  while (i < header.size() && !isSpace(header[i]) && header[i] != ',') ++i;
  if (i == start) return std::nullopt;
  AuthChallenge challenge;
  challenge.scheme = text::lowercase(header.substr(start, i - start));

  while (i < header.size()) {
    while (i < header.size() && (isSpace(header[i]) || header[i] == ',')) ++i;
    if (i == header.size()) break;
    start = i;
    while (i < header.size() && header[i] != '=' && !isSpace(header[i]) && header[i] != ',') ++i;
    std::string name = text::lowercase(header.substr(start, i - start));
    if (i == header.size() || header[i] != '=') break;  // a second challenge or a token68 blob
    ++i;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      // Quoted values may hold commas and backslash escapes (RFC 7230 quoted-string).
      bool closed = false;
      for (++i; i < header.size(); ++i) {
        if (header[i] == '\\' && i + 1 < header.size()) {
          value += header[++i];
        } else if (header[i] == '"') {
          closed = true;
          ++i;
          break;
        } else {
          value += header[i];
        }
      }
      if (!closed) return std::nullopt;
    } else {
      start = i;
      while (i < header.size() && header[i] != ',' && !isSpace(header[i])) ++i;
      value = header.substr(start, i - start);
    }
    if (name == "realm") {
      challenge.realm = std::move(value);
    } else if (name == "service") {
      challenge.service = std::move(value);
    } else if (name == "scope") {
      challenge.scope = std::move(value);
    } else if (name == "error") {
      challenge.error = std::move(value);
    }
  }
  return challenge;
}

}  // namespace ecs::images
