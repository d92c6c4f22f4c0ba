// The default credential chain: environment, shared files, IMDSv2, behind one cache.
#include "agent/aws/credentials.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "agent/aws/imds_client.h"

namespace ecs::aws {

using Clock = std::chrono::system_clock;
using Getenv = std::function<std::optional<std::string>(const std::string&)>;

std::string formatExpiration(Clock::time_point t) {
  const std::time_t seconds = Clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", utc.tm_year + 1900, utc.tm_mon + 1,
                     utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

namespace {

// Reads exactly `width` digits at `pos`, advancing it.
std::optional<int> digits(std::string_view text, size_t& pos, size_t width) {
  if (pos + width > text.size()) return std::nullopt;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + width, value);
  if (ec != std::errc{} || end != text.data() + pos + width) return std::nullopt;
  pos += width;
  return value;
}

bool expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || std::toupper(static_cast<unsigned char>(text[pos])) != c) return false;
  ++pos;
  return true;
}

std::string trim(std::string_view s) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

Result<Clock::time_point> parseExpiration(std::string_view text) {
  const auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument, "expiration {:?} is not an RFC3339 time",
                std::string(text));
  };
  size_t pos = 0;
  auto year = digits(text, pos, 4);
  if (!year || !expect(text, pos, '-')) return bad();
  auto month = digits(text, pos, 2);
  if (!month || !expect(text, pos, '-')) return bad();
  auto day = digits(text, pos, 2);
  if (!day || !expect(text, pos, 'T')) return bad();
  auto hour = digits(text, pos, 2);
  if (!hour || !expect(text, pos, ':')) return bad();
  auto minute = digits(text, pos, 2);
  if (!minute || !expect(text, pos, ':')) return bad();
  auto second = digits(text, pos, 2);
  if (!second) return bad();
  // Fractional seconds: IMDS does not send them, but other writers of these files do; dropped.
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const size_t start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) ++pos;
    if (pos == start) return bad();
  }
  std::chrono::minutes offset{0};
  if (expect(text, pos, 'Z')) {
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    // "+01:00" (RFC 3339) or "+0100" (what ACS sends in IAMRoleCredentials.expiration).
    auto oh = digits(text, pos, 2);
    if (!oh) return bad();
    (void)expect(text, pos, ':');
    auto om = digits(text, pos, 2);
    if (!om) return bad();
    offset = std::chrono::minutes(sign * (*oh * 60 + *om));
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();

  const std::chrono::year_month_day date{std::chrono::year(*year),
                                         std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return bad();
  return std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
         std::chrono::seconds(*second) - offset;
}

std::optional<std::string> processGetenv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

namespace {

// One link of the chain. `absent` means "nothing configured here, try the next source"; an error
// means the source is configured but broken, which stops the chain, as the AWS SDKs do, so that a
// typo in one place never silently falls through to other (perhaps more powerful) credentials.
struct SourceOutcome {
  std::optional<Credentials> credentials;
  std::string absent;  // why nothing was found, when credentials is empty
};

std::optional<std::string> nonEmpty(const Getenv& getenv, const std::string& name) {
  auto value = getenv(name);
  if (!value || value->empty()) return std::nullopt;
  return value;
}

Result<SourceOutcome> fromEnvironment(const Getenv& getenv) {
  auto key = nonEmpty(getenv, "AWS_ACCESS_KEY_ID");
  auto secret = nonEmpty(getenv, "AWS_SECRET_ACCESS_KEY");
  if (!key && !secret) return SourceOutcome{.absent = "AWS_ACCESS_KEY_ID is not set"};
  if (!key || !secret) {
    return fail(ErrorCode::kInvalidArgument, "{} is set but {} is not",
                key ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                key ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
  }
  Credentials c{.access_key_id = *key, .secret_access_key = *secret, .source = "environment"};
  // AWS_SECURITY_TOKEN is the older name the SDKs still accept.
  auto token = nonEmpty(getenv, "AWS_SESSION_TOKEN");
  if (!token) token = nonEmpty(getenv, "AWS_SECURITY_TOKEN");
  if (token) c.session_token = *token;
  if (auto expiration = nonEmpty(getenv, "AWS_CREDENTIAL_EXPIRATION")) {
    auto parsed = parseExpiration(*expiration);
    if (!parsed) return fail(parsed.error().wrap("AWS_CREDENTIAL_EXPIRATION"));
    c.expiration = *parsed;
  }
  return SourceOutcome{.credentials = std::move(c)};
}

// An INI file as the AWS CLI reads it: sections of `key = value`; full-line comments (# or ;);
// keys are case-insensitive; continuation lines (nested values such as `s3 =`) are ignored.
using IniFile = std::map<std::string, std::map<std::string, std::string>>;

IniFile parseIni(std::istream& in) {
  IniFile sections;
  std::map<std::string, std::string>* current = nullptr;
  // Indentation of the last key; a line indented deeper continues its value (Python's
  // configparser rule, which the AWS CLI inherits), e.g. the nested `s3 =` settings.
  size_t key_indent = std::string::npos;  // npos: no key yet
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string text = trim(line);
    if (text.empty() || text.front() == '#' || text.front() == ';') continue;
    const size_t indent = line.find_first_not_of(" \t");
    if (key_indent != std::string::npos && indent > key_indent) continue;
    key_indent = std::string::npos;
    if (text.front() == '[') {
      const auto close = text.find(']');
      current = close == std::string::npos ? nullptr : &sections[trim(text.substr(1, close - 1))];
      continue;
    }
    const auto eq = text.find('=');
    if (current == nullptr || eq == std::string::npos) continue;
    (*current)[lower(trim(text.substr(0, eq)))] = trim(text.substr(eq + 1));
    key_indent = indent;
  }
  return sections;
}

// Reads an INI file; nullopt when it does not exist, an error when it exists but cannot be read
// (a directory, no permission): that is a broken source, not an absent one.
Result<std::optional<IniFile>> readIni(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found) return std::nullopt;
  if (ec) return fail(ErrorCode::kFailedPrecondition, "read {}: {}", path, ec.message());
  if (status.type() != std::filesystem::file_type::regular) {
    return fail(ErrorCode::kFailedPrecondition, "read {}: not a regular file", path);
  }
  std::ifstream in(path);
  if (!in) {
    return fail(ErrorCode::kFailedPrecondition, "read {}: {}", path, std::strerror(errno));
  }
  auto ini = parseIni(in);
  if (in.bad()) {
    return fail(ErrorCode::kFailedPrecondition, "read {}: {}", path, std::strerror(errno));
  }
  return ini;
}

// The keys of one profile, as a source: absent when the profile has no aws_access_key_id.
Result<std::optional<Credentials>> profileCredentials(
    const std::map<std::string, std::string>& keys, const std::string& path,
    const std::string& source) {
  const auto value = [&](const char* key) -> std::optional<std::string> {
    auto it = keys.find(key);
    if (it == keys.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
  auto key = value("aws_access_key_id");
  auto secret = value("aws_secret_access_key");
  if (!key && !secret) return std::nullopt;
  if (!key || !secret) {
    return fail(ErrorCode::kInvalidArgument, "{}: {} has {} but no {}", path, source,
                key ? "aws_access_key_id" : "aws_secret_access_key",
                key ? "aws_secret_access_key" : "aws_access_key_id");
  }
  Credentials c{.access_key_id = *key, .secret_access_key = *secret, .source = source};
  auto token = value("aws_session_token");
  if (!token) token = value("aws_security_token");
  if (token) c.session_token = *token;
  return c;
}

struct SharedFiles {
  std::string credentials_path, config_path, profile;
  bool profile_explicit = false;
};

SharedFiles sharedFiles(const Getenv& getenv, const std::string& home) {
  SharedFiles files;
  const auto in_home = [&](const char* name) {
    return home.empty() ? std::string() : fmt::format("{}/.aws/{}", home, name);
  };
  files.credentials_path =
      nonEmpty(getenv, "AWS_SHARED_CREDENTIALS_FILE").value_or(in_home("credentials"));
  files.config_path = nonEmpty(getenv, "AWS_CONFIG_FILE").value_or(in_home("config"));
  // AWS_DEFAULT_PROFILE is the older name; AWS_PROFILE wins when both are set.
  auto profile = nonEmpty(getenv, "AWS_PROFILE");
  if (!profile) profile = nonEmpty(getenv, "AWS_DEFAULT_PROFILE");
  files.profile_explicit = profile.has_value();
  files.profile = profile.value_or("default");
  return files;
}

Result<SourceOutcome> fromSharedFiles(const SharedFiles& files) {
  const std::string& profile = files.profile;
  std::vector<std::string> absent;
  bool profile_found = false;

  // The credentials file names sections after the profile; it wins over the config file.
  if (files.credentials_path.empty()) {
    absent.push_back("no credentials file (HOME is not set)");
  } else {
    auto ini = readIni(files.credentials_path);
    if (!ini) return fail(ini.error());
    if (!*ini) {
      absent.push_back(fmt::format("{} does not exist", files.credentials_path));
    } else if (auto section = (*ini)->find(profile); section == (*ini)->end()) {
      absent.push_back(fmt::format("{} has no [{}]", files.credentials_path, profile));
    } else {
      profile_found = true;
      auto c = profileCredentials(section->second, files.credentials_path,
                                  "shared-credentials-file:" + profile);
      if (!c) return fail(c.error());
      if (*c) return SourceOutcome{.credentials = std::move(**c)};
      absent.push_back(
          fmt::format("{} [{}] has no aws_access_key_id", files.credentials_path, profile));
    }
  }

  // The config file names them `[profile x]`, except `[default]`.
  if (files.config_path.empty()) {
    absent.push_back("no config file (HOME is not set)");
  } else {
    auto ini = readIni(files.config_path);
    if (!ini) return fail(ini.error());
    const std::string section_name = profile == "default" ? profile : "profile " + profile;
    if (!*ini) {
      absent.push_back(fmt::format("{} does not exist", files.config_path));
    } else if (auto section = (*ini)->find(section_name); section == (*ini)->end()) {
      absent.push_back(fmt::format("{} has no [{}]", files.config_path, section_name));
    } else {
      profile_found = true;
      auto c =
          profileCredentials(section->second, files.config_path, "shared-config-file:" + profile);
      if (!c) return fail(c.error());
      if (*c) return SourceOutcome{.credentials = std::move(**c)};
      absent.push_back(
          fmt::format("{} [{}] has no aws_access_key_id", files.config_path, section_name));
    }
  }

  // A profile someone asked for by name must exist, or the chain would quietly pick other
  // credentials (the SDKs raise ProfileNotFound here).
  if (files.profile_explicit && !profile_found) {
    return fail(ErrorCode::kNotFound, "profile {:?} (AWS_PROFILE) is in neither {} nor {}", profile,
                files.credentials_path, files.config_path);
  }
  return SourceOutcome{.absent = fmt::format("{}", fmt::join(absent, ", "))};
}

bool imdsDisabled(const Getenv& getenv) {
  auto value = getenv("AWS_EC2_METADATA_DISABLED");
  return value && lower(trim(*value)) == "true";
}

class DefaultCredentialChain : public CredentialsProvider {
 public:
  explicit DefaultCredentialChain(CredentialChainOptions options) : options_(std::move(options)) {
    if (!options_.getenv) options_.getenv = processGetenv;
    if (!options_.now) options_.now = [] { return Clock::now(); };
    if (options_.home.empty()) options_.home = nonEmpty(options_.getenv, "HOME").value_or("");
  }

  Result<Credentials> credentials() override {
    // One lock across the refresh: concurrent callers wait for one resolution instead of each
    // asking IMDS.
    std::lock_guard lock(mutex_);
    const auto now = options_.now();
    if (cached_ && fresh(*cached_, now)) return *cached_;

    auto resolved = resolve();
    if (!resolved) {
      // Expiring soon but not yet expired: better to serve them than to fail a caller now.
      if (cached_ && cached_->expiration && now < *cached_->expiration) {
        spdlog::warn("AWS credentials: refresh failed, keeping those from {} (expire {}): {}",
                     cached_->source, formatExpiration(*cached_->expiration),
                     resolved.error().message);
        return *cached_;
      }
      return resolved;
    }
    spdlog::info("AWS credentials from {}{}", resolved->source,
                 resolved->expiration
                     ? fmt::format(", expiring {}", formatExpiration(*resolved->expiration))
                     : std::string());
    cached_ = *resolved;
    return resolved;
  }

 private:
  static bool fresh(const Credentials& c, Clock::time_point now) {
    return !c.expiration || now < *c.expiration - kCredentialsRefreshMargin;
  }

  Result<Credentials> resolve() {
    const Getenv& getenv = options_.getenv;
    std::vector<std::string> tried;
    const auto broken = [&](std::string_view source, const Error& error) {
      tried.push_back(fmt::format("{}: {}", source, error.message));
      return fail(error.code, "AWS credentials: {}", fmt::join(tried, "; "));
    };

    auto env = fromEnvironment(getenv);
    if (!env) return broken("environment", env.error());
    if (env->credentials) return std::move(*env->credentials);
    tried.push_back("environment: " + env->absent);

    auto shared = fromSharedFiles(sharedFiles(getenv, options_.home));
    if (!shared) return broken("shared files", shared.error());
    if (shared->credentials) return std::move(*shared->credentials);
    tried.push_back("shared files: " + shared->absent);

    if (imdsDisabled(getenv)) {
      tried.push_back("imds: disabled by AWS_EC2_METADATA_DISABLED");
    } else {
      // Made once, so the IMDS session token is reused across refreshes.
      if (!imds_) imds_ = std::make_unique<ImdsClient>(ImdsClient::optionsFromEnvironment(getenv));
      auto role = imds_->roleCredentials();
      if (role) return role;
      tried.push_back("imds: " + role.error().message);
    }
    return fail(ErrorCode::kNotFound, "no AWS credentials found (tried {})",
                fmt::join(tried, "; "));
  }

  CredentialChainOptions options_;
  std::mutex mutex_;
  std::optional<Credentials> cached_;
  std::unique_ptr<ImdsClient> imds_;
};

}  // namespace

std::unique_ptr<CredentialsProvider> makeDefaultCredentialChain(CredentialChainOptions options) {
  return std::make_unique<DefaultCredentialChain>(std::move(options));
}

}  // namespace ecs::aws
