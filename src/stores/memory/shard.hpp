#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem::detail {

/// One stored record and its bookkeeping.
struct Entry {
  Record record;
  std::uint64_t generation = 0;  ///< which incarnation of this id; expiry items name it
  TimePoint queued_at{};         ///< time of the entry's one live item in the ExpiryQueue
  std::size_t bytes = 0;         ///< what this record adds to StoreStats::bytes
};

/// When each record is due, as a min-heap of (time, generation, id) items. Items are hints:
/// an item is live only when its generation and time match the entry's; a record whose
/// expiry moved later is re-queued when its old item comes up, so extending a lifetime
/// (completion, renewal) costs nothing, and each record has exactly one live item.
class ExpiryQueue {
 public:
  struct Item {
    TimePoint at;
    std::uint64_t generation;
    RecordId id;
  };

  void push(TimePoint at, std::uint64_t generation, const RecordId& id) {
    heap_.push_back(Item{at, generation, id});
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  bool due(TimePoint now) const noexcept { return !heap_.empty() && heap_.front().at <= now; }
  Item pop() {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    Item item = heap_.back();
    heap_.pop_back();
    return item;
  }
  std::size_t size() const noexcept { return heap_.size(); }

 private:
  static bool later(const Item& a, const Item& b) noexcept { return a.at > b.at; }
  std::vector<Item> heap_;
};

using Watchers = std::vector<std::shared_ptr<WatchState>>;

/// A slice of the store under one mutex. Aligned so that two shards never share a cache
/// line: threads working on different shards do not slow each other down.
struct alignas(64) Shard {
  std::mutex mutex;
  std::unordered_map<RecordId, Entry, DigestHash> records;
  ExpiryQueue expiry;
  /// Kept apart from records: a watcher may wait for an id that has no record yet or any
  /// more, and a record's removal must not drop its watchers before they are told.
  std::unordered_map<RecordId, Watchers, DigestHash> watchers;
  std::uint64_t next_generation = 1;
};

}  // namespace idem::detail
