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
#include "stores/memory/quota.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem::detail {

/// One stored record and its bookkeeping: a Record's fields, without the room a Record
/// keeps for an unpacked response.
struct Entry {
  std::uint64_t generation = 0;  ///< which record holds the entry; expiry items name it
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
  /// Where each record's entry is. Open addressing with small slots: a lookup touches one
  /// group and one line, and allocates no node.
  boost::unordered_flat_map<RecordId, std::uint32_t, DigestHash> slots;
  /// Entries in a pool, reused last freed first. Under load every operation first sweeps a
  /// due record, so a new record takes the entry the sweep has just brought into the cache,
  /// and the expiry item names its entry, so the sweep reads it without a lookup.
  std::vector<Entry> entries;
  std::vector<std::uint32_t> free_slots;
  ExpiryQueue expiry;
  /// Kept apart from records: a watcher may wait for an id that has no record yet or any
  /// more, and a record's removal must not drop its watchers before they are told.
  std::unordered_map<RecordId, Watchers, DigestHash> watchers;
  std::uint64_t next_generation = 1;
  std::uint64_t tokens_issued = 0;
  ShardUsage usage;
};

}  // namespace idem::detail
