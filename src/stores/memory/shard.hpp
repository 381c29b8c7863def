#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"
#include "stores/memory/expiry_queue.hpp"
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
  ExpiryQueue::Ref queued = nullptr;  ///< its item, unless that is in the heap

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
