#include "agent/common/text.h"

#include <gtest/gtest.h>

#include <string>

namespace ecs::text {
namespace {

TEST(TextClipTest, ShortPrintableTextIsUnchanged) {
  EXPECT_EQ(clip(""), "");
  EXPECT_EQ(clip("web-1 \"quoted\" caf\xc3\xa9"), "web-1 \"quoted\" caf\xc3\xa9");
  EXPECT_EQ(clip(std::string(kMaxQuoted, 'a')), std::string(kMaxQuoted, 'a'));
}

TEST(TextClipTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(clip(std::string("a\nb\rc\td\0e\x1b\x7f", 11)), "a\\nb\\rc\\td\\0e\\x1b\\x7f");
}

TEST(TextClipTest, LongTextIsCutTo200CharactersOfOutput) {
  EXPECT_EQ(kMaxQuoted, 200u);
  EXPECT_EQ(clip(std::string(1 << 20, 'a')), std::string(200, 'a') + "...");
  // Escapes count in the limit: 100 line breaks are 200 characters, the 101st is cut.
  EXPECT_EQ(clip(std::string(100, '\n')), [] {
    std::string out;
    for (int i = 0; i < 100; ++i) out += "\\n";
    return out;
  }());
  std::string cut = clip(std::string(101, '\n'));
  EXPECT_EQ(cut.size(), 203u);
  EXPECT_TRUE(cut.ends_with("\\n..."));
  // An escape that does not fit is left out whole.
  EXPECT_EQ(clip(std::string(199, 'a') + "\n"), std::string(199, 'a') + "...");
}

TEST(TextClipTest, NeverSplitsAUtf8Character) {
  std::string text = std::string(199, 'a') + "\xc3\xa9" + "tail";  // é straddles the limit
  EXPECT_EQ(clip(text), std::string(199, 'a') + "...");
  std::string three = std::string(198, 'a') + "\xe2\x82\xac" + "tail";  // € straddles it too
  EXPECT_EQ(clip(three), std::string(198, 'a') + "...");
}

}  // namespace
}  // namespace ecs::text
