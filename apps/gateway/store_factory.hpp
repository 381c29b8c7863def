#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "config.hpp"
#include "idem/store.hpp"

namespace idem::gateway {

/// A store whose client runs on one worker's event loop.
struct LoopStore {
  std::shared_ptr<Store> store;
  /// Stops it once what it was asked is answered, so that the loop can run out of work.
  /// Called on the loop's thread, after which operations fail at once.
  std::function<void()> close;
  /// Set when the store keeps records in memory in front of a shared store (Redis's replay
  /// cache): drops one that was removed through another store of this process. Any thread.
  std::function<void(const RecordId&)> forget_cached;
};

/// A store built from a `--store` spec.
struct StoreHandle {
  std::shared_ptr<Store> store;
  /// Set when each worker is better served by a store of its own on its own loop (Redis:
  /// an operation then costs no hop to another thread and back). `store` still serves
  /// start-up, the admin API and readiness.
  std::function<LoopStore(boost::asio::io_context& loop)> for_loop;
  /// The record-naming secret kept with the store (LMDB: a file in its directory; Redis:
  /// a key), so that every gateway sharing the store names records alike. Null for the
  /// memory store, whose records die with the process: a fresh secret loses nothing.
  /// Throws std::runtime_error (start-up only).
  std::function<std::string()> load_secret;
  /// Redis with a replay cache: how many workers' caches answer retries now (metrics).
  std::shared_ptr<std::atomic<int>> replay_caches_active;
};

/// The store used without --store: the embedded durable store in ./idem-data when this
/// build has it, else memory (contract section 2).
std::string default_store_spec();

/// Builds the store named by `spec`: `memory`, `lmdb:PATH`, `redis://HOST:PORT[/DB]`.
/// A spec this build cannot serve or cannot parse throws ConfigError naming `origin` (the
/// flag or file setting the spec came from); a store that cannot be opened (a locked or
/// foreign LMDB directory) throws std::runtime_error. Start-up only.
StoreHandle make_store(std::string_view spec, std::string_view origin,
                       const StoreSettings& settings);

}  // namespace idem::gateway
