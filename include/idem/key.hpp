#pragma once

#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <variant>

namespace idem {

/// `key_format`: any (default), uuid, ulid, or a regular expression.
class KeyFormat {
 public:
  enum class Kind { any, uuid, ulid, regex };

  KeyFormat() = default;
  /// Parses a `key_format` setting; throws std::invalid_argument naming the problem when the
  /// setting is not one of the words and not a valid regular expression (start-up only).
  static KeyFormat parse(std::string_view setting);

  Kind kind() const noexcept { return kind_; }
  const std::string& text() const noexcept { return text_; }
  bool matches(std::string_view key) const;

 private:
  Kind kind_ = Kind::any;
  std::string text_ = "any";
  std::shared_ptr<const std::regex> regex_;
};

enum class KeyError {
  invalid_syntax,    ///< not a Structured Field string nor a token
  bad_length,        ///< empty or over 255 characters after unquoting
  bad_character,     ///< outside 0x21-0x7E
  duplicate_header,  ///< the key header appears more than once
  format_mismatch,   ///< does not match `key_format`
};

std::string_view describe(KeyError error) noexcept;

/// Parses one key header value: a Structured Field string (`"abc"`, with `\"` and `\\`
/// escapes) or a bare value; both name the same key. Returns the unquoted key.
std::variant<std::string, KeyError> parse_key(std::string_view header_value,
                                              const KeyFormat& format);

/// Applies the rules of contract section 4 to every value of the key header on a request:
/// none gives nullopt, more than one is `duplicate_header`.
std::optional<std::variant<std::string, KeyError>> extract_key(
    std::span<const std::string_view> header_values, const KeyFormat& format);

}  // namespace idem
