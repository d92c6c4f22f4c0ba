// Task IO URIs for the runc shim: null IO, one file, and the logger for distinct files.
#include "agent/runtime/task_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ecs::runtime {
namespace {

namespace fs = std::filesystem;

class TaskIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/task-io-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A stand-in writer at `path` that records the command line it is given in `args_file`.
  static void fakeWriter(const std::string& path, const std::string& args_file) {
    std::ofstream(path) << "#!/bin/sh\nprintf '%s\\n' \"$@\" >" << args_file << "\n";
    fs::permissions(path, fs::perms::owner_all);
  }

  // The script of a `binary:///bin/sh?-c=<script>` URI, decoded.
  static std::string scriptOf(const TaskIo& io) {
    std::string script;
    const auto encoded = io.stdout_uri.substr(io.stdout_uri.find("-c=") + 3);
    for (size_t i = 0; i < encoded.size(); ++i) {
      if (encoded[i] == '%') {
        script += static_cast<char>(std::stoi(encoded.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        script += encoded[i];
      }
    }
    return script;
  }

  // Runs the script of a `binary:///bin/sh?-c=<script>` URI and returns the arguments the fake
  // writer it execs recorded, one a line.
  static std::string writerArguments(const TaskIo& io, const std::string& args_file) {
    const std::string script = scriptOf(io);
    if (setenv("ECS_TASK_IO_SCRIPT", script.c_str(), 1) != 0) return "setenv failed";
    const int status = std::system("/bin/sh -c \"$ECS_TASK_IO_SCRIPT\" </dev/null");
    unsetenv("ECS_TASK_IO_SCRIPT");
    if (status != 0) return "the script failed: " + std::to_string(status);
    std::ifstream in(args_file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path dir_;
};

TEST_F(TaskIoTest, NoPathsIsNullIo) {
  auto io = makeTaskIo("", "", "/bin/sh");
  ASSERT_TRUE(io) << io.error().message;
  EXPECT_TRUE(io->stdout_uri.empty());
  EXPECT_TRUE(io->stderr_uri.empty());
}

TEST_F(TaskIoTest, OneFileForBothAppendsThroughTheLoggerAndItsDirectoryIsMade) {
  // Not a file:// URI: the shim would write the two streams at their own offsets of one file.
  const auto path = (dir_ / "logs/a b%#?.log").string();
  auto io = makeTaskIo(path, path, "/bin/sh");
  ASSERT_TRUE(io) << io.error().message;
  EXPECT_TRUE(io->stdout_uri.starts_with("binary:///bin/sh?-c=")) << io->stdout_uri;
  EXPECT_EQ(io->stderr_uri, io->stdout_uri);
  EXPECT_TRUE(fs::is_directory(dir_ / "logs"));
  const std::string script = scriptOf(*io);
  EXPECT_NE(script.find("cat <&3 >>"), std::string::npos) << script;
  EXPECT_NE(script.find("cat <&4 >>"), std::string::npos) << script;
}

TEST_F(TaskIoTest, DistinctFilesUseTheLoggerWithEverythingEncoded) {
  auto io = makeTaskIo((dir_ / "out").string(), (dir_ / "it's.err").string(), "/bin/sh");
  ASSERT_TRUE(io) << io.error().message;
  EXPECT_TRUE(io->stdout_uri.starts_with("binary:///bin/sh?-c=")) << io->stdout_uri;
  EXPECT_EQ(io->stdout_uri, io->stderr_uri);
  const auto query = io->stdout_uri.substr(io->stdout_uri.find('?') + 1);
  // One query key: the shim passes query pairs in map order, so a second would be unordered.
  EXPECT_EQ(query.find('&'), std::string::npos);
  EXPECT_EQ(query.find(' '), std::string::npos);
  EXPECT_EQ(query.find('\''), std::string::npos);
  EXPECT_EQ(query.find(';'), std::string::npos);
}

TEST_F(TaskIoTest, LoggerScriptCopiesEachStreamToItsFile) {
  // Run the logger as the shim would: stdout on fd 3, stderr on fd 4, readiness on fd 5.
  const auto out = (dir_ / "o.log").string();
  const auto err = (dir_ / "it's.err").string();
  auto io = makeTaskIo(out, err, "/bin/sh");
  ASSERT_TRUE(io);
  const std::string script = scriptOf(*io);
  const auto quoted = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  const std::string harness = "printf 'out\\n' >" + (dir_ / "in1").string() +
                              "; printf 'err\\n' >" + (dir_ / "in2").string() + "; /bin/sh -c " +
                              quoted(script) + " 3<" + (dir_ / "in1").string() + " 4<" +
                              (dir_ / "in2").string() + " 5>/dev/null";
  ASSERT_EQ(std::system(harness.c_str()), 0);
  auto read = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(read(out), "out\n");
  EXPECT_EQ(read(err), "err\n");
}

TEST_F(TaskIoTest, WithALogWriterTheScriptExecsItWithThePathsAndLimits) {
  // A stand-in writer that records the command line it was given.
  const auto writer = (dir_ / "agent it's").string();
  const auto args_file = (dir_ / "args").string();
  fakeWriter(writer, args_file);
  const auto out = (dir_ / "o.log").string();
  const auto err = (dir_ / "e e.log").string();
  auto io = makeTaskIo(out, err, "/bin/sh", writer, OutputLimits{1 << 20, 3});
  ASSERT_TRUE(io) << io.error().message;
  EXPECT_TRUE(io->stdout_uri.starts_with("binary:///bin/sh?-c=")) << io->stdout_uri;
  EXPECT_EQ(writerArguments(*io, args_file), "log-writer\n--stdout\n" + out + "\n--stderr\n" + err +
                                                 "\n--max-size\n1048576\n--max-files\n3\n");
  EXPECT_FALSE(makeTaskIo(out, err, "/bin/sh", "ecs-node-agent"));  // not absolute
}

TEST_F(TaskIoTest, WithALogWriterOneFileForBothIsBoundedToo) {
  // A `file://` URI would let the shim append without end: with a writer, one path for both
  // streams goes through it as well, keep-first limits (health-check output) included.
  const auto writer = (dir_ / "agent").string();
  const auto args_file = (dir_ / "args").string();
  fakeWriter(writer, args_file);
  const auto path = (dir_ / "health.log").string();
  auto io = makeTaskIo(path, path, "/bin/sh", writer, OutputLimits{64 * 1024, 1, true});
  ASSERT_TRUE(io) << io.error().message;
  ASSERT_TRUE(io->stdout_uri.starts_with("binary:///bin/sh?-c=")) << io->stdout_uri;
  EXPECT_EQ(io->stderr_uri, io->stdout_uri);
  EXPECT_EQ(writerArguments(*io, args_file),
            "log-writer\n--stdout\n" + path + "\n--stderr\n" + path +
                "\n--max-size\n65536\n--max-files\n1\n--keep-first\n");
}

TEST_F(TaskIoTest, OneStreamOnlyDiscardsTheOther) {
  auto io = makeTaskIo("", (dir_ / "err").string(), "/bin/sh");
  ASSERT_TRUE(io);
  EXPECT_NE(io->stdout_uri.find("%2Fdev%2Fnull"), std::string::npos) << io->stdout_uri;
}

TEST_F(TaskIoTest, RelativePathsAndShellsAreRefused) {
  auto io = makeTaskIo("out.log", "", "/bin/sh");
  ASSERT_FALSE(io);
  EXPECT_EQ(io.error().code, ErrorCode::kInvalidArgument);
  io = makeTaskIo((dir_ / "o").string(), (dir_ / "e").string(), "sh");
  ASSERT_FALSE(io);
  EXPECT_EQ(io.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace ecs::runtime
