// Durability "power": folds. A completion of a lease held in memory is logged but not
// written to the tables (core_leases.cpp); the completed record stays held until a fold
// writes it. When a checkpoint comes due the writer folds what is held, a chunk at a time
// between batches, then takes the checkpoint and logs again what completed meanwhile, so
// that every completion logged before the checkpoint is in its commit or in the log after
// it: a recovery skips the log's records up to that commit (recovery.cpp) and replays the
// ones after it, held completions included.
//
// A fold is not logged: the log holds each of its records already, in order with whatever
// came after them.

#include <algorithm>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "stores/lmdb/core.hpp"

namespace idem::lmdb {
namespace {

// Records a fold transaction writes. In record-id order, consecutive chunks touch mostly
// different leaves, so a fold in chunks copies about the pages of one in a single
// transaction, and the writer answers the batches queued meanwhile between chunks (one
// transaction of a second's completions held them up about 100 ms: p99 83 ms; chunks of
// 4096, about 19 ms; of 2048, about 16 ms at the same rate; of 1024, 14 ms and a few
// percent slower). Also well below what LMDB allows one transaction to dirty
// (MDB_TXN_FULL).
constexpr std::size_t kFoldChunk = 2048;

}  // namespace

void Core::start_fold() {
  // Copied out: claims go on reading and adding leases meanwhile. Only this thread
  // changes or drops a completed lease (sweep_leases, resolve_leases), except a claim
  // that finds one expired, which the fold then writes as the expired record it is.
  folding_.clear();
  folded_ = 0;
  {
    std::lock_guard lock(leases_mutex_);
    folding_.reserve(completed_since_fold_);
    for (const auto& [id, lease] : leases_) {
      if (lease.completed) {
        folding_.push_back(
            {id, lease.encoded, lease.record.expires_at, lease.record.fencing_token});
      }
    }
  }
  completed_since_fold_ = 0;
  // Nothing held (what a failed fold left has expired or gone): nothing keeps claims out.
  if (folding_.empty()) fold_failed_.store(false, std::memory_order_relaxed);
  // In key order, each B-tree page is copied and searched once, while it is in the cache.
  std::sort(folding_.begin(), folding_.end(),
            [](const Folded& a, const Folded& b) { return id_bytes(a.id) < id_bytes(b.id); });
}

int Core::fold_next() {
  std::vector<Folded> chunk;
  {
    // Only what is still held as it was copied: a record erased since must not come back.
    std::lock_guard lock(leases_mutex_);
    for (; folded_ < folding_.size() && chunk.size() < kFoldChunk; ++folded_) {
      Folded& f = folding_[folded_];
      auto it = leases_.find(f.id);
      if (it != leases_.end() && it->second.completed &&
          it->second.record.fencing_token == f.token) {
        chunk.push_back(std::move(f));
      }
    }
  }
  const int rc = chunk.empty() ? 0 : fold_chunk(chunk);
  if (rc != 0) {
    folding_.clear();
    fold_failed_.store(true, std::memory_order_relaxed);
  } else if (folded_ == folding_.size()) {
    folding_.clear();
    fold_failed_.store(false, std::memory_order_relaxed);
  }
  return rc;
}

int Core::fold_completions() {
  start_fold();
  while (!folding_.empty()) {
    if (int rc = fold_next()) return rc;
  }
  return 0;
}

int Core::fold_chunk(std::span<const Folded> chunk) {
  MDB_txn* txn = nullptr;
  if (int rc = begin_write(&txn)) return rc;
  const std::uint64_t txnid = mdb_txn_id(txn);
  Tables tables(txn, env_->dbis());
  int rc = tables.load_counters();
  note_room(context(txn, options_.clock->now()));
  for (const Folded& f : chunk) {
    if (rc != 0) break;
    bool taken = false;
    if ((rc = tables.put_new(f.id, *f.encoded, f.expires_at, taken)) != 0 || !taken) continue;
    Found found;  // an expired record, which put_encoded() replaces
    if ((rc = tables.find(f.id, found)) == 0) {
      rc = tables.put_encoded(f.id, *f.encoded, f.expires_at, found);
    }
  }
  if (rc == 0) rc = tables.save_counters();
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  const std::uint64_t records = tables.record_count();
  if ((rc = mdb_txn_commit(txn))) return rc;
  std::vector<RecordId> ids;
  ids.reserve(chunk.size());
  for (const Folded& f : chunk) ids.push_back(f.id);
  commit_to_cache(ids, txnid);
  records_.store(records, std::memory_order_relaxed);
  bytes_.store(tables.bytes(), std::memory_order_relaxed);
  transactions_.fetch_add(1, std::memory_order_relaxed);
  folds_.fetch_add(1, std::memory_order_relaxed);
  // Dropped only now: until the commit, a claim finds the record here.
  std::lock_guard lock(leases_mutex_);
  for (const Folded& f : chunk) {
    auto it = leases_.find(f.id);
    if (it != leases_.end() && it->second.completed && it->second.record.fencing_token == f.token) {
      drop_lease(it);
    }
  }
  return 0;
}

void Core::relog_held(std::uint64_t txnid) {
  redo_batch_.clear();
  {
    std::lock_guard lock(leases_mutex_);
    for (const auto& [id, lease] : leases_) {
      if (!lease.completed) continue;
      redo_batch_.put(RedoTable::records, id_bytes(id), *lease.encoded);
      redo_batch_.put(RedoTable::expiry, expiry_key(lease.record.expires_at, id), {});
    }
  }
  log_commit(txnid);
  sync_wake_.notify_one();
}

}  // namespace idem::lmdb
