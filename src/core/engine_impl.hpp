#pragma once

#include <memory>
#include <string>
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
  std::vector<std::unique_ptr<RoutePlan>> plans;  ///< index = PolicySet::Match::index

  void publish(EventKind kind, const RecordId& id, std::string_view route,
               std::string detail) const;
  /// A store_error event carrying the store's error.
  void publish_store_error(const RecordId& id, std::string_view route, const Error& error) const;
};

/// A keyed request after key, scope and fingerprint are known: everything needed to claim
/// its record and to turn the store's answer into a decision.
struct PendingClaim {
  const RoutePlan* plan;
  std::string route;  ///< the route name used in events
  ClaimRequest claim;
};

}  // namespace idem
