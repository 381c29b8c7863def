#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idem {

struct HeaderField {
  std::string_view name;
  std::string_view value;
};

/// ASCII case-insensitive equality, for header names.
bool iequals(std::string_view a, std::string_view b) noexcept;

/// A non-owning view of one HTTP request, as an adapter sees it. Everything it points
/// to must stay alive for the duration of the call it is passed to; the engine copies
/// what it keeps.
struct RequestView {
  std::string_view method;
  std::string_view target;  ///< origin-form: path, optionally "?query"
  std::span<const HeaderField> headers;
  std::string_view body;
  std::string_view peer_address;  ///< textual IP of the TCP peer

  std::string_view path() const noexcept;
  std::string_view query() const noexcept;  ///< without the '?'; empty when absent
  /// First value of the named header (case-insensitive name), if any.
  std::optional<std::string_view> header(std::string_view name) const noexcept;
  std::size_t header_count(std::string_view name) const noexcept;
};

/// An owned HTTP response: what the engine asks an adapter to send (replays, problems)
/// and what an adapter hands the engine to store.
struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

}  // namespace idem
