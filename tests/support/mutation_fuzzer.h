// A bounded random-mutation fuzzer for the parsers that read what other parties send (task
// definitions, ACS frames), run as a unit test for a fixed time. Clang 14, Debian's libFuzzer,
// cannot compile this code base (its libstdc++ <expected> needs newer concepts support), so this
// stands in: no coverage feedback, but mutations aimed at JSON readers, and the sanitizer build
// (ASan + UBSan) to turn memory errors and undefined behaviour into failures.
//
// Each round takes a seed, or an earlier input the target found well-formed, and applies a few
// of: byte edits, inserted or erased or duplicated ranges, truncation, splicing with another
// input, deep nesting, extreme numbers, hostile strings (NUL, line breaks, lone surrogates, a
// megabyte of text), and JSON-aware edits (a value replaced by another kind, an array element
// repeated thousands of times, a member dropped). An input slower than `slow_input` fails the
// test as a hang. On a crash the input is written to fuzz-crash-<pid>.bin in the working
// directory; ECS_FUZZ_SEED replays a run, ECS_FUZZ_SECONDS sets how long it lasts.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// Set by ASan and UBSan builds only.
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace ecs::testing {

class MutationFuzzer {
 public:
  struct Options {
    std::chrono::milliseconds duration{2000};
    uint64_t seed = 1;
    size_t max_size = 2 << 20;
    std::chrono::milliseconds slow_input{5000};
  };

  // `default_duration` unless ECS_FUZZ_SECONDS is set; the seed from ECS_FUZZ_SEED, else fixed.
  static Options optionsFromEnvironment(std::chrono::milliseconds default_duration) {
    Options options;
    options.duration = default_duration;
    if (const char* seconds = std::getenv("ECS_FUZZ_SECONDS")) {
      options.duration =
          std::chrono::milliseconds(static_cast<int64_t>(std::strtod(seconds, nullptr) * 1000));
    }
    if (const char* slow = std::getenv("ECS_FUZZ_SLOW_MS")) {
      options.slow_input = std::chrono::milliseconds(std::strtoll(slow, nullptr, 10));
    }
    if (const char* seed = std::getenv("ECS_FUZZ_SEED")) {
      options.seed = std::strtoull(seed, nullptr, 10);
    }
    return options;
  }

  MutationFuzzer(std::vector<std::string> seeds, Options options)
      : seeds_(std::move(seeds)), options_(options), random_(options.seed) {}

  // Runs `target` on mutated inputs until the time is up and returns how many it ran. The target
  // checks its own expectations and returns whether the input was well-formed enough to mutate
  // further. Stops at the first failing input, printing it.
  size_t run(const std::function<bool(std::string_view)>& target) {
    std::cout << "fuzzing for " << options_.duration.count()
              << " ms, ECS_FUZZ_SEED=" << options_.seed << "\n";
    installCrashHandler();
    auto deadline = std::chrono::steady_clock::now() + options_.duration;
    size_t runs = 0;
    for (const std::string& seed : seeds_) runOne(seed, target, runs);
    while (std::chrono::steady_clock::now() < deadline && !::testing::Test::HasFailure()) {
      std::string input = pick();
      int edits = 1 + static_cast<int>(random_() % 4);
      for (int e = 0; e < edits; ++e) mutate(input);
      if (input.size() > options_.max_size) input.resize(options_.max_size);
      runOne(input, target, runs);
    }
    current_ = nullptr;
    std::cout << runs << " inputs, " << pool_.size() << " kept\n";
    return runs;
  }

 private:
  static constexpr size_t kPoolSize = 256;

  void runOne(const std::string& input, const std::function<bool(std::string_view)>& target,
              size_t& runs) {
    current_ = &input;
    auto start = std::chrono::steady_clock::now();
    bool keep = target(input);
    auto took = std::chrono::steady_clock::now() - start;
    ++runs;
    if (took > options_.slow_input) {
      ADD_FAILURE() << "input took "
                    << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    }
    if (::testing::Test::HasFailure()) {
      std::cout << "failing input (" << input.size() << " bytes, seed " << options_.seed << ", run "
                << runs << "): " << printable(input) << "\n";
      return;
    }
    if (keep && input.size() < (64u << 10)) {
      if (pool_.size() < kPoolSize) {
        pool_.push_back(input);
      } else {
        pool_[random_() % kPoolSize] = input;
      }
    }
  }

  std::string pick() {
    if (pool_.empty() || random_() % 3 == 0) return seeds_[random_() % seeds_.size()];
    return pool_[random_() % pool_.size()];
  }

  size_t position(const std::string& input) { return input.empty() ? 0 : random_() % input.size(); }

  void mutate(std::string& input) {
    static const std::string kBytes = std::string("{}[]\",:0123456789-+.eE \n\r\t\\/untrfalse") +
                                      std::string("\x00\x01\x7f\x80\xbf\xc3\xe2\xf0\xff", 9);
    static const std::vector<std::string> kNumbers = {"1e999",
                                                      "-1e999",
                                                      "1e-400",
                                                      "99999999999999999999999",
                                                      "-9223372036854775809",
                                                      "18446744073709551616",
                                                      "4294967296",
                                                      "2147483648",
                                                      "-2147483649",
                                                      "65536",
                                                      "-1",
                                                      "0",
                                                      "0.5",
                                                      "1E+2"};
    static const std::vector<std::string> kStrings = {
        "\\u0000", "\\n", "\\r\\n", "\\ud800",     "\\udfff", "\\\"", "../../",
        "/proc",   "/",   "=",      "\\u001b[31m", "%s%n",    "\xc3", "\xff"};
    switch (random_() % 13) {
      case 0:  // replace a byte
        if (!input.empty()) input[position(input)] = kBytes[random_() % kBytes.size()];
        break;
      case 1:  // insert bytes
        for (int n = 1 + random_() % 8; n > 0; --n) {
          input.insert(position(input), 1, kBytes[random_() % kBytes.size()]);
        }
        break;
      case 2:  // erase a range
        if (!input.empty()) input.erase(position(input), 1 + random_() % 32);
        break;
      case 3: {  // duplicate a range elsewhere
        if (input.empty()) break;
        size_t from = position(input);
        std::string piece = input.substr(from, 1 + random_() % 64);
        input.insert(position(input), piece);
        break;
      }
      case 4:  // truncate
        input.resize(position(input));
        break;
      case 5: {  // splice with another input
        std::string other = pick();
        input = input.substr(0, position(input)) + other.substr(position(other));
        break;
      }
      case 6: {  // deep nesting
        size_t depth = random_() % 2 ? 1 + random_() % 64 : 1 + random_() % 100000;
        std::string open = random_() % 2 ? "[" : "{\"a\":";
        std::string nested;
        for (size_t i = 0; i < depth; ++i) nested += open;
        input.insert(position(input), nested);
        break;
      }
      case 7:  // an extreme number in place of a digit
        replaceDigitRun(input, kNumbers[random_() % kNumbers.size()]);
        break;
      case 8: {  // a hostile string inside a string
        size_t quote = input.find('"', position(input));
        if (quote == std::string::npos) break;
        std::string piece = random_() % 200 == 0 ? std::string(1 << 20, 'A')
                                                 : kStrings[random_() % kStrings.size()];
        input.insert(quote + 1, piece);
        break;
      }
      default:
        mutateStructure(input);
        break;
    }
  }

  void replaceDigitRun(std::string& input, const std::string& number) {
    size_t at = input.find_first_of("0123456789", position(input));
    if (at == std::string::npos) return;
    size_t end = input.find_first_not_of("0123456789.eE+-", at);
    input.replace(at, (end == std::string::npos ? input.size() : end) - at, number);
  }

  // JSON-aware edits on a document that parses.
  void mutateStructure(std::string& input) {
    boost::system::error_code ec;
    boost::json::value document = boost::json::parse(input, ec);
    if (ec) return;
    std::vector<boost::json::value*> nodes;
    std::vector<boost::json::value*> pending{&document};
    while (!pending.empty()) {
      boost::json::value* node = pending.back();
      pending.pop_back();
      nodes.push_back(node);
      if (auto* array = node->if_array()) {
        for (auto& item : *array) pending.push_back(&item);
      } else if (auto* object = node->if_object()) {
        for (auto& member : *object) pending.push_back(&member.value());
      }
    }
    boost::json::value& node = *nodes[random_() % nodes.size()];
    switch (random_() % 6) {
      case 0: {  // another kind of value
        static const std::vector<boost::json::value> kValues = {
            nullptr,
            true,
            -1,
            0,
            70000,
            1.5,
            int64_t{9223372036854775807LL},
            uint64_t{18446744073709551615ULL},
            -1e300,
            "",
            "x",
            "/proc/sys",
            "a\nb",
            boost::json::string(boost::json::string_view("a\0b", 3)),
            boost::json::array{},
            boost::json::object{},
            boost::json::array{"a", 1},
            boost::json::object{{"k", 1}}};
        node = kValues[random_() % kValues.size()];
        break;
      }
      case 1:  // an array element repeated
        if (auto* array = node.if_array(); array && !array->empty()) {
          boost::json::value item = (*array)[random_() % array->size()];
          for (size_t n = random_() % 2 ? 100 : 5000; n > 0; --n) array->push_back(item);
        }
        break;
      case 2:  // a member dropped
        if (auto* object = node.if_object(); object && !object->empty()) {
          object->erase(std::next(object->begin(), random_() % object->size()));
        }
        break;
      case 3:  // a string made long
        if (auto* string = node.if_string()) {
          *string = std::string(random_() % 2 ? 300 : 70000, 'a') + std::string(*string);
        }
        break;
      case 4:  // a value wrapped
        node = boost::json::array{node};
        break;
      default:  // a member copied into an object elsewhere
        if (auto* object = node.if_object(); object && !object->empty()) {
          auto member = std::next(object->begin(), random_() % object->size());
          std::string key(member->key());
          boost::json::value copy = member->value();
          boost::json::value& target = *nodes[random_() % nodes.size()];
          if (auto* into = target.if_object(); into && into != object) {
            (*into)[key] = std::move(copy);
          }
        }
        break;
    }
    input = boost::json::serialize(document);
  }

  static std::string printable(std::string_view input) {
    std::string out;
    for (char c : input.substr(0, 600)) {
      auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 && u < 0x7f) {
        out += c;
      } else {
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\x";
        out += kHex[u >> 4];
        out += kHex[u & 0xf];
      }
    }
    if (input.size() > 600) out += "...";
    return out;
  }

  // The sanitizers end the process on an error: keep the input that did it.
  static void saveCurrentInput() {
    const std::string* input = current_;
    if (!input) return;
    current_ = nullptr;
    char name[64];
    int length = snprintf(name, sizeof name, "fuzz-crash-%d.bin", static_cast<int>(getpid()));
    int fd = ::open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    (void)!::write(fd, input->data(), input->size());
    ::close(fd);
    (void)!::write(2, "fuzz: the crashing input is in ", 31);
    (void)!::write(2, name, length);
    (void)!::write(2, "\n", 1);
  }

  static void installCrashHandler() {
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(saveCurrentInput);
    struct sigaction action {};
    action.sa_handler = [](int signal) {
      saveCurrentInput();
      ::signal(signal, SIG_DFL);
      ::raise(signal);
    };
    sigemptyset(&action.sa_mask);
    sigaction(SIGABRT, &action, nullptr);
  }

  static inline const std::string* current_ = nullptr;

  std::vector<std::string> seeds_;
  Options options_;
  std::mt19937_64 random_;
  std::vector<std::string> pool_;
};

}  // namespace ecs::testing
