#pragma once

#include <string>
#include <string_view>

#include "idem/fingerprint.hpp"

namespace idem::detail {

/// canonicalize_json() writing into `out` (cleared first), so that a caller on the request
/// path can reuse one buffer. Returns false where canonicalize_json() returns nullopt; `out`
/// then holds nothing useful.
bool canonicalize_json_to(std::string_view json, const JsonPointerSet& ignore, std::string& out);

/// canonicalize_form() writing into `out` (cleared first).
void canonicalize_form_to(std::string_view form, std::string& out);

/// Appends the RFC 8785 form of one JSON number token (already known to be a number token
/// of the JSON grammar or not: the grammar is checked here). Returns false for text that is
/// not a JSON number and for numbers a double cannot hold (overflow, or underflow to zero).
bool append_json_number(std::string_view token, std::string& out);

/// Appends `s` (valid UTF-8) as an RFC 8785 JSON string, quotes included.
void append_json_string(std::string_view s, std::string& out);

/// Orders member names as RFC 8785 does: by their UTF-16 code units. Both are valid UTF-8.
bool utf16_less(std::string_view a, std::string_view b) noexcept;

}  // namespace idem::detail
