#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "config.hpp"
#include "idem/store.hpp"

namespace idem::gateway {

/// A store built from a `--store` spec.
struct StoreHandle {
  std::shared_ptr<Store> store;
  /// The record-naming secret kept with the store (LMDB: a file in its directory; Redis:
  /// a key), so that every gateway sharing the store names records alike. Null for the
  /// memory store, whose records die with the process: a fresh secret loses nothing.
  /// Throws std::runtime_error (start-up only).
  std::function<std::string()> load_secret;
};

/// The store used without --store: the embedded durable store in ./idem-data when this
/// build has it, else memory (contract section 2).
std::string default_store_spec();

/// Builds the store named by `spec`: `memory`, `lmdb:PATH`, `redis://HOST:PORT[/DB]`.
/// A spec this build cannot serve or cannot parse throws ConfigError naming `origin` (the
/// flag or file setting the spec came from); a store that cannot be opened (a locked or
/// foreign LMDB directory) throws std::runtime_error. Start-up only.
StoreHandle make_store(std::string_view spec, std::string_view origin, const StoreLimits& limits);

}  // namespace idem::gateway
