#include "config_values.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

namespace idem::gateway {

namespace config_detail {

[[noreturn]] void fail(std::string_view setting, std::string_view problem) {
  throw ConfigError(std::string(setting) + ": " + std::string(problem));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

/// "300ms", "30s", "5m", "2h", "1d", "1.5s" or a bare number of seconds.
std::optional<Duration> parse_duration_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return std::nullopt;
  double number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i) return std::nullopt;
  std::string_view unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m" || unit == "min") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else if (unit == "d") {
    ms_per_unit = 86'400'000;
  } else {
    return std::nullopt;
  }
  double ms = number * ms_per_unit;
  if (!std::isfinite(ms) || ms > 1e15) return std::nullopt;
  return Duration(static_cast<Duration::rep>(std::llround(ms)));
}

/// "10MiB", "512KiB", "4MB", "1000" (bytes).
std::optional<std::size_t> parse_size_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return std::nullopt;
  std::uint64_t number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc()) return std::nullopt;
  std::string unit = lower(text.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "kib") {
    mult = 1ull << 10;
  } else if (unit == "kb") {
    mult = 1000;
  } else if (unit == "m" || unit == "mib") {
    mult = 1ull << 20;
  } else if (unit == "mb") {
    mult = 1'000'000;
  } else if (unit == "g" || unit == "gib") {
    mult = 1ull << 30;
  } else if (unit == "gb") {
    mult = 1'000'000'000;
  } else {
    return std::nullopt;
  }
  if (number > (std::uint64_t{1} << 50) / mult) return std::nullopt;
  return static_cast<std::size_t>(number * mult);
}

namespace {

std::optional<std::string> decode_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, value, 16);
    if (ec != std::errc() || p != s.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<char>(value));
  }
  return out;
}

std::optional<std::string> decode_base64(std::string_view s) {
  std::string in(s);
  // Accept the URL-safe alphabet and missing padding too.
  for (char& c : in) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (in.size() % 4 != 0) in.push_back('=');
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it) ++pad;
  out.resize(static_cast<std::size_t>(n) - std::min<std::size_t>(pad, 2));
  return out;
}

}  // namespace

/// Hex when the text is only hex digits of even length, base64 otherwise.
std::string parse_secret(std::string_view text) {
  bool all_hex = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c));
  });
  std::optional<std::string> raw = all_hex ? decode_hex(text) : decode_base64(text);
  if (!raw) fail("secret", "expected hex or base64");
  if (raw->size() < 16) fail("secret", "must be at least 16 bytes once decoded");
  return *raw;
}

HostPort parse_upstream(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (text.size() < kScheme.size() || lower(text.substr(0, kScheme.size())) != kScheme) {
    if (lower(text).starts_with("https://")) {
      fail("upstream", "https upstreams are not supported; expected http://HOST:PORT");
    }
    fail("upstream", "expected http://HOST:PORT");
  }
  std::string_view rest = text.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    fail("upstream", "expected http://HOST:PORT without a path");
  }
  if (rest.empty()) fail("upstream", "expected http://HOST:PORT");
  // The port is optional in a URL: 80 by default.
  bool has_port = rest.front() == '[' ? rest.find("]:") != std::string_view::npos
                                      : rest.find(':') != std::string_view::npos;
  HostPort hp = has_port ? parse_host_port(rest, "upstream")
                         : parse_host_port(std::string(rest) + ":80", "upstream");
  if (hp.host.empty()) fail("upstream", "expected http://HOST:PORT");
  return hp;
}

namespace {

const std::set<std::string, std::less<>> kLogLevels = {"trace", "debug",    "info", "warn",
                                                       "error", "critical", "off"};

}  // namespace

std::string parse_log_level(std::string_view text) {
  std::string level = lower(text);
  if (level == "warning") level = "warn";
  if (!kLogLevels.contains(level)) {
    fail("log_level", "expected one of trace, debug, info, warn, error, critical, off");
  }
  return level;
}

}  // namespace config_detail

using config_detail::fail;

std::string HostPort::text() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

HostPort parse_host_port(std::string_view text, std::string_view setting) {
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      fail(setting, "expected HOST:PORT or [IPV6]:PORT");
    }
    hp.host = std::string(text.substr(1, close - 1));
    if (hp.host.empty()) fail(setting, "expected an IPv6 address between the brackets");
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) fail(setting, "expected HOST:PORT");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      fail(setting, "IPv6 addresses need brackets: [::1]:PORT");
    }
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() ||
      port > 65535) {
    fail(setting, "expected a port from 0 to 65535");
  }
  hp.port = static_cast<std::uint16_t>(port);
  return hp;
}

}  // namespace idem::gateway
