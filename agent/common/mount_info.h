// The mount points /proc/self/mountinfo lists, decoded: what the volume layer sweeps against and
// what the engine must not remove a task directory through.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ecs {

// A mountinfo path field with its \ooo escapes (\040 for a space, ...) decoded.
inline std::string decodeMountInfoField(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      int value = 0;
      bool ok = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = field[i + j];
        if (c < '0' || c > '7') ok = false;
        value = value * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Mount points (field 5) from /proc/self/mountinfo-formatted text.
inline std::vector<std::string> parseMountInfo(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i < 5 && fields >> field; ++i) {
      if (i == 4) out.push_back(decodeMountInfoField(field));
    }
  }
  return out;
}

// The calling process's mount points, from /proc/self/mountinfo.
inline std::vector<std::string> currentMountPoints() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return parseMountInfo(text.str());
}

}  // namespace ecs
