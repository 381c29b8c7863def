#include "idem/key.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace idem {
namespace {

std::variant<std::string, KeyError> parse(std::string_view v, const KeyFormat& f = {}) {
  return parse_key(v, f);
}

std::string ok(std::string_view v, const KeyFormat& f = {}) {
  auto r = parse(v, f);
  EXPECT_TRUE(std::holds_alternative<std::string>(r)) << "value: " << v;
  return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
}

KeyError err(std::string_view v, const KeyFormat& f = {}) {
  auto r = parse(v, f);
  EXPECT_TRUE(std::holds_alternative<KeyError>(r)) << "value: " << v;
  return std::holds_alternative<KeyError>(r) ? std::get<KeyError>(r) : KeyError::invalid_syntax;
}

TEST(Key, BareTokenAndStructuredFieldStringNameTheSameKey) {
  EXPECT_EQ(ok("abc-123"), "abc-123");
  EXPECT_EQ(ok("\"abc-123\""), "abc-123");
}

TEST(Key, SurroundingWhitespaceIsNotPartOfTheKey) { EXPECT_EQ(ok("  abc \t"), "abc"); }

TEST(Key, StructuredFieldEscapes) {
  EXPECT_EQ(ok(R"("a\"b\\c")"), R"(a"b\c)");
  EXPECT_EQ(err(R"("a\nb")"), KeyError::invalid_syntax);  // only \" and \\ escapes exist
  EXPECT_EQ(err(R"("abc)"), KeyError::invalid_syntax);
  EXPECT_EQ(err(R"("a"b")"), KeyError::invalid_syntax);
  EXPECT_EQ(err(R"("abc\")"), KeyError::invalid_syntax);
}

TEST(Key, LengthIsOneTo255AfterUnquoting) {
  EXPECT_EQ(err(""), KeyError::bad_length);
  EXPECT_EQ(err("\"\""), KeyError::bad_length);
  EXPECT_EQ(ok(std::string(255, 'k')).size(), 255u);
  EXPECT_EQ(err(std::string(256, 'k')), KeyError::bad_length);
  // Quotes do not count towards the limit.
  EXPECT_EQ(ok("\"" + std::string(255, 'k') + "\"").size(), 255u);
}

TEST(Key, OnlyPrintableAsciiWithoutSpace) {
  EXPECT_EQ(ok("!~"), "!~");
  EXPECT_EQ(err("a b"), KeyError::bad_character);
  EXPECT_EQ(err("\"a b\""), KeyError::bad_character);
  EXPECT_EQ(err("a\x7f"), KeyError::bad_character);
  EXPECT_EQ(err("caf\xc3\xa9"), KeyError::bad_character);
  EXPECT_EQ(err(std::string("a\0b", 3)), KeyError::bad_character);
}

TEST(Key, TwoHeadersAreInvalid) {
  std::vector<std::string_view> two{"a", "a"};
  auto r = extract_key(two, KeyFormat{});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<KeyError>(*r), KeyError::duplicate_header);
  std::vector<std::string_view> none;
  EXPECT_FALSE(extract_key(none, KeyFormat{}).has_value());
  std::vector<std::string_view> one{"k1"};
  EXPECT_EQ(std::get<std::string>(*extract_key(one, KeyFormat{})), "k1");
}

TEST(Key, UuidFormat) {
  auto f = KeyFormat::parse("uuid");
  EXPECT_EQ(f.kind(), KeyFormat::Kind::uuid);
  EXPECT_EQ(ok("123e4567-e89b-12d3-a456-426614174000", f), "123e4567-e89b-12d3-a456-426614174000");
  EXPECT_EQ(ok("123E4567-E89B-12D3-A456-426614174000", f), "123E4567-E89B-12D3-A456-426614174000");
  EXPECT_EQ(err("123e4567e89b12d3a456426614174000", f), KeyError::format_mismatch);
  EXPECT_EQ(err("123e4567-e89b-12d3-a456-42661417400g", f), KeyError::format_mismatch);
  EXPECT_EQ(err("abc", f), KeyError::format_mismatch);
}

TEST(Key, UlidFormat) {
  auto f = KeyFormat::parse("ulid");
  EXPECT_EQ(ok("01ARZ3NDEKTSV4RRFFQ69G5FAV", f), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
  EXPECT_EQ(ok("01arz3ndektsv4rrffq69g5fav", f), "01arz3ndektsv4rrffq69g5fav");
  EXPECT_EQ(err("81ARZ3NDEKTSV4RRFFQ69G5FAV", f), KeyError::format_mismatch);  // > 128 bits
  EXPECT_EQ(err("01ARZ3NDEKTSV4RRFFQ69G5FAI", f), KeyError::format_mismatch);  // no I
  EXPECT_EQ(err("01ARZ3NDEKTSV4RRFFQ69G5FA", f), KeyError::format_mismatch);
}

TEST(Key, RegexFormatMatchesTheWholeKey) {
  auto f = KeyFormat::parse("^ord_[0-9]{4}$");
  EXPECT_EQ(f.kind(), KeyFormat::Kind::regex);
  EXPECT_EQ(ok("ord_1234", f), "ord_1234");
  EXPECT_EQ(err("ord_12345", f), KeyError::format_mismatch);
  auto g = KeyFormat::parse("[a-z]+");
  EXPECT_EQ(err("abc1", g), KeyError::format_mismatch);  // full match, not search
}

TEST(Key, BadFormatSettingNamesTheSetting) {
  try {
    KeyFormat::parse("([unclosed");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("key_format"), std::string::npos);
  }
}

TEST(Key, EveryErrorIsDescribed) {
  for (auto e : {KeyError::invalid_syntax, KeyError::bad_length, KeyError::bad_character,
                 KeyError::duplicate_header, KeyError::format_mismatch}) {
    EXPECT_FALSE(describe(e).empty());
  }
}

}  // namespace
}  // namespace idem
