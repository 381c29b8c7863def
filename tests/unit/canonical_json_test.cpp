#include "core/canonical_json.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <charconv>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>

#include "idem/fingerprint.hpp"

namespace idem {
namespace {

std::optional<std::string> canon(std::string_view json, const JsonPointerSet& ignore = {}) {
  return canonicalize_json(json, ignore);
}

// --- Numbers --------------------------------------------------------------------------

// RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text. Each double is fed
// in as its shortest round-trip scientific text, so that the exact-integer departure (which
// applies only to literals without fraction or exponent) stays out of the way.
TEST(CanonicalJsonNumbers, Rfc8785AppendixB) {
  struct Case {
    std::uint64_t bits;
    const char* expected;
  };
  const Case cases[] = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (const auto& c : cases) {
    char text[64];
    auto r = std::to_chars(text, text + sizeof text, std::bit_cast<double>(c.bits),
                           std::chars_format::scientific);
    std::string input(text, r.ptr);
    EXPECT_EQ(canon(input), c.expected) << "input " << input;
  }
}

TEST(CanonicalJsonNumbers, EcmaScriptForms) {
  const std::pair<const char*, const char*> cases[] = {
      {"0", "0"},
      {"-0", "0"},
      {"-0.0", "0"},
      {"0e10", "0"},
      {"1e21", "1e+21"},
      {"1e+21", "1e+21"},
      {"1E21", "1e+21"},
      {"1e20", "100000000000000000000"},
      {"1e-7", "1e-7"},
      {"1e-6", "0.000001"},
      {"0.000001", "0.000001"},
      {"333333333.3333333", "333333333.3333333"},
      {"333333333.33333329", "333333333.3333333"},
      {"1.7976931348623157e308", "1.7976931348623157e+308"},
      {"5e-324", "5e-324"},
      {"4.5", "4.5"},
      {"4.50", "4.5"},
      {"2e-3", "0.002"},
      {"1E30", "1e+30"},
      {"0.000000000000000000000000001", "1e-27"},
      {"1.0", "1"},
      {"-1.0", "-1"},
      {"1.5e1", "15"},
      {"100", "100"},
      {"-42", "-42"},
      {"0.1", "0.1"},
      {"123456789012345680000", "123456789012345680000"},
      {"1.2345678901234568e20", "123456789012345680000"},
      {"12345678.9e-3", "12345.6789"},
  };
  for (const auto& [input, expected] : cases) EXPECT_EQ(canon(input), expected) << input;
}

// Contract section 6: integers a double cannot hold keep their digits, so that two ids
// never collapse into one request.
TEST(CanonicalJsonNumbers, IntegersBeyondDoublePrecisionKeepTheirDigits) {
  EXPECT_EQ(canon("9007199254740993"), "9007199254740993");
  EXPECT_EQ(canon("9007199254740992"), "9007199254740992");
  EXPECT_NE(canon("9007199254740993"), canon("9007199254740992"));
  EXPECT_EQ(canon("-9007199254740993"), "-9007199254740993");
  EXPECT_EQ(canon("18446744073709551617"), "18446744073709551617");  // 2^64 + 1
  EXPECT_EQ(canon("123456789012345678901234567890"), "123456789012345678901234567890");
  EXPECT_EQ(canon("[9007199254740993,1]"), "[9007199254740993,1]");
  // Integers a double holds exactly still take the ECMAScript form.
  EXPECT_EQ(canon("18446744073709551616"), "18446744073709552000");  // 2^64
  EXPECT_EQ(canon("10000000000000000000000"), "1e+22");
  // Written with a fraction or an exponent, RFC 8785 applies unchanged.
  EXPECT_EQ(canon("9007199254740993.0"), "9007199254740992");
  EXPECT_EQ(canon("9.007199254740993e15"), "9007199254740992");
  // An integer beyond double range is still an integer: its digits are kept.
  std::string huge = "1" + std::string(400, '0');
  EXPECT_EQ(canon(huge), huge);
}

// Short decimals bypass binary floating point; from_chars/to_chars is the reference.
TEST(CanonicalJsonNumbers, DecimalShortcutAgreesWithBinaryPath) {
  std::mt19937_64 random(8785);
  auto digit = [&](char low) { return static_cast<char>(low + random() % ('9' - low + 1)); };
  for (int i = 0; i < 200000; ++i) {
    std::string token = random() % 4 == 0 ? "-" : "";
    int int_digits = 1 + static_cast<int>(random() % 18);
    token += int_digits == 1 ? digit('0') : digit('1');
    for (int d = 1; d < int_digits; ++d) token += digit('0');
    if (random() % 3 != 0) {
      token += '.';
      for (int d = 1 + static_cast<int>(random() % 18); d > 0; --d) {
        token += random() % 3 == 0 ? '0' : digit('0');
      }
    }
    if (random() % 2 == 0) {
      token += random() % 2 == 0 ? "e" : "E";
      int exponent = static_cast<int>(random() % 700) - 350;
      if (exponent >= 0 && random() % 2 == 0) token += '+';
      token += std::to_string(exponent);
    }
    char fast[128], exact[128];
    char* fast_end = detail::write_json_number(token, fast);
    char* exact_end = detail::write_json_number_exact(token, exact);
    ASSERT_EQ(fast_end == nullptr, exact_end == nullptr) << token;
    if (fast_end != nullptr) {
      ASSERT_EQ(std::string_view(fast, fast_end - fast), std::string_view(exact, exact_end - exact))
          << token;
    }
  }
}

TEST(CanonicalJsonNumbers, OutOfDoubleRangeIsNotCanonical) {
  EXPECT_EQ(canon("1e400"), std::nullopt);
  EXPECT_EQ(canon("-1e400"), std::nullopt);
  EXPECT_EQ(canon("[1e400]"), std::nullopt);
  EXPECT_EQ(canon("{\"a\":1.7976931348623159e308}"), std::nullopt);
  // Rounding a non-zero value to 0 would merge it with 0: fingerprinted raw as well.
  EXPECT_EQ(canon("1e-400"), std::nullopt);
}

// --- Strings ---------------------------------------------------------------------------

TEST(CanonicalJsonStrings, Rfc8785EscapingExample) {
  EXPECT_EQ(canon(R"("\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/")"),
            "\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"");
}

TEST(CanonicalJsonStrings, ControlsAreEscapedEverythingElseIsLiteral) {
  EXPECT_EQ(canon(R"("\b\f\n\r\t")"), R"("\b\f\n\r\t")");
  EXPECT_EQ(canon(R"("\u0000\u001f\u007f")"), "\"\\u0000\\u001f\x7F\"");
  EXPECT_EQ(canon(R"("\u00e9\ud83d\ude00")"), "\"\xC3\xA9\xF0\x9F\x98\x80\"");
  EXPECT_EQ(canon("\"\xC3\xA9\""), "\"\xC3\xA9\"");
  EXPECT_EQ(canon(R"("<\/script>")"), R"("</script>")");
}

TEST(CanonicalJsonStrings, InvalidTextIsRefused) {
  EXPECT_EQ(canon(R"("\ud800")"), std::nullopt);        // lone high surrogate
  EXPECT_EQ(canon(R"("\udc00")"), std::nullopt);        // lone low surrogate
  EXPECT_EQ(canon(R"("\ud800\u0041")"), std::nullopt);  // high surrogate, no low one
  EXPECT_EQ(canon("\"\xFF\""), std::nullopt);           // not UTF-8
  EXPECT_EQ(canon(R"("\x")"), std::nullopt);            // no such escape
  EXPECT_EQ(canon("\"a\nb\""), std::nullopt);           // raw control character
}

// --- Structure -------------------------------------------------------------------------

TEST(CanonicalJson, Rfc8785MainExample) {
  const char* input = R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  EXPECT_EQ(canon(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
            "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

// RFC 8785 section 3.2.3: names sort by UTF-16 code units, so U+1F600 (a surrogate pair
// starting 0xD83D) sorts before U+FB33 although its code point is larger.
TEST(CanonicalJson, Rfc8785SortingExample) {
  const char* input = R"({
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  })";
  EXPECT_EQ(canon(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xC2\x80\":\"Control\","
            "\"\xC3\xB6\":\"Latin Small Letter O With Diaeresis\",\"\xE2\x82\xAC\":\"Euro Sign\","
            "\"\xF0\x9F\x98\x80\":\"Emoji: Grinning Face\","
            "\"\xEF\xAC\xB3\":\"Hebrew Letter Dalet With Dagesh\"}");
}

TEST(CanonicalJson, SortsByUnescapedNames) {
  EXPECT_EQ(canon(R"({"b":1,"\u0061":2})"), R"({"a":2,"b":1})");
  EXPECT_EQ(canon(R"({"ab":1,"a":2,"":3,"B":4})"), R"({"":3,"B":4,"a":2,"ab":1})");
}

TEST(CanonicalJson, NestedObjectsAndArrays) {
  EXPECT_EQ(canon(R"({ "z": [3, {"y": 1, "x": [ {"b":true,"a":null} ]}], "a": {} , "m": [] })"),
            R"({"a":{},"m":[],"z":[3,{"x":[{"a":null,"b":true}],"y":1}]})");
  EXPECT_EQ(canon(" \n\t[ 1 , 2 ,[ ] ]\r\n"), "[1,2,[]]");
}

TEST(CanonicalJson, TopLevelScalars) {
  EXPECT_EQ(canon("1"), "1");
  EXPECT_EQ(canon(" 1.50 "), "1.5");
  EXPECT_EQ(canon(R"( "x" )"), R"("x")");
  EXPECT_EQ(canon("true"), "true");
  EXPECT_EQ(canon("false"), "false");
  EXPECT_EQ(canon("null"), "null");
  // simdjson 3.0.1 refuses these root literals; found by fuzzing.
  EXPECT_EQ(canon(" null "), "null");
  EXPECT_EQ(canon("true\n\n\n\n"), "true");
  EXPECT_EQ(canon("false  "), "false");
  EXPECT_EQ(canon("null" + std::string(100, ' ')), "null");
  EXPECT_EQ(canon("\"x\"" + std::string(100, '\n')), "\"x\"");
  EXPECT_EQ(canon("\"\\n\"" + std::string(100, ' ')), "\"\\n\"");
  EXPECT_EQ(canon("-1.50" + std::string(100, '\t')), "-1.5");
  EXPECT_EQ(canon("\ttrue\n"), "true");
  EXPECT_EQ(canon(" false "), "false");
}

TEST(CanonicalJson, LiteralsWithWhiteSpace) {
  EXPECT_EQ(canon("[ null , true\n,\tfalse ]"), "[null,true,false]");
  EXPECT_EQ(canon(R"({ "a" : null , "b" : true })"), R"({"a":null,"b":true})");
  EXPECT_EQ(canon(R"([true          ,null          ,false          ,"x"          ,1          ])"),
            R"([true,null,false,"x",1])");
}

TEST(CanonicalJson, ContractExample) {
  EXPECT_EQ(canon(R"({"b":1,"a":2})"), canon(R"({ "a": 2, "b": 1.0 })"));
  EXPECT_NE(canon(R"({"b":1,"a":2})"), canon(R"({"a":2,"b":1.5})"));
}

TEST(CanonicalJson, InvalidJsonIsRefused) {
  const char* cases[] = {
      "",
      " ",
      "{",
      "}",
      "[",
      "{\"a\":}",
      "[1,]",
      "{\"a\":1,}",
      "01",
      "1.",
      ".5",
      "+1",
      "-",
      "[01]",
      "{}x",
      "{} {}",
      "1 2",
      "[1 2]",
      "[1]]",
      "{\"a\":1}}",
      "tru",
      "nul",
      "truex",
      "nullx",
      "[tru]",
      "{\"a\" 1}",
      "{'a':1}",
      "NaN",
      "Infinity",
      "[1,2",
      "{\"a\":[}",
      "[{\"a\":1]}",
      "\"abc",
      "{\"a\":1 \"b\":2}",
      // Found by fuzzing: a string followed by ':' inside an array, then a stray '}'.
      R"({"items":["k":"A-1","p":2}],"m":1})",
      R"(["k":1}])",
  };
  for (const char* input : cases) EXPECT_EQ(canon(input), std::nullopt) << "[" << input << "]";
}

TEST(CanonicalJson, DuplicateNamesAtAnyDepthAreRefused) {
  EXPECT_EQ(canon(R"({"a":1,"a":2})"), std::nullopt);
  EXPECT_EQ(canon(R"({"a":1,"a":1})"), std::nullopt);
  EXPECT_EQ(canon(R"({"a":1,"\u0061":2})"), std::nullopt);
  EXPECT_EQ(canon(R"({"x":{"b":1,"c":{"d":1,"d":2}}})"), std::nullopt);
  EXPECT_EQ(canon(R"([1,{"k":1,"k":1}])"), std::nullopt);
  EXPECT_EQ(canon(R"({"a":1,"A":2})"), R"({"A":2,"a":1})");
  EXPECT_EQ(canon(R"([{"a":1},{"a":1}])"), R"([{"a":1},{"a":1}])");
}

// Bodies over 1 MiB take their own buffers (not kept per thread): same results.
TEST(CanonicalJson, LargeBodies) {
  std::string large = "{\"z\":[", expected = "{\"a\":\"x\",\"z\":[";
  for (int i = 0; i < 300000; ++i) {
    const char* item = i % 2 ? "1.50, " : "-7 ,";
    large += item;
    expected += i % 2 ? "1.5," : "-7,";
  }
  large += "0] , \"a\" : \"x\"}";
  expected += "0]}";
  ASSERT_GT(large.size(), 1u << 20);
  EXPECT_EQ(canon(large), expected);
  EXPECT_EQ(canon(R"({"b":1,"a":2})"), R"({"a":2,"b":1})");  // the per-thread path after it
  EXPECT_EQ(canon(large + "x"), std::nullopt);
}

TEST(CanonicalJson, NestingDepthIsBounded) {
  auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_EQ(canon(nested(200)), nested(200));
  EXPECT_EQ(canon(nested(300)), std::nullopt);
}

// --- fingerprint_ignore (RFC 6901) ------------------------------------------------------

TEST(CanonicalJsonIgnore, TopLevelAndNestedMembers) {
  JsonPointerSet ignore({"/timestamp", "/meta/client_request_id"});
  EXPECT_EQ(
      canon(R"({"amount":5,"timestamp":"now","meta":{"client_request_id":"r1","v":1}})", ignore),
      R"({"amount":5,"meta":{"v":1}})");
  // Pointers to members that are not there change nothing.
  EXPECT_EQ(canon(R"({"amount":5,"meta":3})", ignore), R"({"amount":5,"meta":3})");
  EXPECT_EQ(canon(R"([{"timestamp":1}])", ignore), R"([{"timestamp":1}])");
}

TEST(CanonicalJsonIgnore, ArrayElements) {
  JsonPointerSet ignore({"/items/1", "/items/0/secret", "/0"});
  EXPECT_EQ(canon(R"({"items":[{"secret":1,"id":"a"},{"id":"b"},{"id":"c"}]})", ignore),
            R"({"items":[{"id":"a"},{"id":"c"}]})");
  EXPECT_EQ(canon(R"(["drop","keep"])", ignore), R"(["keep"])");
  // "01" is not an array index (RFC 6901 section 4) but it is a member name.
  JsonPointerSet leading_zero({"/01"});
  EXPECT_EQ(canon(R"(["a","b"])", leading_zero), R"(["a","b"])");
  EXPECT_EQ(canon(R"({"01":1,"1":2})", leading_zero), R"({"1":2})");
}

TEST(CanonicalJsonIgnore, EscapedTokens) {
  JsonPointerSet ignore({"/a~1b", "/m~0n", "/~01", "/"});
  EXPECT_EQ(canon(R"({"a/b":1,"m~n":2,"~1":3,"":4,"a":5,"m":6})", ignore), R"({"a":5,"m":6})");
}

TEST(CanonicalJsonIgnore, IgnoredPartsAreStillValidated) {
  JsonPointerSet ignore({"/skip"});
  EXPECT_EQ(canon(R"({"skip":{"d":1,"d":2},"a":1})", ignore), std::nullopt);
  EXPECT_EQ(canon(R"({"skip":1,"skip":2,"a":1})", ignore), std::nullopt);
  EXPECT_EQ(canon(R"({"skip":tru,"a":1})", ignore), std::nullopt);
  EXPECT_EQ(canon(R"({"skip":1e400,"a":1})", ignore), std::nullopt);
}

TEST(CanonicalJsonIgnore, BadPointersAreRefusedAtStartUp) {
  try {
    JsonPointerSet bad({"/ok", "timestamp"});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("\"timestamp\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(JsonPointerSet({"/a~2"}), std::invalid_argument);
  EXPECT_THROW(JsonPointerSet({"/a~"}), std::invalid_argument);
  // The empty pointer names the whole document: refused rather than ignoring the body.
  EXPECT_THROW(JsonPointerSet({""}), std::invalid_argument);
  EXPECT_TRUE(JsonPointerSet().empty());
  EXPECT_TRUE(JsonPointerSet(std::vector<std::string>{}).empty());
  EXPECT_FALSE(JsonPointerSet({"/a"}).empty());
}

TEST(CanonicalJsonIgnore, SetsCopyAndMove) {
  JsonPointerSet original({"/a"});
  JsonPointerSet copy = original;
  JsonPointerSet moved = std::move(original);
  EXPECT_EQ(canon(R"({"a":1,"b":2})", copy), R"({"b":2})");
  EXPECT_EQ(canon(R"({"a":1,"b":2})", moved), R"({"b":2})");
  copy = JsonPointerSet({"/b"});
  EXPECT_EQ(canon(R"({"a":1,"b":2})", copy), R"({"a":1})");
}

}  // namespace
}  // namespace idem
