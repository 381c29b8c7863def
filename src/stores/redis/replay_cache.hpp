#pragma once

// Completed records this store has read, so that a retry of a completed request is answered
// without a round trip to Redis. Only completed records are kept: they never change until
// they expire (checked here against expires_at) or are removed (a flush, by this instance or
// another). Removals reach the cache as invalidations from Redis's client-side caching (see
// tracking.hpp), which Redis sends for every key a tracked read fetched.
//
// A read for the cache is announced first (begin_fill) and its slot stays pending until
// the reply arrives: an invalidation that overtakes the reply (it comes on another
// connection) drops the pending slot, so the reply is not kept. Losing the invalidation
// stream drops everything and stops filling (set_active), since a removal could go unseen.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "idem/clock.hpp"
#include "idem/record.hpp"

namespace idem::redis {

class ReplayCache {
 public:
  /// At most `capacity` records and `max_bytes` of their responses; a record whose
  /// response takes more than an eighth of max_bytes is not kept.
  ReplayCache(std::size_t capacity, std::size_t max_bytes)
      : capacity_(capacity), max_bytes_(max_bytes) {}

  /// Any thread: the completed record under `key`, unexpired at `now`, if kept.
  std::optional<Record> find(const std::string& key, TimePoint now);

  /// Announces a read of `key` for the cache: its epoch, or none when the cache is inactive
  /// or already holds or awaits the key.
  std::optional<std::uint64_t> begin_fill(const std::string& key);
  /// The reply to that read: kept if it is a completed record and nothing invalidated the
  /// key (nor the whole cache) since begin_fill.
  void finish_fill(const std::string& key, std::uint64_t epoch, std::optional<Record> record);

  /// Any thread.
  void invalidate(std::string_view key);
  /// Drops everything; while inactive nothing is filled or found.
  void set_active(bool active);
  /// Drops everything, active or not.
  void clear();

  std::size_t size();
  std::size_t bytes();

 private:
  struct Slot {
    std::optional<Record> record;  ///< none while pending
    std::uint64_t epoch = 0;
    std::size_t bytes = 0;
  };
  using Slots = std::unordered_map<std::string, Slot>;

  void erase(Slots::iterator it);
  void drop_all();
  void evict_oldest();

  const std::size_t capacity_;
  const std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::mutex mutex_;
  bool active_ = false;
  std::uint64_t epoch_ = 0;  ///< moves on at every set_active: older fills are dropped
  Slots slots_;
  std::deque<std::string> order_;  ///< oldest first, for eviction; may name removed keys
};

}  // namespace idem::redis
