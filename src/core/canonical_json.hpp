#pragma once

#include <concepts>
#include <string>
#include <string_view>

#include "idem/fingerprint.hpp"

namespace idem::detail {

/// A non-owning reference to a callable taking a string_view (like C++26 function_ref):
/// lets a caller consume text that lives in per-thread buffers without copying it.
class TextSink {
 public:
  template <std::invocable<std::string_view> F>
  TextSink(F& f) noexcept  // NOLINT(google-explicit-constructor): implicit, as function_ref
      : object_(&f), call_([](void* o, std::string_view text) { (*static_cast<F*>(o))(text); }) {}
  void operator()(std::string_view text) const { call_(object_, text); }

 private:
  void* object_;
  void (*call_)(void*, std::string_view);
};

/// canonicalize_json() without a copy: on success calls `sink` once with the canonical
/// text, which lives in per-thread buffers only for the duration of that call, and returns
/// true. Returns false (and does not call `sink`) where canonicalize_json() returns nullopt.
bool canonicalize_json_into(std::string_view json, const JsonPointerSet& ignore, TextSink sink);

/// canonicalize_form() writing into `out` (cleared first).
void canonicalize_form_to(std::string_view form, std::string& out);

/// Room write_json_number() may need beyond the token's own length.
constexpr std::size_t kNumberSlack = 32;

/// Writes the RFC 8785 form of one JSON number token at `p` (room for token.size() +
/// kNumberSlack bytes) and returns its end. Returns nullptr for text that is not a JSON
/// number and for numbers a double cannot hold (overflow, or underflow to zero).
char* write_json_number(std::string_view token, char* p) noexcept;

/// write_json_number() through binary floating point only (from_chars, then to_chars'
/// shortest digits), without the decimal shortcut: the reference the tests compare with.
char* write_json_number_exact(std::string_view token, char* p) noexcept;

/// Writes `s` (valid UTF-8) as an RFC 8785 JSON string, quotes included, at `p` and returns
/// its end. Needs room for 6 * s.size() + 2 bytes, or for the JSON string token (quotes
/// included) that `s` was unescaped from: canonical escaping is never longer than another.
char* write_json_string(std::string_view s, char* p) noexcept;

/// Orders member names as RFC 8785 does: by their UTF-16 code units. Both are valid UTF-8.
bool utf16_less(std::string_view a, std::string_view b) noexcept;

}  // namespace idem::detail
