// Result<T>: std::expected with [[nodiscard]], so code written for std::expected keeps working.
#include "agent/common/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace ecs {
namespace {

Result<int> half(int n) {
  if (n % 2 != 0) return fail(ErrorCode::kInvalidArgument, "{} is odd", n);
  return n / 2;
}

Result<void> check(bool ok) {
  if (!ok) return fail(Error{ErrorCode::kFailedPrecondition, "not ok"});
  return {};
}

Result<std::unique_ptr<int>> boxed(int n) {
  return std::make_unique<int>(n);
}

TEST(ResultTest, HoldsAValueOrAnError) {
  auto good = half(4);
  ASSERT_TRUE(good);
  EXPECT_EQ(*good, 2);
  EXPECT_EQ(good.value(), 2);
  auto bad = half(3);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "3 is odd");
  EXPECT_EQ(bad.value_or(-1), -1);
  EXPECT_TRUE(check(true));
  EXPECT_EQ(check(false).error().message, "not ok");
}

TEST(ResultTest, MoveOnlyValuesAndPlainExpected) {
  auto box = boxed(7);
  ASSERT_TRUE(box);
  std::unique_ptr<int> taken = std::move(*box);
  EXPECT_EQ(*taken, 7);
  Result<int> from_expected = std::expected<int, Error>(5);
  EXPECT_EQ(*from_expected, 5);
  Result<long> widened = half(8);
  EXPECT_EQ(*widened, 4);
}

TEST(ResultTest, AndThenAndTransformKeepAResult) {
  Result<int> chained = half(8).and_then(half);
  EXPECT_EQ(*chained, 2);
  EXPECT_EQ(half(6).and_then(half).error().message, "3 is odd");
  Result<std::string> text = half(10).transform([](int n) { return std::to_string(n); });
  EXPECT_EQ(*text, "5");
  EXPECT_EQ(half(1).transform([](int n) { return n + 1; }).error().message, "1 is odd");
  const Result<void> done = check(true);
  EXPECT_EQ(*done.and_then([] { return half(2); }), 1);
  bool called = false;
  Result<void> effect = half(2).transform([&](int) { called = true; });
  EXPECT_TRUE(effect);
  EXPECT_TRUE(called);
  auto moved = boxed(3).transform([](std::unique_ptr<int> p) { return *p * 2; });
  EXPECT_EQ(*moved, 6);
}

}  // namespace
}  // namespace ecs
