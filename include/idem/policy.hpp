#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/clock.hpp"
#include "idem/fingerprint.hpp"
#include "idem/key.hpp"
#include "idem/scope.hpp"
#include "idem/status_set.hpp"

namespace idem {

enum class Concurrency { reject, wait };
enum class OnDuplicate { replay, reject };
enum class OnExpiredLease { retry, fail };

/// Every per-route setting of the contract, with its default. Plain data: the engine
/// compiles it once at start-up.
struct Policy {
  bool enabled = true;
  std::vector<std::string> methods{"POST", "PATCH"};
  std::string header = "Idempotency-Key";
  std::string replay_header = "Idempotent-Replayed";
  bool require_key = false;
  KeyFormat key_format;
  ScopeRule scope;
  std::vector<std::string> identity_headers{"X-Api-Key"};
  Duration ttl = std::chrono::seconds(86400);
  Duration lease = std::chrono::seconds(30);
  Concurrency concurrency = Concurrency::reject;
  Duration wait_timeout = std::chrono::seconds(10);
  OnDuplicate on_duplicate = OnDuplicate::replay;
  OnExpiredLease on_expired_lease = OnExpiredLease::retry;
  std::size_t max_request_bytes = 10u << 20;
  std::size_t max_response_bytes = 4u << 20;
  StatusSet store_status;
  std::vector<std::string> replay_exclude_headers{"Set-Cookie"};
  FingerprintOptions fingerprint;
  bool fail_open = false;
  std::string problem_type_base = "urn:idem:problem:";

  // Programmatic hooks for embedders (no config-file form). Each is called on request
  // threads, so it must be thread-safe, must not block and must not throw.

  /// Checks a key after `key_format`; false answers `invalid-key`. For key rules a regular
  /// expression cannot say (a checksum, a registry of issued keys).
  std::function<bool(std::string_view key)> key_validator;
  /// Replaces `scope`: the returned value names the scope (a tenant, a user id). The same
  /// value names it for Engine::record_id, has and flush. Never shares records with a
  /// built-in scope kind.
  std::function<std::string(const RequestView& request)> scope_resolver;
  /// Replaces the built-in fingerprint (`fingerprint` settings are then unused).
  std::shared_ptr<const FingerprintStrategy> fingerprint_strategy;

  bool covers_method(std::string_view method) const noexcept;
};

/// Matches a request path against a route pattern: literal segments, `*` for one segment,
/// `{name}` for one segment, and a trailing `**` for any rest (including nothing).
class PathPattern {
 public:
  PathPattern() = default;
  /// Throws std::invalid_argument for a pattern that does not start with '/' (start-up).
  explicit PathPattern(std::string pattern);
  bool matches(std::string_view path) const noexcept;
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
  std::vector<std::string> segments_;
  bool any_rest_ = false;
};

/// A `[[route]]` rule: which requests it matches and the policy they get.
struct Route {
  std::vector<std::string> methods;  ///< empty matches every method
  PathPattern path;
  Policy policy;

  bool matches(std::string_view method, std::string_view path) const noexcept;
};

/// The global policy and the route rules; the first matching route wins.
struct PolicySet {
  Policy defaults;
  std::vector<Route> routes;
  TrustedProxies trusted_proxies;

  /// The policy for a request and the name of its route (the pattern, or empty for the
  /// defaults).
  struct Match {
    const Policy* policy;
    std::string_view route;
    std::size_t index;  ///< routes.size() for the defaults
  };
  Match match(std::string_view method, std::string_view path) const noexcept;
};

}  // namespace idem
