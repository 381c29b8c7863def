// Parsing of redis:// URLs (the IANA "redis" scheme): redis://[[user]:password@]host[:port][/db].
// Start-up code, so errors are values with messages that name the bad part; the password is
// never echoed.

#include <charconv>
#include <string>
#include <string_view>

#include "idem/redis_store.hpp"

namespace idem {
namespace {

Error bad(std::string what) {
  return Error{Errc::invalid_argument, "redis url: " + std::move(what)};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// User names and passwords may hold reserved characters only percent-encoded.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

template <class Int>
bool parse_int(std::string_view s, Int& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

}  // namespace

Result<RedisStoreOptions> parse_redis_url(std::string_view url, RedisStoreOptions base) {
  constexpr std::string_view kScheme = "redis://";
  constexpr std::string_view kTls = "rediss://";
  if (url.starts_with(kTls)) {
    return bad(
        "rediss:// (TLS) is not supported: the installed hiredis has no TLS; reach Redis over "
        "a TLS tunnel (stunnel, a service mesh) with redis://");
  }
  if (!url.starts_with(kScheme)) return bad("must start with redis://");
  std::string_view rest = url.substr(kScheme.size());

  // Query parameters and fragments are not part of idem's form; refuse rather than ignore.
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("query parameters are not supported; use the store settings");
  }
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      // redis://secret@host: a lone userinfo is the password, as redis-cli reads it.
      if (!percent_decode(userinfo, base.password)) return bad("bad percent-encoding");
      base.username.clear();
    } else {
      if (!percent_decode(userinfo.substr(0, colon), base.username) ||
          !percent_decode(userinfo.substr(colon + 1), base.password)) {
        return bad("bad percent-encoding");
      }
    }
  }

  std::string_view host = rest;
  std::string_view port;
  if (rest.starts_with('[')) {  // [IPv6]:port
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' in host");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("unexpected text after ']'");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (port.empty()) return bad("empty port");
  }
  if (host.empty()) return bad("missing host");
  base.host = std::string(host);
  base.port = 6379;
  if (!port.empty()) {
    std::uint16_t p = 0;
    if (!parse_int(port, p) || p == 0) return bad("port must be 1-65535");
    base.port = p;
  }
  base.db = 0;
  if (!path.empty()) {
    int db = 0;
    if (!parse_int(path, db) || db < 0) return bad("database must be a number >= 0");
    base.db = db;
  }
  return base;
}

}  // namespace idem
