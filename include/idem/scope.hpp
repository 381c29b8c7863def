#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "idem/request.hpp"

namespace idem {

/// `scope`: who a key belongs to. Two scopes never share records.
struct ScopeRule {
  enum class Kind { identity, identity_route, ip, global, header };
  Kind kind = Kind::identity;
  std::string header_name;  ///< for Kind::header

  /// Parses `identity`, `identity+route`, `ip`, `global` or `header:NAME`; throws
  /// std::invalid_argument otherwise (start-up only).
  static ScopeRule parse(std::string_view setting);
  std::string to_string() const;
};

/// A set of trusted proxy networks (CIDR or single addresses, IPv4 and IPv6).
class TrustedProxies {
 public:
  TrustedProxies() = default;
  /// Throws std::invalid_argument naming the bad entry (start-up only).
  explicit TrustedProxies(const std::vector<std::string>& cidrs);
  bool contains(std::string_view address) const noexcept;
  bool empty() const noexcept { return nets_.empty(); }

 private:
  struct Net {
    unsigned char bytes[16];
    int prefix;
    bool v6;
  };
  std::vector<Net> nets_;
};

/// The identity of a request: the present values of `Authorization` and then of each
/// `identity_headers` entry, joined by "\n" (header values never hold a line feed). A
/// request with none has the empty (anonymous) identity. The admin API's `?scope=` names
/// the same string.
std::string identity_of(const RequestView& request,
                        const std::vector<std::string>& identity_headers);

/// The client address for `ip` scope: the TCP peer, or when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not one.
std::string client_address(const RequestView& request, const TrustedProxies& trusted);

/// The scope string that, with the key, names a record. Distinct kinds never collide.
/// `route` is the matched route's name (its pattern), used by identity+route.
std::string scope_string(const ScopeRule& rule, const RequestView& request,
                         const std::vector<std::string>& identity_headers,
                         const TrustedProxies& trusted, std::string_view route);

/// The same scope string built from an already known scope value (the admin API's
/// `?scope=`): identity for identity scopes, the address for ip, the header value for
/// header scopes; ignored for global.
std::string scope_string_from_value(const ScopeRule& rule, std::string_view value,
                                    std::string_view route);

}  // namespace idem
