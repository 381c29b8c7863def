#pragma once

// Parsers of single setting values, shared by the configuration file and the flags. Each
// failure is a ConfigError naming the setting.

#include <optional>
#include <string>
#include <string_view>

#include "config.hpp"

namespace idem::gateway::config_detail {

[[noreturn]] void fail(std::string_view setting, std::string_view problem);

std::string lower(std::string_view s);
/// An RFC 9110 token: a header name or a method.
bool is_token(std::string_view s);

/// "300ms", "30s", "5m", "2h", "1d", "1.5s" or a bare number of seconds.
std::optional<Duration> parse_duration_text(std::string_view text);
std::optional<std::size_t> parse_size_text(std::string_view text);
std::string parse_secret(std::string_view text);
HostPort parse_upstream(std::string_view text);
std::string parse_log_level(std::string_view text);

}  // namespace idem::gateway::config_detail
