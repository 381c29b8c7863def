#include <gtest/gtest.h>

#include <string>

#include "idem/fingerprint.hpp"

namespace idem {
namespace {

TEST(FormCanonical, SortsByNameThenValue) {
  EXPECT_EQ(canonicalize_form("b=2&a=1"), "a=1&b=2");
  EXPECT_EQ(canonicalize_form("a=2&a=1&a=10"), "a=1&a=10&a=2");
  EXPECT_EQ(canonicalize_form("amount=5&currency=eur"), "amount=5&currency=eur");
}

TEST(FormCanonical, ComparesBytewise) {
  EXPECT_EQ(canonicalize_form("b=1&a=1&B=1&_=1"), "B=1&_=1&a=1&b=1");
  EXPECT_EQ(canonicalize_form("ab=1&a=2"), "a=2&ab=1");
  EXPECT_EQ(canonicalize_form("n=\xC3\xA9&n=z"), "n=z&n=\xC3\xA9");
}

TEST(FormCanonical, DropsEmptyPairs) {
  EXPECT_EQ(canonicalize_form(""), "");
  EXPECT_EQ(canonicalize_form("&"), "");
  EXPECT_EQ(canonicalize_form("&&b=2&&a=1&"), "a=1&b=2");
}

TEST(FormCanonical, KeepsPairsWithoutValues) {
  EXPECT_EQ(canonicalize_form("flag&a=1"), "a=1&flag");
  EXPECT_EQ(canonicalize_form("a=&a"), "a&a=");  // same decoded pair: raw bytes break the tie
  EXPECT_EQ(canonicalize_form("=x&a=1"), "=x&a=1");
}

// Compared decoded (so the order is what the application sees) but emitted as sent: two
// spellings of one parameter sort alike yet remain two different requests.
TEST(FormCanonical, ComparesDecodedEmitsRaw) {
  EXPECT_EQ(canonicalize_form("b=1&%61=2"), "%61=2&b=1");
  EXPECT_EQ(canonicalize_form("q=a+c&q=a%20b"), "q=a%20b&q=a+c");
  EXPECT_NE(canonicalize_form("q=a+b"), canonicalize_form("q=a%20b"));
}

TEST(FormCanonical, OrderNeverDependsOnInput) {
  EXPECT_EQ(canonicalize_form("a=%41&a=A"), canonicalize_form("a=A&a=%41"));
  EXPECT_EQ(canonicalize_form("x=1&x=%31&x=1"), canonicalize_form("x=%31&x=1&x=1"));
}

TEST(FormCanonical, MalformedEscapesAreKeptLiterally) {
  EXPECT_EQ(canonicalize_form("b=%zz&a=%4"), "a=%4&b=%zz");
  EXPECT_EQ(canonicalize_form("%2=2&%25=3&%=1"), "%=1&%25=3&%2=2");
}

TEST(FormCanonical, IsIdempotent) {
  const char* inputs[] = {"z=1&y=2&&x=%20&w", "a=%41&a=A&a=%61", "&&&", "k=v"};
  for (const char* input : inputs) {
    std::string once = canonicalize_form(input);
    EXPECT_EQ(canonicalize_form(once), once) << input;
  }
}

TEST(FormMediaType, Recognised) {
  EXPECT_TRUE(is_form_media_type("application/x-www-form-urlencoded"));
  EXPECT_TRUE(is_form_media_type("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
  EXPECT_TRUE(is_form_media_type("  application/x-www-form-urlencoded  ;charset=utf-8"));
  EXPECT_FALSE(is_form_media_type("multipart/form-data; boundary=x"));
  EXPECT_FALSE(is_form_media_type("application/json"));
  EXPECT_FALSE(is_form_media_type(""));
}

}  // namespace
}  // namespace idem
