#pragma once

#include <atomic>
#include <cstddef>

namespace idem::detail {

/// What one shard's records use of the store's limits, and what it holds of them unused.
/// Written under the shard's mutex; the used counts are also read without it, by stats().
struct ShardUsage {
  std::atomic<std::size_t> records{0};
  std::atomic<std::size_t> bytes{0};
  std::size_t spare_records = 0;
  std::size_t spare_bytes = 0;
};

/// The store-wide limits on records and bytes, which shards take a chunk at a time and
/// keep what they do not use yet as spare. So claims and completions touch no cache line
/// that other cores write: on x86 every atomic add also waits for the thread's pending
/// stores, and with a record's slot cold that made store-wide counters a fifth of a claim
/// + complete. A chunk is at most 1/64 of a shard's even share, and none for small limits,
/// which thus stay exact. Before a claim is refused, every shard hands its spare back
/// (return_spare), so a claim fails only when the records in use fill the limit, up to the
/// chunks other claims take in the same moment.
class Quota {
 public:
  Quota(std::size_t max_records, std::size_t max_bytes, std::size_t shards) noexcept;

  /// Room for `records` records and `bytes` bytes more in u: false, taking nothing, if
  /// that passes a limit (unless `force`: always true, the limit may be passed).
  bool take(ShardUsage& u, std::size_t records, std::size_t bytes, bool force) noexcept;
  void give_back(ShardUsage& u, std::size_t records, std::size_t bytes) noexcept;
  void return_spare(ShardUsage& u) noexcept;

  std::size_t max_records() const noexcept { return max_records_; }
  std::size_t max_bytes() const noexcept { return max_bytes_; }

 private:
  const std::size_t max_records_;
  const std::size_t max_bytes_;
  const std::size_t chunk_records_;
  const std::size_t chunk_bytes_;
  // What shards use or hold spare, together; on a line of their own, away from the shards.
  alignas(64) std::atomic<std::size_t> reserved_records_{0};
  std::atomic<std::size_t> reserved_bytes_{0};
};

}  // namespace idem::detail
