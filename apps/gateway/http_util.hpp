#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "idem/request.hpp"

namespace idem::gateway {

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), computed at most
/// once a second per thread.
std::string_view http_date() noexcept;

/// The standard reason phrase of a status, or "Unknown".
std::string_view reason_phrase(int status) noexcept;

/// The option tokens of the Connection header(s) of one message, which name further
/// hop-by-hop headers (RFC 9110 section 7.6.1).
class ConnectionTokens {
 public:
  /// Adds the comma-separated tokens of one Connection header value.
  void add(std::string_view value) noexcept;
  bool contains(std::string_view token) const noexcept;
  bool overflowed() const noexcept { return overflow_; }

 private:
  static constexpr std::size_t kMax = 16;
  std::array<std::string_view, kMax> tokens_{};
  std::size_t size_ = 0;
  bool overflow_ = false;
};

/// True for the headers a proxy must not forward: Connection, Keep-Alive,
/// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, and those `tokens` lists.
bool is_hop_by_hop(std::string_view name, const ConnectionTokens& tokens) noexcept;

/// Appends "Name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);
/// Appends "HTTP/1.1 <status> <reason>\r\n".
void append_status_line(std::string& out, int status, std::string_view reason);

/// A request target in absolute-form (`http://host:port/path?query`), split as RFC 9112
/// section 3.2.2 asks of a server: the authority replaces Host, and the rest is the target
/// in origin-form.
struct OriginForm {
  std::string authority;  ///< host[:port]
  std::string target;     ///< /path?query, "/" when the path is empty
};

/// The origin-form of an absolute-form `target` with scheme http or https, or nothing
/// when it is not one (another scheme, no host, userinfo, a fragment, not a URI).
std::optional<OriginForm> origin_form_of(std::string_view target);

/// RFC 3986 percent-decoding, by Boost.URL. '+' stays '+' (scope values, tokens and base64,
/// may hold it). Nothing when an escape is not valid.
std::optional<std::string> percent_decoded(std::string_view s);

/// Looks up the first parameter `name` (compared as written) of a query string.
enum class QueryValue { absent, found, bad_encoding };
QueryValue query_value(std::string_view query, std::string_view name, std::string& value);

/// An application/problem+json response for the gateway's own errors (upstream failures,
/// malformed requests), in the style of the contract's problems:
/// type = `type_base` + `name`.
Response gateway_problem(int status, std::string_view type_base, std::string_view name,
                         std::string_view title, std::string_view detail);

}  // namespace idem::gateway
