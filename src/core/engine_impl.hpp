#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "idem/engine.hpp"
#include "idem/record_name.hpp"

namespace idem {

/// A policy compiled for the hot path: its fingerprinter is built once.
struct RoutePlan {
  const Policy* policy;
  Fingerprinter fingerprinter;
  std::string route;  ///< the route's pattern; empty for the defaults
};

struct Engine::Impl {
  explicit Impl(EngineOptions o);

  EngineOptions options;
  RecordNamer namer;
  /// Lease owners name one attempt each (the instance id, a slash, 16 hex digits), so that
  /// a claim that timed out can be told from any other attempt of the same instance.
  std::uint64_t attempt_base;
  std::atomic<std::uint64_t> attempts{0};
  std::string attempt_owner();
  std::vector<std::unique_ptr<RoutePlan>> plans;  ///< index = PolicySet::Match::index

  void publish(EventKind kind, const RecordId& id, std::string_view route,
               std::string detail) const;
  /// A store_error event carrying the store's error.
  void publish_store_error(const RecordId& id, std::string_view route, const Error& error) const;

  // Completions and releases written again in the background (engine_settle.cpp).
  std::mutex settle_mutex;
  std::unordered_map<std::uint64_t, std::unique_ptr<Timer>> settle_timers;
  std::uint64_t next_settle = 0;
  bool settle_stopped = false;
  std::atomic<std::size_t> settling{0};
};

/// A completion or release that the store failed for a reason that may pass: what it
/// takes to write it again.
struct Engine::Settlement {
  RecordId id{};
  std::uint64_t token = 0;
  std::optional<StoredResponse> stored{};  ///< a completion's response; none for a release
  Duration ttl{};
  std::string route{};
  TimePoint give_up_at{};  ///< the lease has run out by then: the record is no longer ours
  Duration delay{};
  int attempts = 1;
  /// Set for a claim that timed out: its lease owner. Its record, if the claim was carried
  /// out after all, is released.
  std::string claim_owner{};

  std::string_view what() const noexcept {
    if (!claim_owner.empty()) return "release of a claim that timed out";
    return stored ? "completion" : "release";
  }
};

/// A keyed request after key, scope and fingerprint are known: everything needed to claim
/// its record and to turn the store's answer into a decision.
struct PendingClaim {
  const RoutePlan* plan;
  std::string route;  ///< the route name used in events
  ClaimRequest claim;
};

}  // namespace idem
