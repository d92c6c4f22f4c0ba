#include "netns/iptables.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

extern char** environ;

namespace ecs::netns {
namespace {

struct ProcessOutput {
  int status = 0;
  std::string out;  // stdout and stderr, interleaved
};

// Finds the tool where Debian puts it: the agent may run with a PATH that lacks /usr/sbin.
std::string toolPath(const char* name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string path = fmt::format("{}/{}", dir, name);
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return name;
}

// Runs argv with `input` on stdin and returns what it printed. Input and output are small
// (a task's rules, a host's ruleset), but both are pumped together through poll() so neither
// pipe can fill up and stall the child.
Result<ProcessOutput> runProcess(const std::vector<std::string>& args, const std::string& input) {
  int in_pipe[2];
  int out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
    return fail(ErrorCode::kInternal, "pipe: {}", std::strerror(errno));
  }
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    return fail(ErrorCode::kInternal, "pipe: {}", std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDERR_FILENO);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  if (rc != 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    return fail(ErrorCode::kInternal, "run {}: {}", args[0], std::strerror(rc));
  }
  ProcessOutput result;
  size_t written = 0;
  int in_fd = in_pipe[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  int out_fd = out_pipe[0];
  char buffer[16384];
  while (out_fd >= 0) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
    if (::poll(fds, in_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (in_fd >= 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = ::write(in_fd, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 || written == input.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::read(out_fd, buffer, sizeof(buffer));
      if (n > 0) {
        result.out.append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(out_fd);
        out_fd = -1;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  while (::waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {
  }
  return result;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// The words of a rule, quotes stripped and sorted: iptables-save prints a rule's matches in its
// own order ("-d ... -i ..." for "-i ... -d ...") and quotes comments with a colon, but keeps
// the words.
std::vector<std::string> ruleWords(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c == ' ') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else if (c != '"') {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  std::sort(words.begin(), words.end());
  return words;
}

// Whether the rules tagged `tag` in `current` are already exactly `rules`, with those meant to
// come first still first in their chain. Lets ensure() leave a correct ruleset untouched, so
// another agent process re-ensuring the same rules does not reorder anything.
bool alreadyInPlace(const IptablesSnapshot& current, std::string_view tag,
                    const std::vector<IptablesRule>& rules) {
  auto existing = current.tagged(tag);
  if (existing.size() != rules.size()) return false;
  for (const auto& rule : rules) {
    const std::string prefix = fmt::format("-A {} ", rule.chain);
    const auto want = ruleWords(rule.spec);
    auto match = std::find_if(existing.begin(), existing.end(), [&](const auto& line) {
      return line.table == rule.table && line.text.starts_with(prefix) &&
             ruleWords(std::string_view(line.text).substr(prefix.size())) == want;
    });
    if (match == existing.end()) return false;
    if (rule.insert_first) {
      auto first = std::find_if(current.rules.begin(), current.rules.end(), [&](const auto& line) {
        return line.table == rule.table && line.text.starts_with(prefix);
      });
      if (first == current.rules.end() || first->text != match->text) return false;
    }
    existing.erase(match);
  }
  return true;
}

// In-process: two tasks' batches may race on the same "does this chain exist" question.
std::mutex& iptablesMutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

std::string tagMatch(std::string_view tag) {
  return fmt::format("-m comment --comment {}", tag);
}

std::string ruleComment(std::string_view line) {
  constexpr std::string_view kFlag = "--comment ";
  const size_t at = line.find(kFlag);
  if (at == std::string_view::npos) return "";
  size_t i = at + kFlag.size();
  std::string comment;
  if (i < line.size() && line[i] == '"') {
    for (++i; i < line.size() && line[i] != '"'; ++i) {
      if (line[i] == '\\' && i + 1 < line.size()) ++i;
      comment += line[i];
    }
    return comment;
  }
  while (i < line.size() && line[i] != ' ') comment += line[i++];
  return comment;
}

IptablesSnapshot IptablesSnapshot::parse(std::string_view save_output) {
  IptablesSnapshot snapshot;
  std::string table;
  size_t start = 0;
  while (start < save_output.size()) {
    size_t end = save_output.find('\n', start);
    if (end == std::string_view::npos) end = save_output.size();
    const std::string_view line = save_output.substr(start, end - start);
    start = end + 1;
    if (line.starts_with('*')) {
      table = std::string(line.substr(1));
    } else if (line.starts_with(':')) {
      const size_t space = line.find(' ');
      snapshot.chains.emplace_back(table, std::string(line.substr(1, space - 1)));
    } else if (line.starts_with("-A ")) {
      snapshot.rules.push_back({table, std::string(line), ruleComment(line)});
    }
  }
  return snapshot;
}

bool IptablesSnapshot::hasChain(std::string_view table, std::string_view chain) const {
  return std::any_of(chains.begin(), chains.end(),
                     [&](const auto& c) { return c.first == table && c.second == chain; });
}

std::vector<IptablesSnapshot::Line> IptablesSnapshot::tagged(std::string_view tag) const {
  std::vector<Line> out;
  for (const auto& rule : rules) {
    if (rule.comment == tag) out.push_back(rule);
  }
  return out;
}

std::vector<std::string> IptablesSnapshot::tagsWithPrefix(std::string_view prefix) const {
  std::set<std::string> found;
  for (const auto& rule : rules) {
    if (rule.comment.starts_with(prefix)) found.insert(rule.comment.substr(prefix.size()));
  }
  return {found.begin(), found.end()};
}

void IptablesBatch::declareChain(const std::string& table, const std::string& chain) {
  lines_.push_back({table, Kind::kDeclare, fmt::format(":{} - [0:0]", chain)});
}

void IptablesBatch::deleteChain(const std::string& table, const std::string& chain) {
  lines_.push_back({table, Kind::kDeleteChain, fmt::format("-X {}", chain)});
}

void IptablesBatch::add(const IptablesRule& rule) {
  lines_.push_back({rule.table, Kind::kAdd,
                    rule.insert_first ? fmt::format("-I {} 1 {}", rule.chain, rule.spec)
                                      : fmt::format("-A {} {}", rule.chain, rule.spec)});
}

void IptablesBatch::deleteSaved(const std::string& table, std::string_view save_line) {
  std::string text(save_line);
  if (text.starts_with("-A ")) text[1] = 'D';
  lines_.push_back({table, Kind::kDelete, std::move(text)});
}

std::string IptablesBatch::render() const {
  std::vector<std::string> tables;
  for (const auto& line : lines_) {
    if (std::find(tables.begin(), tables.end(), line.table) == tables.end()) {
      tables.push_back(line.table);
    }
  }
  std::string out;
  for (const auto& table : tables) {
    out += fmt::format("*{}\n", table);
    for (Kind kind : {Kind::kDeclare, Kind::kDelete, Kind::kAdd, Kind::kDeleteChain}) {
      for (const auto& line : lines_) {
        if (line.table == table && line.kind == kind) out += line.text + "\n";
      }
    }
    out += "COMMIT\n";
  }
  return out;
}

Result<std::string> Iptables::save() {
  auto ran = runProcess({toolPath("iptables-save")}, "");
  if (!ran) return fail(ran.error());
  if (!WIFEXITED(ran->status) || WEXITSTATUS(ran->status) != 0) {
    return fail(ErrorCode::kInternal, "iptables-save failed: {}", trimmed(ran->out));
  }
  return std::move(ran->out);
}

Result<IptablesSnapshot> Iptables::snapshot() {
  auto saved = save();
  if (!saved) return fail(saved.error());
  return IptablesSnapshot::parse(*saved);
}

Result<void> Iptables::apply(const IptablesBatch& batch) {
  if (batch.empty()) return {};
  const std::string input = batch.render();
  auto ran = runProcess({toolPath("iptables-restore"), "-w", "--noflush"}, input);
  if (!ran) return fail(ran.error());
  if (!WIFEXITED(ran->status) || WEXITSTATUS(ran->status) != 0) {
    return fail(ErrorCode::kInternal, "iptables-restore failed: {} (input: {})", trimmed(ran->out),
                trimmed(input));
  }
  return {};
}

Result<void> Iptables::deleteTagged(std::string_view tag) {
  std::lock_guard lock(iptablesMutex());
  auto current = snapshot();
  if (!current) return fail(current.error());
  IptablesBatch batch;
  for (const auto& line : current->tagged(tag)) batch.deleteSaved(line.table, line.text);
  return apply(batch);
}

Result<void> Iptables::replaceTagged(std::string_view tag, const std::vector<IptablesRule>& rules) {
  std::lock_guard lock(iptablesMutex());
  auto current = snapshot();
  if (!current) return fail(current.error());
  if (alreadyInPlace(*current, tag, rules)) return {};
  IptablesBatch batch;
  std::set<std::pair<std::string, std::string>> declared;
  auto declare = [&](const std::string& table, const std::string& chain) {
    if (!chain.starts_with(kChainPrefix) || current->hasChain(table, chain)) return;
    // Declaring an existing chain in a --noflush restore would flush it: only missing ones.
    if (declared.emplace(table, chain).second) batch.declareChain(table, chain);
  };
  for (const auto& rule : rules) {
    declare(rule.table, rule.chain);
    const size_t jump = rule.spec.find("-j ");
    if (jump != std::string::npos) {
      const size_t start = jump + 3;
      declare(rule.table, rule.spec.substr(start, rule.spec.find(' ', start) - start));
    }
    batch.add(rule);
  }
  for (const auto& line : current->tagged(tag)) batch.deleteSaved(line.table, line.text);
  return apply(batch);
}

Result<void> Iptables::removeChainsIfUnused(std::string_view base_tag) {
  std::lock_guard lock(iptablesMutex());
  auto current = snapshot();
  if (!current) return fail(current.error());
  for (const auto& rule : current->rules) {
    const bool ours = rule.text.starts_with(fmt::format("-A {}", kChainPrefix));
    if ((ours || rule.comment.starts_with("ecs-")) && rule.comment != base_tag) return {};
  }
  IptablesBatch batch;
  for (const auto& line : current->tagged(base_tag)) batch.deleteSaved(line.table, line.text);
  for (const auto& [table, chain] : current->chains) {
    if (chain.starts_with(kChainPrefix)) batch.deleteChain(table, chain);
  }
  return apply(batch);
}

}  // namespace ecs::netns
