#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"

namespace idem::detail {

/// When each record is due, as (time, generation, id, slot) items.
///
/// Lifetimes come from a few settings (ttl, lease per route), and every item pushed now
/// with duration d is due at now + d: so one FIFO per duration is already in expiry order,
/// and push and pop are O(1). Durations beyond kMaxFifos go to a min-heap. Items pushed by
/// threads that read the clock a few microseconds apart, or across a wall-clock step back,
/// may be slightly out of order; that only delays reclaiming them, never their expiry,
/// which every lookup checks.
///
/// A record has one live item: when its expiry moves (completion, renewal) or it goes
/// early, the store removes the old item. Removing is O(1): the item at the back of its
/// FIFO (a claim completed before the shard saw another claim) is popped, any other FIFO
/// item becomes a tombstone that is dropped unread when it comes up. A stale item would
/// instead cost a cold hash lookup when it comes up. Heap items cannot be found again;
/// they stay as hints that the store recognises as stale by their generation and time.
class ExpiryQueue {
 public:
  struct Item {
    TimePoint at;
    std::uint64_t generation;  ///< kRemoved for a tombstone
    RecordId id;
    std::uint32_t slot;  ///< where the record's entry is in its shard
  };
  /// An item in a FIFO (deques keep their elements in place as they grow and shrink at
  /// either end), or none for a heap item.
  using Ref = Item*;
  static constexpr std::uint64_t kRemoved = 0;  ///< generations start at 1

  // Never reallocated: a vector that grew would copy the deques (their moves may throw),
  // and with them the items that Refs point to.
  ExpiryQueue() { fifos_.reserve(kMaxFifos); }

  Ref push(Duration lifetime, TimePoint at, std::uint64_t generation, const RecordId& id,
           std::uint32_t slot);
  /// Drops the item `ref` names, if any. `ref` is invalid afterwards.
  void remove(Ref ref);

  bool due(TimePoint now) const noexcept { return size_ > 0 && next_ <= now; }

  /// Removes and returns the earliest item, possibly a tombstone. Only when !empty().
  Item pop();

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

 private:
  static constexpr std::size_t kMaxFifos = 8;
  struct Fifo {
    Duration lifetime;
    std::deque<Item> items;
  };
  // A type, not a function pointer, so the heap algorithms inline the comparison.
  struct Later {
    bool operator()(const Item& a, const Item& b) const noexcept { return a.at > b.at; }
  };

  std::deque<Item>* fifo_for(Duration lifetime);
  void recompute_next() noexcept;

  std::vector<Fifo> fifos_;
  std::vector<Item> heap_;
  TimePoint next_ = TimePoint::max();
  std::size_t size_ = 0;  ///< tombstones included
};

}  // namespace idem::detail
