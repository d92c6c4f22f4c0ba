// The container log writer's pieces: Docker-form sizes, per-container limits, the line splitter,
// size-based rotation, the reader that follows rotation, and the writer loop over pipes.
#include "agent/runtime/log_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "agent/common/byte_size.h"

namespace ecs::runtime {
namespace {

namespace fs = std::filesystem;

std::string readAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// --- sizes and limits ----------------------------------------------------------------------------

TEST(ByteSizeTest, DockerForms) {
  EXPECT_EQ(*parseByteSize("100"), 100u);
  EXPECT_EQ(*parseByteSize("512k"), 512u * 1024);
  EXPECT_EQ(*parseByteSize("10m"), 10u << 20);
  EXPECT_EQ(*parseByteSize("10M"), 10u << 20);
  EXPECT_EQ(*parseByteSize("10MB"), 10u << 20);
  EXPECT_EQ(*parseByteSize("10MiB"), 10u << 20);
  EXPECT_EQ(*parseByteSize("10 m"), 10u << 20);
  EXPECT_EQ(*parseByteSize("1g"), 1ull << 30);
  EXPECT_EQ(*parseByteSize("1.5k"), 1536u);
  EXPECT_EQ(*parseByteSize("2t"), 2ull << 40);
  for (const char* bad : {"", "m", "-1m", "10x", "1.m", "10mm", " 10m", "10m ", "1e3", "1,5m",
                          "99999999999999999999999999p", "0x10"}) {
    EXPECT_FALSE(parseByteSize(bad)) << bad;
  }
}

TEST(OutputLimitsTest, JsonFileOptionsOverrideTheDefaults) {
  const OutputLimits defaults{8 << 20, 4};
  std::vector<std::string> warnings;
  EXPECT_EQ(containerOutputLimits(defaults, {}, warnings), defaults);
  EXPECT_EQ(containerOutputLimits(defaults, {{"max-size", "1m"}, {"max-file", "2"}}, warnings),
            (OutputLimits{1 << 20, 2}));
  EXPECT_EQ(containerOutputLimits(defaults, {{"max-size", "1k"}}, warnings),
            (OutputLimits{OutputLimits::kMinMaxSize, 4}));  // raised to the minimum
  EXPECT_EQ(containerOutputLimits(defaults, {{"labels", "a"}, {"max-file", "1"}}, warnings),
            (OutputLimits{8 << 20, 1}));
  EXPECT_TRUE(warnings.empty());

  EXPECT_EQ(containerOutputLimits(defaults, {{"max-size", "big"}, {"max-file", "0"}}, warnings),
            defaults);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("max-size"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("max-file"), std::string::npos) << warnings[1];
  warnings.clear();
  (void)containerOutputLimits(defaults, {{"max-size", "0"}, {"max-file", "101"}}, warnings);
  EXPECT_EQ(warnings.size(), 2u);
}

// --- the splitter --------------------------------------------------------------------------------

std::vector<std::string> split(LineSplitter::Mode mode, size_t max,
                               const std::vector<std::string>& chunks, bool finish = true) {
  LineSplitter splitter(mode, max);
  std::vector<std::string> lines;
  const auto emit = [&](std::string_view line) { lines.emplace_back(line); };
  for (const auto& chunk : chunks) {
    splitter.feed(chunk, emit);
    EXPECT_LE(splitter.pending(), max);
  }
  if (finish) splitter.finish(emit);
  return lines;
}

using Lines = std::vector<std::string>;
constexpr auto kWriter = LineSplitter::Mode::kSplitAtMax;
constexpr auto kReader = LineSplitter::Mode::kNewlineMayFollow;

TEST(LineSplitterTest, WholeLinesAcrossChunks) {
  EXPECT_EQ(split(kWriter, 8, {"a\nbb\n", "c", "c\n\n"}), (Lines{"a", "bb", "cc", ""}));
  EXPECT_EQ(split(kWriter, 8, {"tail"}, false), Lines{});
  EXPECT_EQ(split(kWriter, 8, {"tail"}), Lines{"tail"});  // the end of the stream ends it
  EXPECT_EQ(split(kWriter, 8, {}), Lines{});
}

TEST(LineSplitterTest, TheWriterSplitsLongLinesIntoFullPieces) {
  // 20 bytes: two pieces of 8 and the last 4.
  EXPECT_EQ(split(kWriter, 8, {"0123456789abcdefghij\n"}), (Lines{"01234567", "89abcdef", "ghij"}));
  // Exactly 8: the full piece, then an empty last piece, so a full line always continues.
  EXPECT_EQ(split(kWriter, 8, {"01234567\n", "x\n"}), (Lines{"01234567", "", "x"}));
  // A byte at a time gives the same.
  std::vector<std::string> bytes;
  for (char c : std::string("0123456789abcdefghij\n")) bytes.emplace_back(1, c);
  EXPECT_EQ(split(kWriter, 8, bytes), (Lines{"01234567", "89abcdef", "ghij"}));
}

TEST(LineSplitterTest, TheReaderTakesTheWritersFileLinesBack) {
  // What the writer wrote for "01234567" + "89" and for a line of exactly 8.
  EXPECT_EQ(split(kReader, 8, {"01234567\n89\n01234567\n\nx\n"}),
            (Lines{"01234567", "89", "01234567", "", "x"}));
  EXPECT_EQ(split(kReader, 8, {"0123", "4567", "\n", "89\n"}), (Lines{"01234567", "89"}));
  // A longer line than the writer makes (not its file) is still cut.
  EXPECT_EQ(split(kReader, 8, {"0123456789\n"}), (Lines{"01234567", "89"}));
  EXPECT_EQ(split(kReader, 8, {"01234567"}), (Lines{"01234567"}));
}

TEST(LineSplitterTest, WriterThenReaderRoundTripsEveryLength) {
  for (size_t length : {0u, 1u, 7u, 8u, 9u, 15u, 16u, 17u, 40u}) {
    const std::string line(length, 'x');
    std::string file;
    for (const auto& piece : split(kWriter, 8, {line + "\n"})) file += piece + "\n";
    std::string joined;
    for (const auto& piece : split(kReader, 8, {file})) {
      joined += piece;
      if (piece.size() < 8) break;  // the last piece
    }
    EXPECT_EQ(joined, line) << length;
  }
}

// --- rotation ------------------------------------------------------------------------------------

class LogFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/log-writer-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = (dir_ / "stdout.log").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  uint64_t totalSize() {
    uint64_t total = 0;
    for (const auto& e : fs::directory_iterator(dir_)) total += e.file_size();
    return total;
  }
  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  std::string path_;
};

constexpr uint64_t kSize = OutputLimits::kMinMaxSize;

TEST_F(LogFilesTest, RotatesAtMaxSizeAndKeepsMaxFiles) {
  RotatingLogFile file(path_, OutputLimits{kSize, 3});
  ASSERT_TRUE(file.open());
  const std::string line(999, 'a');  // 1000 bytes with the newline
  for (int i = 0; i < 1000; ++i) {
    file.appendLine(line);
    file.flush();
    EXPECT_LE(fs::file_size(path_), kSize);
    EXPECT_LE(totalSize(), 3 * kSize);
  }
  EXPECT_EQ(names(), (std::vector<std::string>{"stdout.log", "stdout.log.1", "stdout.log.2"}));
  // Whole lines only: each rotated file holds as many as fit.
  EXPECT_EQ(fs::file_size(path_ + ".1"), kSize / 1000 * 1000);
  EXPECT_EQ(file.dropped(), 0u);
}

TEST_F(LogFilesTest, OneFileIsReplacedWhenFull) {
  RotatingLogFile file(path_, OutputLimits{kSize, 1});
  ASSERT_TRUE(file.open());
  for (int i = 0; i < 200; ++i) file.appendLine(std::string(999, 'b'));
  file.appendLine("last");
  file.flush();
  EXPECT_EQ(names(), std::vector<std::string>{"stdout.log"});
  EXPECT_LE(fs::file_size(path_), kSize);
  const auto text = readAll(path_);
  EXPECT_TRUE(text.ends_with(std::string(999, 'b') + "\nlast\n"));
}

TEST_F(LogFilesTest, KeepFirstHoldsTheStartAndDropsTheRest) {
  RotatingLogFile file(path_, OutputLimits{kSize, 1, true});
  ASSERT_TRUE(file.open());
  file.appendLine("first");
  for (int i = 0; i < 200; ++i) file.appendLine(std::string(999, 'c'));
  EXPECT_TRUE(file.full());
  file.appendLine("short enough to fit, but after a dropped line");
  file.flush();
  EXPECT_EQ(names(), std::vector<std::string>{"stdout.log"});
  // "first\n" and as many 1000-byte lines as fit after it; nothing after the first dropped.
  EXPECT_EQ(fs::file_size(path_), 6 + (kSize - 6) / 1000 * 1000);
  const auto text = readAll(path_);
  EXPECT_TRUE(text.starts_with("first\n" + std::string(999, 'c') + "\n"));
  EXPECT_TRUE(text.ends_with(std::string(999, 'c') + "\n"));
  EXPECT_EQ(file.dropped(), 0u);  // dropped on purpose, not lost to errors
}

TEST_F(LogFilesTest, AppendsToWhatIsThereAndDropsFilesBeyondTheCount) {
  std::ofstream(path_) << std::string(kSize - 10, 'x') << "\n";
  for (int n = 1; n <= 6; ++n) std::ofstream(path_ + "." + std::to_string(n)) << "old\n";
  RotatingLogFile file(path_, OutputLimits{kSize, 3});
  ASSERT_TRUE(file.open());
  EXPECT_EQ(names(), (std::vector<std::string>{"stdout.log", "stdout.log.1", "stdout.log.2"}));
  file.appendLine("0123456789");  // does not fit: rotates first
  file.flush();
  EXPECT_EQ(readAll(path_), "0123456789\n");
  EXPECT_EQ(fs::file_size(path_ + ".1"), kSize - 9);
  EXPECT_EQ(readAll(path_ + ".2"), "old\n");
}

// --- following rotation --------------------------------------------------------------------------

struct Read {
  std::vector<std::string> lines;
  std::vector<bool> partial;
};

size_t readInto(RotatingLogReader& reader, Read& out, size_t budget, bool final = false) {
  return reader.read(budget, final, [&](std::string_view line, bool partial) {
    out.lines.emplace_back(line);
    out.partial.push_back(partial);
  });
}

TEST_F(LogFilesTest, TheReaderFollowsRotationWithoutLosingOrRepeatingLines) {
  RotatingLogFile file(path_, OutputLimits{kSize, 3});
  ASSERT_TRUE(file.open());
  RotatingLogReader reader(path_);
  Read got;
  EXPECT_EQ(readInto(reader, got, 1 << 20), 0u);  // nothing yet
  int next = 0;
  for (int round = 0; round < 50; ++round) {
    // Less than two files' worth between reads: the reader keeps up.
    for (int i = 0; i < 100; ++i) file.appendLine(fmt::format("{:0>999}", next++));
    file.flush();
    while (readInto(reader, got, 4096) >= 4096) {
    }
  }
  readInto(reader, got, 0, true);
  ASSERT_EQ(got.lines.size(), static_cast<size_t>(next));
  for (int i = 0; i < next; ++i) ASSERT_EQ(got.lines[i], fmt::format("{:0>999}", i)) << i;
}

TEST_F(LogFilesTest, AReaderThatFallsBehindSkipsToTheOldestFileLeft) {
  RotatingLogFile file(path_, OutputLimits{kSize, 2});
  ASSERT_TRUE(file.open());
  RotatingLogReader reader(path_);
  Read got;
  file.appendLine("first");
  file.flush();
  readInto(reader, got, 1 << 20);
  for (int i = 0; i < 1000; ++i) file.appendLine(fmt::format("{:0>999}", i));
  file.flush();
  readInto(reader, got, 0, true);
  ASSERT_GE(got.lines.size(), 2u);
  EXPECT_EQ(got.lines.front(), "first");
  EXPECT_EQ(got.lines.back(), fmt::format("{:0>999}", 999));
  // The rest of the file it had open, then the files that were left, in order: one gap at most,
  // and no line twice.
  int gaps = 0;
  for (size_t i = 2; i < got.lines.size(); ++i) {
    const int before = std::stoi(got.lines[i - 1]);
    const int now = std::stoi(got.lines[i]);
    ASSERT_GT(now, before);
    gaps += now != before + 1;
  }
  EXPECT_EQ(gaps, 1);
  EXPECT_LE(got.lines.size() - 1, 3 * kSize / 1000);
}

TEST_F(LogFilesTest, TheReaderMarksPiecesOfLongLinesPartial) {
  std::ofstream(path_) << std::string(kLogLinePieceBytes, 'p') << "\n"
                       << "end\n"
                       << std::string(kLogLinePieceBytes, 'q') << "\n\n";
  RotatingLogReader reader(path_);
  Read got;
  readInto(reader, got, 0, true);
  ASSERT_EQ(got.lines.size(), 4u);
  EXPECT_EQ(got.partial, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(got.lines[1], "end");
  EXPECT_EQ(got.lines[3], "");
}

// --- the writer loop -----------------------------------------------------------------------------

TEST(LogWriterTest, ArgumentsRoundTripAndBadOnesAreRefused) {
  LogWriterOptions options{"/a/stdout.log", "/a/stderr.log", OutputLimits{1 << 20, 7}};
  auto parsed = parseLogWriterArgs(logWriterArgs(options));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->stdout_path, options.stdout_path);
  EXPECT_EQ(parsed->stderr_path, options.stderr_path);
  EXPECT_EQ(parsed->limits, options.limits);
  EXPECT_TRUE(parseLogWriterArgs({}));  // both discarded
  options.limits.keep_first = true;
  parsed = parseLogWriterArgs(logWriterArgs(options));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->limits, options.limits);
  parsed = parseLogWriterArgs({"--keep-first", "--stdout", "/a/o.log"});
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_TRUE(parsed->limits.keep_first);
  EXPECT_EQ(parsed->stdout_path, "/a/o.log");
  for (const auto& bad : std::vector<std::vector<std::string>>{{"--stdout"},
                                                               {"--stdout", "relative.log"},
                                                               {"--max-size", "10m"},
                                                               {"--max-size", "100"},
                                                               {"--max-files", "0"},
                                                               {"--colour", "x"}}) {
    EXPECT_FALSE(parseLogWriterArgs(bad)) << bad[0];
  }
}

TEST_F(LogFilesTest, TheWriterCopiesBothPipesInBoundedFilesAndSignalsReady) {
  int out[2], err[2], ready[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  LogWriterOptions options{path_, (dir_ / "stderr.log").string(), OutputLimits{kSize, 2}};
  std::thread writer([&] { EXPECT_EQ(runLogWriter(options, out[0], err[0], ready[1]), 0); });
  char byte;
  EXPECT_EQ(::read(ready[0], &byte, 1), 0);  // closed once the files are open
  EXPECT_TRUE(fs::exists(path_));

  // 1 MiB without a newline on stdout, then a line; two lines on stderr.
  const std::string chunk(4096, 'z');
  for (int i = 0; i < 256; ++i) ASSERT_EQ(::write(out[1], chunk.data(), chunk.size()), 4096);
  ASSERT_EQ(::write(out[1], "\ndone\nno newline", 16), 16);
  ASSERT_EQ(::write(err[1], "e1\ne2\n", 6), 6);
  ::close(out[1]);
  ::close(err[1]);
  writer.join();
  ::close(out[0]);
  ::close(err[0]);
  ::close(ready[0]);

  EXPECT_EQ(readAll(dir_ / "stderr.log"), "e1\ne2\n");
  EXPECT_LE(fs::file_size(path_), kSize);
  EXPECT_LE(fs::file_size(path_ + ".1"), kSize);
  EXPECT_FALSE(fs::exists(path_ + ".2"));
  const auto text = readAll(path_);
  EXPECT_TRUE(text.ends_with("\ndone\nno newline\n")) << text.substr(text.size() - 40);
  // Every file line is a full piece except the ends of lines.
  std::istringstream lines(readAll(path_ + ".1") + text);
  size_t pieces = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.size() == kLogLinePieceBytes) {
      ++pieces;
    } else {
      EXPECT_TRUE(line.empty() || line == "done" || line == "no newline" ||
                  line == std::string(line.size(), 'z'))
          << line.size();
    }
  }
  EXPECT_GT(pieces, 0u);
}

TEST_F(LogFilesTest, TheWriterPutsBothStreamsInOneFileWhenGivenOnePath) {
  int out[2], err[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  ASSERT_EQ(::write(out[1], "o1\n", 3), 3);
  ASSERT_EQ(::write(err[1], "e1\n", 3), 3);
  ::close(out[1]);
  ::close(err[1]);
  LogWriterOptions options{path_, path_, OutputLimits{kSize, 2}};
  EXPECT_EQ(runLogWriter(options, out[0], err[0], -1), 0);
  ::close(out[0]);
  ::close(err[0]);
  const auto text = readAll(path_);
  EXPECT_TRUE(text == "o1\ne1\n" || text == "e1\no1\n") << text;
  EXPECT_EQ(names(), std::vector<std::string>{"stdout.log"});
}

TEST_F(LogFilesTest, OnSigtermTheWriterWritesWhatThePipesHoldAndExits) {
  // As the shim does: the writer's pipes stay open at the other end (here: a process that still
  // holds them), output without a final newline waits in them, and SIGTERM comes.
  int out[2], err[2], ready[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(out[1]);
    ::close(err[1]);
    ::close(ready[0]);
    LogWriterOptions options{path_, path_, OutputLimits{kSize, 1, true}};
    _exit(runLogWriter(options, out[0], err[0], ready[1]));
  }
  ::close(out[0]);
  ::close(err[0]);
  ::close(ready[1]);
  char byte;
  EXPECT_EQ(::read(ready[0], &byte, 1), 0);  // the writer is up, SIGTERM caught
  ::close(ready[0]);
  ASSERT_EQ(::write(out[1], "line\nno newline", 15), 15);
  ASSERT_EQ(::write(err[1], "error", 5), 5);
  ASSERT_EQ(::kill(child, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ::close(out[1]);
  ::close(err[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const auto text = readAll(path_);
  EXPECT_NE(text.find("line\nno newline\n"), std::string::npos) << text;
  EXPECT_NE(text.find("error\n"), std::string::npos) << text;
  EXPECT_EQ(text.size(), 22u) << text;  // those three lines, nothing else
}

}  // namespace
}  // namespace ecs::runtime
