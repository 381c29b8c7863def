#pragma once

#include <cstddef>
#include <memory>

#include "idem/clock.hpp"
#include "idem/store.hpp"

namespace idem {

struct MemoryStoreOptions {
  std::size_t max_records = 1'000'000;
  std::size_t max_bytes = std::size_t{1} << 30;
  std::size_t shards = 64;  ///< rounded up to a power of two
  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>();
};

/// The in-memory store: sharded, O(1) claim and complete, expiry without full scans.
/// When full, new claims fail with Errc::store_full; in-flight records are never evicted.
/// Callbacks run inline, before the call returns.
std::shared_ptr<Store> make_memory_store(MemoryStoreOptions options = {});

}  // namespace idem
