#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "idem/digest.hpp"
#include "idem/record.hpp"

namespace idem::lmdb {

/// Decoded completed records, so that a replay costs a hash lookup and a copy, like the
/// memory store's, instead of a B-tree walk and a decode. Never the authority: the
/// store uses it only while it knows every commit to the environment (see Core), and
/// bounded by bytes (an arbitrary entry of the shard goes when one is over its share).
class RecordCache {
 public:
  /// `max_bytes` 0 disables the cache.
  explicit RecordCache(std::size_t max_bytes) : shard_bytes_(max_bytes / kShards) {}

  bool enabled() const noexcept { return shard_bytes_ > 0; }

  /// Copies the record into `out`; false when it is not cached.
  bool find(const RecordId& id, std::optional<Record>& out) {
    Shard& s = shard(id);
    std::lock_guard lock(s.mutex);
    auto it = s.records.find(id);
    if (it == s.records.end()) return false;
    out = it->second.record;
    return true;
  }

  /// Caches `record`, read in the snapshot `snapshot`, unless `latest()` (the newest
  /// commit's id, checked under the shard's lock) has moved on: a writer that committed a
  /// change to the record meanwhile may already have invalidated it, and an entry added
  /// after that would never go.
  template <class Latest>
  void insert_if_latest(const RecordId& id, const Record& record, std::size_t bytes,
                        std::uint64_t snapshot, Latest&& latest) {
    if (bytes > shard_bytes_) return;
    Shard& s = shard(id);
    std::lock_guard lock(s.mutex);
    if (latest() != snapshot) return;
    auto [it, added] = s.records.try_emplace(id, Entry{record, bytes});
    if (!added) return;
    s.bytes += bytes;
    while (s.bytes > shard_bytes_ && !s.records.empty()) {
      auto victim = s.records.begin() == it ? std::next(s.records.begin()) : s.records.begin();
      if (victim == s.records.end()) break;
      s.bytes -= victim->second.bytes;
      s.records.erase(victim);
    }
  }

  void erase(const RecordId& id) {
    Shard& s = shard(id);
    std::lock_guard lock(s.mutex);
    auto it = s.records.find(id);
    if (it == s.records.end()) return;
    s.bytes -= it->second.bytes;
    s.records.erase(it);
  }

  void clear() {
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mutex);
      s.records.clear();
      s.bytes = 0;
    }
  }

 private:
  static constexpr std::size_t kShards = 16;
  struct Entry {
    Record record;
    std::size_t bytes;
  };
  struct alignas(64) Shard {
    std::mutex mutex;
    std::unordered_map<RecordId, Entry, DigestHash> records;
    std::size_t bytes = 0;
  };
  Shard& shard(const RecordId& id) noexcept {
    const std::uint64_t h = DigestHash{}(id)*0x9E3779B97F4A7C15ull;
    return shards_[(h >> 40) % kShards];
  }

  const std::size_t shard_bytes_;
  std::array<Shard, kShards> shards_;
};

}  // namespace idem::lmdb
