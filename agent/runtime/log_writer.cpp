#include "agent/runtime/log_writer.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "agent/common/byte_size.h"

namespace ecs::runtime {

namespace {

Result<uint64_t> parseWhole(std::string_view text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < min || value > max) {
    return fail(ErrorCode::kInvalidArgument, "\"{}\" is not a whole number from {} to {}",
                text.substr(0, 40), min, max);
  }
  return value;
}

std::string numbered(const std::string& path, uint32_t n) {
  return path + "." + std::to_string(n);
}

volatile sig_atomic_t terminate_requested = 0;

void onTerminate(int) {
  terminate_requested = 1;
}

// SIGTERM caught and blocked for the writer's life, delivered only inside poll(); the previous
// handler and mask come back at the end (the writer runs in tests' processes too).
class TerminateGuard {
 public:
  TerminateGuard() {
    terminate_requested = 0;
    struct sigaction action {};
    action.sa_handler = onTerminate;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGTERM, &action, &previous_action_);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &term, &previous_mask_);
    wait_mask_ = previous_mask_;
    sigdelset(&wait_mask_, SIGTERM);
  }
  ~TerminateGuard() {
    ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
    ::sigaction(SIGTERM, &previous_action_, nullptr);
  }
  TerminateGuard(const TerminateGuard&) = delete;
  TerminateGuard& operator=(const TerminateGuard&) = delete;

  bool requested() const { return terminate_requested != 0; }
  int poll(pollfd* fds, nfds_t count, const timespec* timeout) const {
    return ::ppoll(fds, count, timeout, &wait_mask_);
  }

 private:
  struct sigaction previous_action_ {};
  sigset_t previous_mask_{};
  sigset_t wait_mask_{};
};

}  // namespace

OutputLimits containerOutputLimits(const OutputLimits& defaults,
                                   const std::map<std::string, std::string>& json_file_options,
                                   std::vector<std::string>& warnings) {
  OutputLimits limits = defaults;
  if (auto it = json_file_options.find("max-size"); it != json_file_options.end()) {
    if (auto size = parseByteSize(it->second); !size || *size == 0) {
      warnings.push_back(fmt::format("logConfiguration option max-size ignored: {}",
                                     size ? "a size above 0 is needed" : size.error().message));
    } else {
      limits.max_size = *size;
    }
  }
  if (auto it = json_file_options.find("max-file"); it != json_file_options.end()) {
    if (auto files = parseWhole(it->second, 1, OutputLimits::kMaxMaxFiles); !files) {
      warnings.push_back(
          fmt::format("logConfiguration option max-file ignored: {}", files.error().message));
    } else {
      limits.max_files = static_cast<uint32_t>(*files);
    }
  }
  limits.max_size = std::max(limits.max_size, OutputLimits::kMinMaxSize);
  return limits;
}

// --- LineSplitter --------------------------------------------------------------------------------

void LineSplitter::feed(std::string_view data, const Emit& emit) {
  while (!data.empty()) {
    if (pending_.size() == max_) {
      // Only in kNewlineMayFollow: the full piece waited for this byte.
      const bool newline = data.front() == '\n';
      emit(pending_);
      pending_.clear();
      if (newline) data.remove_prefix(1);
      continue;
    }
    const size_t room = max_ - pending_.size();
    const size_t window = std::min(room, data.size());
    const void* nl = std::memchr(data.data(), '\n', window);
    if (nl) {
      const size_t len = static_cast<size_t>(static_cast<const char*>(nl) - data.data());
      if (pending_.empty()) {
        emit(data.substr(0, len));  // the common case: no copy
      } else {
        pending_.append(data.data(), len);
        emit(pending_);
        pending_.clear();
      }
      data.remove_prefix(len + 1);
      continue;
    }
    if (window == room && mode_ == Mode::kSplitAtMax) {
      if (pending_.empty()) {
        emit(data.substr(0, room));
      } else {
        pending_.append(data.data(), room);
        emit(pending_);
        pending_.clear();
      }
      data.remove_prefix(room);
      continue;
    }
    pending_.append(data.data(), window);
    data.remove_prefix(window);
  }
}

void LineSplitter::finish(const Emit& emit) {
  if (pending_.empty()) return;
  emit(pending_);
  pending_.clear();
}

// --- RotatingLogFile -----------------------------------------------------------------------------

RotatingLogFile::RotatingLogFile(std::string path, OutputLimits limits)
    : path_(std::move(path)), limits_(limits) {
  limits_.max_size = std::max(limits_.max_size, OutputLimits::kMinMaxSize);
  limits_.max_files = std::clamp<uint32_t>(limits_.max_files, 1, OutputLimits::kMaxMaxFiles);
  buffer_.reserve(kLogReadChunkBytes + kLogLinePieceBytes + 1);
}

RotatingLogFile::~RotatingLogFile() {
  flush();
  if (fd_ >= 0) ::close(fd_);
}

Result<void> RotatingLogFile::open() {
  if (fd_ >= 0) return {};
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) return fail(ErrorCode::kInternal, "open {}: {}", path_, std::strerror(errno));
  struct stat st {};
  size_ = ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  // Files past the count from an earlier writer with a larger one.
  for (uint32_t n = limits_.max_files; n <= OutputLimits::kMaxMaxFiles; ++n) {
    if (::unlink(numbered(path_, n).c_str()) != 0) break;
  }
  return {};
}

void RotatingLogFile::appendLine(std::string_view line) {
  const size_t n = line.size() + 1;
  if (full_) return;
  if (size() > 0 && size() + n > limits_.max_size) {
    if (limits_.keep_first) {
      // What follows a dropped line is dropped too: the file stays the output's start.
      full_ = true;
      return;
    }
    rotate();
  }
  if (!buffer_.empty() && buffer_.size() + n > kLogReadChunkBytes) flush();
  buffer_.append(line);
  buffer_ += '\n';
}

void RotatingLogFile::flush() {
  if (buffer_.empty()) return;
  if (fd_ < 0) (void)open();  // tried again after an error, at most once a chunk
  size_t done = 0;
  while (fd_ >= 0 && done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  size_ += done;
  dropped_ += buffer_.size() - done;
  buffer_.clear();
}

void RotatingLogFile::rotate() {
  flush();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (limits_.max_files <= 1) {
    ::unlink(path_.c_str());
  } else {
    for (uint32_t n = limits_.max_files - 1; n >= 2; --n) {
      ::rename(numbered(path_, n - 1).c_str(), numbered(path_, n).c_str());
    }
    ::rename(path_.c_str(), numbered(path_, 1).c_str());
  }
  // O_TRUNC only matters when the rename failed: the cap holds even then.
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
  size_ = 0;
}

// --- RotatingLogReader ---------------------------------------------------------------------------

RotatingLogReader::RotatingLogReader(std::string path) : path_(std::move(path)) {}

RotatingLogReader::~RotatingLogReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool RotatingLogReader::openFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  return true;
}

size_t RotatingLogReader::readOpen(size_t budget, bool unbounded, const Emit& emit, bool& at_end) {
  if (buffer_.empty()) buffer_.resize(kLogReadChunkBytes);
  const auto line = [&](std::string_view text) { emit(text, text.size() == splitter_.max()); };
  size_t total = 0;
  at_end = false;
  while (unbounded || total < budget) {
    const size_t want = unbounded ? buffer_.size() : std::min(buffer_.size(), budget - total);
    const ssize_t n = ::read(fd_, buffer_.data(), want);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      at_end = true;
      break;
    }
    total += static_cast<size_t>(n);
    splitter_.feed(std::string_view(buffer_.data(), static_cast<size_t>(n)), line);
  }
  return total;
}

// The file that came after the one open: the next lower number, or the oldest file there is
// when it is gone (what came between was rotated away unread).
std::string RotatingLogReader::successor() const {
  uint32_t oldest = 0;
  for (uint32_t n = 1; n <= OutputLimits::kMaxMaxFiles; ++n) {
    struct stat st {};
    if (::stat(numbered(path_, n).c_str(), &st) != 0) break;
    if (st.st_dev == dev_ && st.st_ino == ino_) return n == 1 ? path_ : numbered(path_, n - 1);
    oldest = n;
  }
  return oldest == 0 ? path_ : numbered(path_, oldest);
}

size_t RotatingLogReader::read(size_t budget, bool final, const Emit& emit) {
  size_t total = 0;
  // Bounded even when final: each round moves to a newer file, and there are so many.
  for (uint32_t round = 0; round <= OutputLimits::kMaxMaxFiles + 1; ++round) {
    if (fd_ < 0 && !openFile(path_)) break;
    bool at_end = false;
    total += readOpen(final ? 0 : budget - std::min(budget, total), final, emit, at_end);
    if (!at_end) break;  // the budget is spent
    struct stat st {};
    if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) break;
    // Rotated: the writer is done with this file, and what it wrote before the rename is there.
    total += readOpen(0, true, emit, at_end);
    const std::string next = successor();
    if (!openFile(next)) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  if (final) {
    splitter_.finish([&](std::string_view text) { emit(text, text.size() == splitter_.max()); });
  }
  return total;
}

// --- the writer ----------------------------------------------------------------------------------

Result<LogWriterOptions> parseLogWriterArgs(const std::vector<std::string>& args) {
  LogWriterOptions options;
  for (size_t i = 0; i < args.size();) {
    const std::string& flag = args[i++];
    if (flag == "--keep-first") {  // the one flag without a value
      options.limits.keep_first = true;
      continue;
    }
    if (i >= args.size()) return fail(ErrorCode::kInvalidArgument, "{} needs a value", flag);
    const std::string& value = args[i++];
    if (flag == "--stdout") {
      options.stdout_path = value;
    } else if (flag == "--stderr") {
      options.stderr_path = value;
    } else if (flag == "--max-size") {
      auto size = parseWhole(value, OutputLimits::kMinMaxSize, UINT64_MAX / 2);
      if (!size) return fail(size.error().wrap("--max-size"));
      options.limits.max_size = *size;
    } else if (flag == "--max-files") {
      auto files = parseWhole(value, 1, OutputLimits::kMaxMaxFiles);
      if (!files) return fail(files.error().wrap("--max-files"));
      options.limits.max_files = static_cast<uint32_t>(*files);
    } else {
      return fail(ErrorCode::kInvalidArgument, "unknown option {:?}", flag);
    }
  }
  for (const auto* path : {&options.stdout_path, &options.stderr_path}) {
    if (!path->empty() && !path->starts_with('/')) {
      return fail(ErrorCode::kInvalidArgument, "{:?} is not an absolute path", *path);
    }
  }
  return options;
}

std::vector<std::string> logWriterArgs(const LogWriterOptions& options) {
  std::vector<std::string> args;
  if (!options.stdout_path.empty()) args.insert(args.end(), {"--stdout", options.stdout_path});
  if (!options.stderr_path.empty()) args.insert(args.end(), {"--stderr", options.stderr_path});
  args.insert(args.end(), {"--max-size", std::to_string(options.limits.max_size), "--max-files",
                           std::to_string(options.limits.max_files)});
  if (options.limits.keep_first) args.emplace_back("--keep-first");
  return args;
}

int runLogWriter(const LogWriterOptions& options, int stdout_fd, int stderr_fd, int ready_fd) {
  struct Stream {
    int fd;
    std::shared_ptr<RotatingLogFile> file;  // null: discarded
    LineSplitter splitter{LineSplitter::Mode::kSplitAtMax};
  };
  std::array<Stream, 2> streams{Stream{stdout_fd, nullptr}, Stream{stderr_fd, nullptr}};
  const std::array<const std::string*, 2> paths{&options.stdout_path, &options.stderr_path};
  for (size_t i = 0; i < streams.size(); ++i) {
    if (paths[i]->empty()) continue;
    if (i == 1 && streams[0].file && *paths[1] == *paths[0]) {
      streams[1].file = streams[0].file;  // one file for both: whole lines interleave
      continue;
    }
    streams[i].file = std::make_shared<RotatingLogFile>(*paths[i], options.limits);
    // An error here is retried as lines come; the container runs either way.
    if (auto opened = streams[i].file->open(); !opened) {
      std::fprintf(stderr, "log-writer: %s\n", opened.error().message.c_str());
    }
  }

  // The shim closes its ends of the pipes and at once sends SIGTERM: dying of it would lose what
  // the pipes still hold and a last line without a newline (often all a health check prints).
  // SIGTERM is blocked except inside ppoll, so it can only end a wait: then what is already in
  // the pipes is read, and the writer finishes.
  TerminateGuard terminate;
  if (ready_fd >= 0) ::close(ready_fd);

  std::vector<char> buffer(kLogReadChunkBytes);
  uint64_t read_since_terminate = 0;
  for (;;) {
    std::array<pollfd, 2> fds{};
    nfds_t count = 0;
    std::array<Stream*, 2> polled{};
    for (auto& s : streams) {
      if (s.fd < 0) continue;
      fds[count] = pollfd{s.fd, POLLIN, 0};
      polled[count++] = &s;
    }
    if (count == 0) break;
    const bool terminating = terminate.requested();
    // A process that still holds a pipe could keep it full forever: after SIGTERM, what the
    // pipes held (64 KiB each by default) and a little more is read, no more.
    if (terminating && read_since_terminate > 16 * kLogReadChunkBytes) break;
    const timespec no_wait{0, 0};
    const int ready = terminate.poll(fds.data(), count, terminating ? &no_wait : nullptr);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready == 0) break;  // terminating, and the pipes are empty
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      Stream& s = *polled[i];
      const ssize_t n =
          (fds[i].revents & POLLNVAL) ? 0 : ::read(s.fd, buffer.data(), buffer.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      const auto emit = [&s](std::string_view line) {
        if (s.file) s.file->appendLine(line);
      };
      if (n > 0) {
        if (terminating) read_since_terminate += static_cast<uint64_t>(n);
        s.splitter.feed(std::string_view(buffer.data(), static_cast<size_t>(n)), emit);
      } else {
        s.splitter.finish(emit);
        if (!(fds[i].revents & POLLNVAL)) ::close(s.fd);
        s.fd = -1;
      }
      if (s.file) s.file->flush();
    }
  }
  // Stopped before end of file (SIGTERM): what was read is written all the same.
  for (auto& s : streams) {
    if (s.fd < 0) continue;
    s.splitter.finish([&s](std::string_view line) {
      if (s.file) s.file->appendLine(line);
    });
    if (s.file) s.file->flush();
    ::close(s.fd);
    s.fd = -1;
  }
  return 0;
}

}  // namespace ecs::runtime
