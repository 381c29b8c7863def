// RFC 8785 rendering of JSON scalars: numbers (ECMAScript Number::toString of the shortest
// round-trip double, with idem's exact-integer departure), strings, and the UTF-16 order of
// member names.

#include <charconv>
#include <cstdint>
#include <cstring>

#include "core/canonical_json.hpp"

namespace idem::detail {

namespace {

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

/// Checks the JSON number grammar (RFC 8259 section 6), which is stricter than from_chars:
/// no '+', no leading zeros, no bare '.', digits on both sides of '.'.
bool is_json_number(std::string_view t, bool& integer) noexcept {
  std::size_t i = 0, n = t.size();
  if (i < n && t[i] == '-') ++i;
  if (i == n) return false;
  if (t[i] == '0') {
    ++i;
  } else if (is_digit(t[i])) {
    while (i < n && is_digit(t[i])) ++i;
  } else {
    return false;
  }
  integer = true;
  if (i < n && t[i] == '.') {
    integer = false;
    if (++i == n || !is_digit(t[i])) return false;
    while (i < n && is_digit(t[i])) ++i;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    integer = false;
    if (++i < n && (t[i] == '+' || t[i] == '-')) ++i;
    if (i == n || !is_digit(t[i])) return false;
    while (i < n && is_digit(t[i])) ++i;
  }
  return i == n;
}

/// True when the double `d`, parsed from the integer literal `t`, is exactly that integer.
bool holds_exactly(std::string_view t, double d) noexcept {
  std::size_t digits = t.size() - (t.front() == '-' ? 1 : 0);
  if (digits <= 15) return true;  // below 2^53: every integer is a double
  // With a precision, to_chars prints the exact value of the double (an integer here), not
  // the shortest round-trip text, so comparing it with the literal decides exactness.
  char buf[400];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed, 0);
  return ec == std::errc{} && std::string_view(buf, end - buf) == t;
}

/// ECMAScript Number::toString (ECMA-262 section 6.1.6.1.20) of a finite double.
void append_es_number(double d, std::string& out) {
  if (d == 0) {  // also -0
    out.push_back('0');
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  // Shortest round-trip digits in the form "-d.ddde+XX": split into digits and exponent.
  const char* p = buf;
  if (*p == '-') {
    out.push_back('-');
    ++p;
  }
  char digits[24];
  int k = 0;
  for (; p < end && *p != 'e'; ++p) {
    if (*p != '.') digits[k++] = *p;
  }
  int exponent = 0;
  std::from_chars(p + (p[1] == '+' ? 2 : 1), end, exponent);  // from_chars takes '-' only
  const int n = exponent + 1;                                 // the value is 0.digits * 10^n

  if (k <= n && n <= 21) {  // an integer: all digits, then zeros
    out.append(digits, k);
    out.append(n - k, '0');
  } else if (0 < n && n <= 21) {  // the point falls inside the digits
    out.append(digits, n);
    out.push_back('.');
    out.append(digits + n, k - n);
  } else if (-6 < n && n <= 0) {  // a small fraction: "0.000ddd"
    out.append("0.");
    out.append(-n, '0');
    out.append(digits, k);
  } else {  // exponent form: "d.ddde+XX" / "de-XX"
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out.append(digits + 1, k - 1);
    }
    out.push_back('e');
    out.push_back(n - 1 < 0 ? '-' : '+');
    char e[8];
    auto r = std::to_chars(e, e + sizeof e, n - 1 < 0 ? 1 - n : n - 1);
    out.append(e, r.ptr);
  }
}

/// Decodes the code point starting at s[i] (valid UTF-8).
char32_t decode_at(std::string_view s, std::size_t i) noexcept {
  auto b = [&](std::size_t j) { return static_cast<unsigned char>(s[i + j]); };
  if (b(0) < 0x80) return b(0);
  if (b(0) < 0xE0) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (b(0) < 0xF0) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

/// The first UTF-16 code unit of a code point: supplementary characters start with a high
/// surrogate (0xD800-0xDBFF), which sorts below U+E000-U+FFFF although their code points
/// are larger. That is the only place where UTF-8 byte order and UTF-16 order differ.
char32_t first_unit(char32_t cp) noexcept {
  return cp >= 0x10000 ? 0xD800 + ((cp - 0x10000) >> 10) : cp;
}

}  // namespace

bool append_json_number(std::string_view token, std::string& out) {
  bool integer = false;
  if (!is_json_number(token, integer)) return false;
  double d = 0;
  auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), d);
  if (integer) {
    // The contract's departure from RFC 8785: an integer a double cannot hold (above 2^53,
    // beyond 64 bits, beyond double range) keeps its digits, so that two different ids
    // never share a fingerprint. JSON integers have no leading zeros: the text is canonical.
    if (ec != std::errc{} || !holds_exactly(token, d)) {
      out.append(token);
      return true;
    }
  } else if (ec != std::errc{}) {
    // Overflow (1e400) or a non-zero value that rounds to zero (1e-400): ECMAScript would
    // make these Infinity (not JSON) or 0 (a different request), so they are not canonical.
    return false;
  }
  append_es_number(d, out);
  return true;
}

void append_json_string(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    out.push_back('\\');
    switch (c) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\b':
        out.push_back('b');
        break;
      case '\f':
        out.push_back('f');
        break;
      case '\n':
        out.push_back('n');
        break;
      case '\r':
        out.push_back('r');
        break;
      case '\t':
        out.push_back('t');
        break;
      default:
        out.append("u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xF]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

bool utf16_less(std::string_view a, std::string_view b) noexcept {
  std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  if (i == n) return a.size() < b.size();  // one is a prefix of the other
  // Back up to the first byte of the code point in which they differ.
  while (i > 0 && (static_cast<unsigned char>(a[i]) & 0xC0) == 0x80) --i;
  char32_t ca = decode_at(a, i), cb = decode_at(b, i);
  if (ca >= 0x10000 && cb >= 0x10000) return ca < cb;
  return first_unit(ca) < first_unit(cb);
}

}  // namespace idem::detail
