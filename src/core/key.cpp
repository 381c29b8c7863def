#include "idem/key.hpp"

#include <stdexcept>

namespace idem {

namespace {

constexpr std::size_t kMaxKeyLength = 255;

bool is_printable(char c) noexcept { return c >= 0x21 && c <= 0x7e; }

bool is_hex(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_uuid(std::string_view k) noexcept {
  if (k.size() != 36) return false;
  for (std::size_t i = 0; i < k.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? k[i] != '-' : !is_hex(k[i])) return false;
  }
  return true;
}

// Crockford base32 without I, L, O, U; the first character is at most '7' because a ULID
// is 128 bits.
bool is_ulid(std::string_view k) noexcept {
  if (k.size() != 26 || k[0] < '0' || k[0] > '7') return false;
  for (char c : k) {
    char u = (c >= 'a' && c <= 'z') ? char(c - 32) : c;
    bool digit = u >= '0' && u <= '9';
    bool letter = u >= 'A' && u <= 'Z' && u != 'I' && u != 'L' && u != 'O' && u != 'U';
    if (!digit && !letter) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

KeyFormat KeyFormat::parse(std::string_view setting) {
  KeyFormat f;
  f.text_ = std::string(setting);
  if (setting == "any") return f;
  if (setting == "uuid") {
    f.kind_ = Kind::uuid;
    return f;
  }
  if (setting == "ulid") {
    f.kind_ = Kind::ulid;
    return f;
  }
  if (setting.empty())
    throw std::invalid_argument("key_format: empty (use any, uuid, ulid or a regex)");
  try {
    f.regex_ = std::make_shared<const std::regex>(f.text_, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw std::invalid_argument("key_format: not any, uuid, ulid nor a valid regular expression: " +
                                std::string(e.what()));
  }
  f.kind_ = Kind::regex;
  return f;
}

bool KeyFormat::matches(std::string_view key) const {
  switch (kind_) {
    case Kind::any:
      return true;
    case Kind::uuid:
      return is_uuid(key);
    case Kind::ulid:
      return is_ulid(key);
    case Kind::regex:
      return std::regex_match(key.begin(), key.end(), *regex_);
  }
  return false;
}

std::string_view describe(KeyError error) noexcept {
  switch (error) {
    case KeyError::invalid_syntax:
      return "the key is neither a Structured Field string nor a bare token";
    case KeyError::bad_length:
      return "the key must be 1 to 255 characters long";
    case KeyError::bad_character:
      return "the key may hold printable ASCII characters only (0x21-0x7E, no space)";
    case KeyError::duplicate_header:
      return "the request carries more than one key header";
    case KeyError::format_mismatch:
      return "the key does not have the format this route requires";
  }
  return "invalid key";
}

std::variant<std::string, KeyError> parse_key(std::string_view header_value,
                                              const KeyFormat& format) {
  std::string_view v = trim_ows(header_value);
  std::string key;
  if (!v.empty() && v.front() == '"') {
    // RFC 8941 sf-string: only \" and \\ escapes; the closing quote ends the value.
    if (v.size() < 2 || v.back() != '"') return KeyError::invalid_syntax;
    std::string_view inner = v.substr(1, v.size() - 2);
    key.reserve(inner.size());
    for (std::size_t i = 0; i < inner.size(); ++i) {
      char c = inner[i];
      if (c == '\\') {
        if (i + 1 == inner.size() || (inner[i + 1] != '"' && inner[i + 1] != '\\')) {
          return KeyError::invalid_syntax;
        }
        key.push_back(inner[++i]);
      } else if (c == '"') {
        return KeyError::invalid_syntax;
      } else {
        key.push_back(c);
      }
    }
  } else {
    key.assign(v);
  }
  if (key.empty() || key.size() > kMaxKeyLength) return KeyError::bad_length;
  for (char c : key) {
    if (!is_printable(c)) return KeyError::bad_character;
  }
  if (!format.matches(key)) return KeyError::format_mismatch;
  return key;
}

std::optional<std::variant<std::string, KeyError>> extract_key(
    std::span<const std::string_view> header_values, const KeyFormat& format) {
  if (header_values.empty()) return std::nullopt;
  if (header_values.size() > 1) return KeyError::duplicate_header;
  return parse_key(header_values.front(), format);
}

}  // namespace idem
