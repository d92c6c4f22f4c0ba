// The container log writer: what the runc shim runs (as `ecs-node-agent log-writer`, through a
// `binary://` URI) to put a container's stdout and stderr in its files, in bounded memory and
// bounded disk.
//
// On-disk form. Each stream's file (stdout.log, stderr.log) holds plain text lines, one per line
// the container wrote. A line longer than 16 KiB is split: every piece but the last is exactly
// 16 KiB (16,384 bytes) and ends with a newline; the last piece (possibly empty) ends the line.
// So a line of exactly 16 KiB in the file always continues on the next line, and joining such
// lines gives back the container's line. Output that ends without a newline gets one.
//
// Rotation. A file never grows past max_size: before a line would take it over, stdout.log is
// renamed stdout.log.1 (stdout.log.1 becomes stdout.log.2, and so on) and a new stdout.log is
// started; at most max_files files are kept per stream, the current one included (Docker's
// json-file `max-size` and `max-file` meaning). With max_files 1 the full file is removed.
// Files are only ever renamed or removed, never truncated in place, so a reader holding one open
// reads it to its end and then finds its successor.
//
// Keeping the first output instead (keep_first: health-check output, of which only the start is
// ever read): no rotation; once a line would take the file past max_size, that line and all
// that follow are read and dropped, so the file holds the first whole lines that fit.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::runtime {

inline constexpr size_t kLogLinePieceBytes = 16 * 1024;  // longer lines are split
inline constexpr size_t kLogReadChunkBytes = 64 * 1024;  // what one read() takes

// How a container's output files are capped (per stream).
struct OutputLimits {
  static constexpr uint64_t kDefaultMaxSize = 10 * 1024 * 1024;  // ECS_CONTAINER_LOG_MAX_SIZE
  static constexpr uint32_t kDefaultMaxFiles = 5;                // ECS_CONTAINER_LOG_MAX_FILES
  // Smaller sizes are raised to this: a file holds at least a few split pieces.
  static constexpr uint64_t kMinMaxSize = 64 * 1024;
  static constexpr uint32_t kMaxMaxFiles = 100;

  uint64_t max_size = kDefaultMaxSize;    // bytes per file
  uint32_t max_files = kDefaultMaxFiles;  // files per stream, the current one included
  bool keep_first = false;                // one file that stops growing at max_size (see above)
  bool operator==(const OutputLimits&) const = default;
};

// The limits for one container: `defaults` (from the configuration) with the task definition's
// json-file options `max-size` (parseByteSize's form) and `max-file` (1..kMaxMaxFiles) over them.
// A value that does not parse is named in `warnings` and the default kept; a max-size below
// kMinMaxSize is raised to it.
OutputLimits containerOutputLimits(const OutputLimits& defaults,
                                   const std::map<std::string, std::string>& json_file_options,
                                   std::vector<std::string>& warnings);

// Splits a byte stream into lines of at most `max` bytes (without their newline); `emit` gets
// each line or piece. Holds at most `max` bytes between calls.
class LineSplitter {
 public:
  enum class Mode {
    // A piece is emitted as soon as it is `max` bytes long, so a newline right after it ends an
    // (empty) line of its own: the writer's side of the on-disk form.
    kSplitAtMax,
    // A full piece waits for the next byte: a newline ends it, anything else starts the next
    // piece. Reading the writer's files, each file line is one emitted line.
    kNewlineMayFollow,
  };
  using Emit = std::function<void(std::string_view)>;

  explicit LineSplitter(Mode mode, size_t max = kLogLinePieceBytes) : mode_(mode), max_(max) {
    pending_.reserve(max);
  }

  void feed(std::string_view data, const Emit& emit);
  // End of the stream: what is pending becomes the last line (nothing when nothing is pending).
  void finish(const Emit& emit);
  size_t pending() const { return pending_.size(); }
  size_t max() const { return max_; }

 private:
  Mode mode_;
  size_t max_;
  std::string pending_;
};

// One stream's file, rotated by size. Appends whole lines (each with its newline), buffering at
// most kLogReadChunkBytes before it writes.
class RotatingLogFile {
 public:
  RotatingLogFile(std::string path, OutputLimits limits);
  ~RotatingLogFile();
  RotatingLogFile(const RotatingLogFile&) = delete;
  RotatingLogFile& operator=(const RotatingLogFile&) = delete;

  // Opens (creating, appending to what is there) the file. An error is also remembered: lines
  // are then dropped, and opening is tried again at the next rotation.
  Result<void> open();
  // Queues `line` and a newline; rotates first when they would take the file past max_size
  // (with keep_first: drops them, and every later line).
  void appendLine(std::string_view line);
  // Writes what is queued.
  void flush();
  const std::string& path() const { return path_; }
  uint64_t size() const { return size_ + buffer_.size(); }  // of the current file
  uint64_t dropped() const { return dropped_; }             // bytes lost to write errors
  bool full() const { return full_; }  // keep_first: lines are dropped from now on

 private:
  void rotate();

  std::string path_;
  OutputLimits limits_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t dropped_ = 0;
  bool full_ = false;
  std::string buffer_;
};

// Follows one stream's file as the writer rotates it, in bounded memory (one read chunk and one
// piece): reads on from where it stopped, and when its file was rotated away, reads it to its end
// and moves on to its successor (stdout.log.2 -> stdout.log.1 -> stdout.log; the oldest file
// left when its own is gone). Files rotated away before it got to them are skipped.
class RotatingLogReader {
 public:
  // Each file line: `partial` when it is a 16 KiB piece of a longer line that continues next.
  using Emit = std::function<void(std::string_view line, bool partial)>;

  explicit RotatingLogReader(std::string path);
  ~RotatingLogReader();
  RotatingLogReader(const RotatingLogReader&) = delete;
  RotatingLogReader& operator=(const RotatingLogReader&) = delete;

  // Reads about `budget` bytes at most (everything there is when `final`; then a last line
  // without its newline is handed out too). Returns the bytes read; below `budget`: caught up.
  size_t read(size_t budget, bool final, const Emit& emit);

 private:
  bool openFile(const std::string& path);
  size_t readOpen(size_t budget, bool unbounded, const Emit& emit, bool& at_end);
  std::string successor() const;

  std::string path_;
  int fd_ = -1;
  uint64_t dev_ = 0;
  uint64_t ino_ = 0;
  LineSplitter splitter_{LineSplitter::Mode::kNewlineMayFollow};
  std::vector<char> buffer_;
};

struct LogWriterOptions {
  // Empty: the stream is read and discarded. The same path for both: one file, whole lines of
  // either stream in the order they were read.
  std::string stdout_path;
  std::string stderr_path;
  OutputLimits limits;
};

// `log-writer --stdout PATH --stderr PATH --max-size BYTES --max-files N --keep-first` (each
// optional).
Result<LogWriterOptions> parseLogWriterArgs(const std::vector<std::string>& args);
// The command line of the writer (after the program), for the shim to run.
std::vector<std::string> logWriterArgs(const LogWriterOptions& options);

// Copies stdout_fd and stderr_fd to their files until both reach end of file, then returns 0.
// Opens the files, then closes ready_fd (when >= 0): the shim waits for that before it starts the
// container. Memory stays bounded whatever comes in. On SIGTERM (what the shim sends right after
// closing its ends of the pipes, when the task or exec is deleted) it reads what the pipes hold
// already, writes it, and returns 0; the signal's disposition and mask are restored on return.
int runLogWriter(const LogWriterOptions& options, int stdout_fd = 3, int stderr_fd = 4,
                 int ready_fd = 5);

}  // namespace ecs::runtime
