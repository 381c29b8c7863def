// RFC 8785 numbers: ECMAScript Number::toString of the shortest round-trip double, with
// idem's departure for integers a double cannot hold (contract section 6).

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

char* copy(const char* from, std::size_t n, char* p) noexcept {
  std::memcpy(p, from, n);
  return p + n;
}

/// ECMA-262 section 6.1.6.1.20 (Number::toString) given the shortest digits d1..dk (no
/// leading or trailing zeros) of a non-zero value 0.d1..dk * 10^n.
char* write_es_form(bool negative, const char* digits, int k, int n, char* p) noexcept {
  if (negative) *p++ = '-';
  if (k <= n && n <= 21) {  // an integer: all digits, then zeros
    p = copy(digits, k, p);
    std::memset(p, '0', n - k);
    return p + (n - k);
  }
  if (0 < n && n <= 21) {  // the point falls inside the digits
    p = copy(digits, n, p);
    *p++ = '.';
    return copy(digits + n, k - n, p);
  }
  if (-6 < n && n <= 0) {  // a small fraction: "0.000ddd"
    p = copy("0.", 2, p);
    std::memset(p, '0', -n);
    return copy(digits, k, p + -n);
  }
  *p++ = digits[0];  // exponent form: "d.ddde+XX" / "de-XX"
  if (k > 1) {
    *p++ = '.';
    p = copy(digits + 1, k - 1, p);
  }
  *p++ = 'e';
  *p++ = n - 1 < 0 ? '-' : '+';
  return std::to_chars(p, p + 8, n - 1 < 0 ? 1 - n : n - 1).ptr;
}

/// Number::toString of a finite double, from to_chars' shortest round-trip digits.
char* write_es_number(double d, char* p) noexcept {
  if (d == 0) {  // also -0
    *p++ = '0';
    return p;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  // The form is "-d.ddde+XX": split it into digits and exponent.
  const char* q = buf + (d < 0 ? 1 : 0);
  char digits[24];
  int k = 0;
  for (; q < end && *q != 'e'; ++q) {
    if (*q != '.') digits[k++] = *q;
  }
  int exponent = 0;
  std::from_chars(q + (q[1] == '+' ? 2 : 1), end, exponent);  // from_chars takes '-' only
  return write_es_form(d < 0, digits, k, exponent + 1, p);
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

/// The common case without binary floating point: a decimal of at most 15 significant
/// digits within the normal range. Any such decimal survives decimal -> double -> decimal
/// (DBL_DIG is 15), and no shorter decimal maps to the same double (it would be a second
/// 15-digit decimal with that double), so its own digits, zeros trimmed, are the shortest
/// round-trip digits. Returns nullptr when the number is not such a decimal.
char* write_short_decimal(std::string_view t, char* p) noexcept {
  const bool negative = t.front() == '-';
  char digits[16];
  int k = 0;      // significant digits so far
  int zeros = 0;  // zeros after the last non-zero digit: kept only if one follows
  int n = 0;      // the value is 0.digits * 10^n
  bool significant = false, fraction = false;
  std::size_t i = negative ? 1 : 0;
  for (; i < t.size() && t[i] != 'e' && t[i] != 'E'; ++i) {
    const char c = t[i];
    if (c == '.') {
      fraction = true;
      continue;
    }
    if (!significant && c == '0') {  // a leading zero: "0.00ddd" moves the point
      if (fraction) --n;
      continue;
    }
    significant = true;
    if (!fraction) ++n;
    if (c == '0') {
      ++zeros;
      continue;
    }
    if (k + zeros >= 15) return nullptr;
    std::memset(digits + k, '0', zeros);
    k += zeros;
    zeros = 0;
    digits[k++] = c;
  }
  if (!significant) {  // zero, whatever the sign and exponent
    *p++ = '0';
    return p;
  }
  if (i < t.size()) {  // the exponent; its grammar is already checked
    bool minus = t[++i] == '-';
    if (t[i] == '+' || t[i] == '-') ++i;
    if (t.size() - i > 4) return nullptr;  // far outside the range handled here
    int exponent = 0;
    for (; i < t.size(); ++i) exponent = exponent * 10 + (t[i] - '0');
    n += minus ? -exponent : exponent;
  }
  if (n < -290 || n > 290) return nullptr;
  return write_es_form(negative, digits, k, n, p);
}

}  // namespace

char* write_json_number(std::string_view token, char* p) noexcept {
  bool integer = false;
  if (!is_json_number(token, integer)) return nullptr;
  if (integer && token.size() <= 15 && token != "-0") {
    // Below 10^15 every integer is a double printed with all its digits, and JSON integers
    // have no leading zeros: the literal is already canonical.
    return copy(token.data(), token.size(), p);
  }
  if (!integer) {
    if (char* end = write_short_decimal(token, p)) return end;
  }
  return write_json_number_exact(token, p);
}

char* write_json_number_exact(std::string_view token, char* p) noexcept {
  bool integer = false;
  if (!is_json_number(token, integer)) return nullptr;
  double d = 0;
  auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), d);
  if (integer) {
    // The contract's departure from RFC 8785: an integer a double cannot hold (above 2^53,
    // beyond 64 bits, beyond double range) keeps its digits, so that two different ids
    // never share a fingerprint. JSON integers have no leading zeros: the text is canonical.
    if (ec != std::errc{} || !holds_exactly(token, d)) return copy(token.data(), token.size(), p);
  } else if (ec != std::errc{}) {
    // Overflow (1e400) or a non-zero value that rounds to zero (1e-400): ECMAScript would
    // make these Infinity (not JSON) or 0 (a different request), so they are not canonical.
    return nullptr;
  }
  return write_es_number(d, p);
}

}  // namespace idem::detail
