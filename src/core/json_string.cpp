// RFC 8785 strings: minimal escaping, and the UTF-16 order of member names.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/canonical_json.hpp"

namespace idem::detail {

namespace {

/// Whether any of the 8 bytes in `w` needs escaping in a JSON string: a control byte
/// (< 0x20), '"' or '\\'. The usual SWAR tests for a zero or a small byte; exact, since a
/// borrow can only start at a byte that already matched.
bool needs_escape(std::uint64_t w) noexcept {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  auto has_zero = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  std::uint64_t control = (w - kOnes * 0x20) & ~w & kHigh;
  return (control | has_zero(w ^ (kOnes * '"')) | has_zero(w ^ (kOnes * '\\'))) != 0;
}

/// Whether any byte of `s` needs escaping, 8 bytes at a time.
bool any_needs_escape(std::string_view s) noexcept {
  std::uint64_t word;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::memcpy(&word, s.data() + i, 8);
    if (needs_escape(word)) return true;
  }
  word = 0x6161616161616161ULL;  // the tail, padded with 'a', which needs no escape
  std::memcpy(&word, s.data() + i, s.size() - i);
  return needs_escape(word);
}

char* copy(const char* from, std::size_t n, char* p) noexcept {
  std::memcpy(p, from, n);
  return p + n;
}

}  // namespace

char* write_json_string(std::string_view s, char* p) noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = '"';
  if (!any_needs_escape(s)) {  // most names and values
    p = copy(s.data(), s.size(), p);
    *p++ = '"';
    return p;
  }
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    p = copy(s.data() + run, i - run, p);
    run = i + 1;
    *p++ = '\\';
    switch (c) {
      case '"':
        *p++ = '"';
        break;
      case '\\':
        *p++ = '\\';
        break;
      case '\b':
        *p++ = 'b';
        break;
      case '\f':
        *p++ = 'f';
        break;
      case '\n':
        *p++ = 'n';
        break;
      case '\r':
        *p++ = 'r';
        break;
      case '\t':
        *p++ = 't';
        break;
      default:
        p = copy("u00", 3, p);
        *p++ = kHex[c >> 4];
        *p++ = kHex[c & 0xF];
    }
  }
  p = copy(s.data() + run, s.size() - run, p);
  *p++ = '"';
  return p;
}

bool utf16_less(std::string_view a, std::string_view b) noexcept {
  auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  if (ia == a.end() || ib == b.end()) return ib != b.end();  // a prefix sorts first
  auto x = static_cast<unsigned char>(*ia), y = static_cast<unsigned char>(*ib);
  // UTF-8 byte order is code point order, and UTF-16 order agrees with it except in one
  // place: a supplementary character (lead byte 0xF0-0xF4, a surrogate pair from 0xD800 in
  // UTF-16) sorts before U+E000-U+FFFF (lead byte 0xEE or 0xEF). A difference in a
  // continuation byte means equal lead bytes, hence the same class.
  if (x >= 0xEE && y >= 0xEE && (x >= 0xF0) != (y >= 0xF0)) return x >= 0xF0;
  return x < y;
}

}  // namespace idem::detail
