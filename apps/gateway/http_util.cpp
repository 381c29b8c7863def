#include "http_util.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <charconv>
#include <ctime>

#include "idem/json_text.hpp"

namespace idem::gateway {

std::string_view http_date() noexcept {
  thread_local std::time_t cached_second = 0;
  thread_local char text[64] = {};
  thread_local std::size_t length = 0;
  std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_second = now;
  }
  return {text, length};
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

namespace {

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

void ConnectionTokens::add(std::string_view value) noexcept {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view token = trim(value.substr(0, comma));
    if (!token.empty()) {
      if (size_ < kMax) {
        tokens_[size_++] = token;
      } else {
        overflow_ = true;
      }
    }
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

bool ConnectionTokens::contains(std::string_view token) const noexcept {
  for (std::size_t i = 0; i < size_; ++i) {
    if (iequals(tokens_[i], token)) return true;
  }
  return false;
}

bool is_hop_by_hop(std::string_view name, const ConnectionTokens& tokens) noexcept {
  switch (name.size()) {
    case 2:
      if (iequals(name, "TE")) return true;
      break;
    case 7:
      if (iequals(name, "Trailer") || iequals(name, "Upgrade")) return true;
      break;
    case 10:
      if (iequals(name, "Connection") || iequals(name, "Keep-Alive")) return true;
      break;
    case 16:
      if (iequals(name, "Proxy-Connection")) return true;
      break;
    case 17:
      if (iequals(name, "Transfer-Encoding")) return true;
      break;
    default:
      break;
  }
  return tokens.contains(name);
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ", 2);
  out.append(value);
  out.append("\r\n", 2);
}

void append_status_line(std::string& out, int status, std::string_view reason) {
  char digits[8];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  (void)ec;
  out.append("HTTP/1.1 ", 9);
  out.append(digits, end);
  out.push_back(' ');
  out.append(reason.empty() ? reason_phrase(status) : reason);
  out.append("\r\n", 2);
}

std::optional<OriginForm> origin_form_of(std::string_view target) {
  auto parsed = boost::urls::parse_absolute_uri(target);  // no fragment, by its grammar
  if (!parsed) return std::nullopt;
  const boost::urls::url_view& url = *parsed;
  const auto scheme = url.scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https) {
    return std::nullopt;
  }
  // RFC 9110 section 4.2.4: userinfo in an http(s) URI is an error, never credentials.
  if (!url.has_authority() || url.has_userinfo() || url.encoded_host().empty()) {
    return std::nullopt;
  }
  // After an authority the path is empty or starts with '/' (RFC 3986 section 3.3), which
  // Boost.URL 1.81 does not enforce: "http://h:x://y" would give the target "x://y".
  const auto path = url.encoded_path();
  if (!path.empty() && path.front() != '/') return std::nullopt;
  OriginForm out;
  // An empty port is no port (RFC 3986 section 6.2.3): "h:" is "h".
  out.authority = url.has_port() && url.port().empty() ? std::string(url.encoded_host())
                                                       : std::string(url.encoded_host_and_port());
  out.target = path.empty() ? "/" : std::string(path);
  if (url.has_query()) out.target.append("?").append(url.encoded_query());
  return out;
}

std::optional<std::string> percent_decoded(std::string_view s) {
  auto encoded = boost::urls::make_pct_string_view(s);
  if (!encoded) return std::nullopt;
  boost::urls::encoding_opts options;
  options.space_as_plus = false;
  return encoded->decode(options);
}

QueryValue query_value(std::string_view query, std::string_view name, std::string& value) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      auto decoded =
          percent_decoded(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
      if (!decoded) return QueryValue::bad_encoding;
      value = std::move(*decoded);
      return QueryValue::found;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return QueryValue::absent;
}

Response gateway_problem(int status, std::string_view type_base, std::string_view name,
                         std::string_view title, std::string_view detail) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/problem+json");
  std::string& b = r.body;
  b = "{\"type\":";
  append_json_string(b, std::string(type_base) + std::string(name));
  b += ",\"title\":";
  append_json_string(b, title);
  b += ",\"status\":" + std::to_string(status) + ",\"detail\":";
  append_json_string(b, detail);
  b += "}";
  return r;
}

}  // namespace idem::gateway
