#pragma once

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"
#include "stores/memory/packed_response.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem::detail {

/// One stored record and its bookkeeping: a Record's fields, without the room a Record
/// keeps for an unpacked response. Entries live in the hash table's slots, and the sweep
/// looks them up long after they were written: the smaller the slot and the closer to the
/// key what the sweep reads, the fewer cache lines each expiry misses.
struct Entry {
  std::uint64_t generation = 0;  ///< which incarnation of this id; expiry items name it
  TimePoint queued_at{};         ///< time of the entry's one live item in the ExpiryQueue
  TimePoint expires_at{};
  std::size_t bytes = 0;  ///< what this record adds to StoreStats::bytes
  PackedResponse response;
  TimePoint lease_expires_at{};
  std::uint64_t fencing_token = 0;
  TimePoint created_at{};
  std::string lease_owner;
  Digest fingerprint;
  RecordState state = RecordState::in_flight;

  bool lease_expired(TimePoint now) const noexcept {
    return state == RecordState::in_flight && now >= lease_expires_at;
  }

  /// Into a default-constructed record, so that nothing is built twice nor moved.
  void copy_to(Record& r) const {
    r.state = state;
    r.fingerprint = fingerprint;
    r.fencing_token = fencing_token;
    r.lease_owner = lease_owner;
    r.created_at = created_at;
    r.lease_expires_at = lease_expires_at;
    r.expires_at = expires_at;
    if (response) response.unpack_into(r.response.emplace());
  }
};

/// When each record is due, as (time, generation, id) items. Items are hints: an item is
/// live only when its generation and time match the entry's queued_at; when a record's
/// expiry moves, a new item is pushed and the old one is dropped when it comes up.
///
/// Lifetimes come from a few settings (ttl, lease per route), and every item pushed now
/// with duration d is due at now + d: so one FIFO per duration is already in expiry order,
/// and push and pop are O(1). Durations beyond kMaxFifos go to a min-heap. Items pushed by
/// threads that read the clock a few microseconds apart, or across a wall-clock step back,
/// may be slightly out of order; that only delays reclaiming them, never their expiry,
/// which every lookup checks.
class ExpiryQueue {
 public:
  struct Item {
    TimePoint at;
    std::uint64_t generation;
    RecordId id;
  };

  void push(Duration lifetime, TimePoint at, std::uint64_t generation, const RecordId& id) {
    std::deque<Item>* fifo = fifo_for(lifetime);
    if (fifo != nullptr) {
      fifo->push_back(Item{at, generation, id});
    } else {
      heap_.push_back(Item{at, generation, id});
      std::push_heap(heap_.begin(), heap_.end(), Later{});
    }
    next_ = std::min(next_, at);
    ++size_;
  }

  bool due(TimePoint now) const noexcept { return size_ > 0 && next_ <= now; }

  /// Removes and returns the earliest item. Only when !empty().
  Item pop() {
    std::deque<Item>* from = nullptr;
    TimePoint best = TimePoint::max();
    for (Fifo& f : fifos_) {
      if (!f.items.empty() && f.items.front().at <= best) {
        best = f.items.front().at;
        from = &f.items;
      }
    }
    Item item;
    if (!heap_.empty() && (from == nullptr || heap_.front().at < best)) {
      std::pop_heap(heap_.begin(), heap_.end(), Later{});
      item = heap_.back();
      heap_.pop_back();
    } else {
      item = from->front();
      from->pop_front();
    }
    --size_;
    recompute_next();
    return item;
  }

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

  std::deque<Item>* fifo_for(Duration lifetime) {
    Fifo* idle = nullptr;
    for (Fifo& f : fifos_) {
      if (f.lifetime == lifetime) return &f.items;
      if (idle == nullptr && f.items.empty()) idle = &f;
    }
    if (fifos_.size() < kMaxFifos) return &fifos_.emplace_back(Fifo{lifetime, {}}).items;
    if (idle != nullptr) {
      idle->lifetime = lifetime;  // an unused duration gives its FIFO to a new one
      return &idle->items;
    }
    return nullptr;
  }

  void recompute_next() {
    next_ = heap_.empty() ? TimePoint::max() : heap_.front().at;
    for (const Fifo& f : fifos_) {
      if (!f.items.empty()) next_ = std::min(next_, f.items.front().at);
    }
  }

  std::vector<Fifo> fifos_;
  std::vector<Item> heap_;
  TimePoint next_ = TimePoint::max();
  std::size_t size_ = 0;
};

using Watchers = std::vector<std::shared_ptr<WatchState>>;

/// A slice of the store under one mutex. Aligned so that two shards never share a cache
/// line: threads working on different shards do not slow each other down.
struct alignas(64) Shard {
  std::mutex mutex;
  /// Open addressing, entries in place: a claim allocates no node, and a lookup touches one
  /// group of slots instead of following a chain of nodes whose keys must be hashed again.
  boost::unordered_flat_map<RecordId, Entry, DigestHash> records;
  ExpiryQueue expiry;
  /// Kept apart from records: a watcher may wait for an id that has no record yet or any
  /// more, and a record's removal must not drop its watchers before they are told.
  std::unordered_map<RecordId, Watchers, DigestHash> watchers;
  std::uint64_t next_generation = 1;
};

}  // namespace idem::detail
