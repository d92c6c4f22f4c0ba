#include "agent/images/image_reference.h"

#include <algorithm>
#include <array>

namespace ecs::images {
namespace {

constexpr std::string_view kDockerHubDomain = "docker.io";
constexpr std::string_view kDockerHubLegacyDomain = "index.docker.io";
constexpr std::string_view kDockerHubRegistryHost = "registry-1.docker.io";
constexpr size_t kNameTotalLengthMax = 255;  // Docker's limit on "domain/repository"
constexpr size_t kTagLengthMax = 128;

// Locale-independent character classes (std::isalpha and friends depend on the C locale and
// are undefined for negative chars).
bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool isAlnum(char c) {
  return isLowerAlnum(c) || (c >= 'A' && c <= 'Z');
}
bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isLowerHex(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f');
}
bool isHex(char c) {
  return isLowerHex(c) || (c >= 'A' && c <= 'F');
}
bool isWord(char c) {
  return isAlnum(c) || c == '_';
}

bool allOf(std::string_view s, bool (*pred)(char)) {
  return std::all_of(s.begin(), s.end(), pred);
}

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := "." | "_" | "__" | "-"+
bool isValidPathComponent(std::string_view c) {
  size_t i = 0;
  auto alnumRun = [&] {
    size_t start = i;
    while (i < c.size() && isLowerAlnum(c[i])) ++i;
    return i > start;
  };
  if (!alnumRun()) return false;
  while (i < c.size()) {
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < c.size() && c[i] == '_') ++i;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnumRun()) return false;
  }
  return true;
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool isValidDomainComponent(std::string_view c) {
  if (c.empty() || !isAlnum(c.front()) || !isAlnum(c.back())) return false;
  return allOf(c, [](char ch) { return isAlnum(ch) || ch == '-'; });
}

// domain := host [":" port]; host := domain-name | IPv4 | "[" IPv6 "]"
bool isValidDomain(std::string_view domain) {
  std::string_view host = domain;
  std::string_view port;
  if (domain.starts_with('[')) {
    size_t close = domain.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    std::string_view ipv6 = domain.substr(1, close - 1);
    if (!allOf(ipv6, [](char ch) { return isHex(ch) || ch == ':'; })) return false;
    std::string_view rest = domain.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = {};
  } else if (size_t colon = domain.find(':'); colon != std::string_view::npos) {
    host = domain.substr(0, colon);
    port = domain.substr(colon + 1);
    if (port.empty()) return false;
  }
  if (!allOf(port, isDigit)) return false;
  while (!host.empty()) {
    size_t dot = host.find('.');
    if (!isValidDomainComponent(host.substr(0, dot))) return false;
    if (dot == std::string_view::npos) break;
    host.remove_prefix(dot + 1);
    if (host.empty()) return false;  // trailing dot
  }
  return true;
}

// Docker treats the first component as a registry only if it looks like one; "team/app" is a
// Docker Hub repository.
bool looksLikeDomain(std::string_view component) {
  return component.find_first_of(".:") != std::string_view::npos || component == "localhost";
}

std::unexpected<Error> invalid(std::string_view text, std::string_view fault) {
  return fail(ErrorCode::kInvalidArgument, "invalid image reference \"{}\": {}", text, fault);
}

}  // namespace

Result<void> validateDigest(std::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument, "digest \"{}\" is not of the form algorithm:hex",
                digest);
  }
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view hex = digest.substr(colon + 1);
  // The algorithms go-digest (and so containerd and every registry) accepts.
  static constexpr std::array<std::pair<std::string_view, size_t>, 3> kAlgorithms{
      {{"sha256", 64}, {"sha384", 96}, {"sha512", 128}}};
  auto it = std::find_if(kAlgorithms.begin(), kAlgorithms.end(),
                         [&](const auto& a) { return a.first == algorithm; });
  if (it == kAlgorithms.end()) {
    return fail(ErrorCode::kInvalidArgument,
                "digest \"{}\": unsupported algorithm \"{}\" (want sha256, sha384 or sha512)",
                digest, algorithm);
  }
  if (hex.size() != it->second || !allOf(hex, isLowerHex)) {
    return fail(ErrorCode::kInvalidArgument,
                "digest \"{}\": {} needs exactly {} lowercase hex characters", digest, algorithm,
                it->second);
  }
  return {};
}

Result<ImageReference> ImageReference::parse(std::string_view text) {
  if (text.empty()) return invalid(text, "empty image name");
  // A bare image ID would be ambiguous with a repository name; Docker refuses it.
  if (text.size() == 64 && allOf(text, isLowerHex)) {
    return invalid(text, "a 64-character hexadecimal string is an image ID, not a repository name");
  }

  ImageReference ref;
  std::string_view name = text;
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    std::string_view digest = name.substr(at + 1);
    if (auto ok = validateDigest(digest); !ok) return invalid(text, ok.error().message);
    ref.digest = digest;
    name = name.substr(0, at);
  }
  // A tag's ':' comes after the last '/': in "localhost:5000/app" the ':' belongs to the domain.
  if (size_t colon = name.rfind(':');
      colon != std::string_view::npos &&
      (name.rfind('/') == std::string_view::npos || colon > name.rfind('/'))) {
    std::string_view tag = name.substr(colon + 1);
    if (tag.empty() || tag.size() > kTagLengthMax || !isWord(tag.front()) ||
        !allOf(tag, [](char c) { return isWord(c) || c == '.' || c == '-'; })) {
      return invalid(text,
                     fmt::format("tag \"{}\" must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}", tag));
    }
    ref.tag = tag;
    name = name.substr(0, colon);
  }
  if (name.empty()) return invalid(text, "missing repository name");

  std::string_view repository = name;
  ref.domain = kDockerHubDomain;
  if (size_t slash = name.find('/');
      slash != std::string_view::npos && looksLikeDomain(name.substr(0, slash))) {
    std::string_view domain = name.substr(0, slash);
    if (!isValidDomain(domain)) {
      return invalid(text, fmt::format("registry \"{}\" is not a valid host[:port]", domain));
    }
    ref.domain = domain == kDockerHubLegacyDomain ? kDockerHubDomain : domain;
    repository = name.substr(slash + 1);
  }

  if (std::any_of(repository.begin(), repository.end(),
                  [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return invalid(text, fmt::format("repository name \"{}\" must be lowercase", repository));
  }
  if (repository.empty()) return invalid(text, "missing repository name");
  for (std::string_view rest = repository;;) {
    size_t slash = rest.find('/');
    std::string_view component = rest.substr(0, slash);
    if (!isValidPathComponent(component)) {
      return invalid(text, fmt::format("repository path component \"{}\" is invalid (want "
                                       "lowercase letters and digits separated by '.', '_', '__' "
                                       "or '-')",
                                       component));
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }

  // Official images live under "library/" on Docker Hub: "busybox" is "library/busybox".
  ref.repository = repository;
  if (ref.domain == kDockerHubDomain && repository.find('/') == std::string_view::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.name().size() > kNameTotalLengthMax) {
    return invalid(text, fmt::format("name is longer than {} characters", kNameTotalLengthMax));
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::string ImageReference::name() const {
  return domain + "/" + repository;
}

std::string ImageReference::str() const {
  std::string out = name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string ImageReference::manifestReference() const {
  return digest.empty() ? tag : digest;
}

std::string ImageReference::registryHost() const {
  return isDockerHub() ? std::string(kDockerHubRegistryHost) : domain;
}

bool ImageReference::isDockerHub() const {
  return domain == kDockerHubDomain;
}

}  // namespace ecs::images
