// The sweeper, on the writer thread between batches: removes expired records oldest first
// from the expiry index, at most sweep_batch a transaction, so it never scans the records
// and never holds up requests for long.

#include <algorithm>
#include <string>
#include <vector>

#include "stores/lmdb/core.hpp"

namespace idem::lmdb {

bool Core::sweep(TimePoint now) {
  MDB_txn* txn = nullptr;
  if (begin_write(&txn) != 0) return false;
  const std::int64_t now_ms = to_ms(now);
  const std::size_t batch = std::max<std::size_t>(options_.sweep_batch, 1);
  // The due index keys first, then the removals: deleting under an open cursor would
  // need LMDB's cursor fix-ups to be right about positions.
  std::vector<std::string> due;
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, env_->dbis().expiry, &cursor);
  if (rc == 0) {
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0 && due.size() <= batch;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
      std::int64_t ms;
      RecordId id;
      // A malformed key cannot be ours: drop it like a due one.
      if (parse_expiry_key(as_view(key), ms, id) && ms > now_ms) break;
      due.emplace_back(as_view(key));
    }
    mdb_cursor_close(cursor);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
  }
  const bool more = due.size() > batch;
  if (more) due.pop_back();
  const std::uint64_t txnid = mdb_txn_id(txn);
  std::vector<RecordId> changed;

  if (redo_) redo_batch_.clear();
  Tables tables(txn, env_->dbis(), redo_ ? &redo_batch_ : nullptr);
  if (rc == 0) rc = tables.load_counters();
  std::uint64_t removed = 0;
  for (const std::string& key : due) {
    if (rc != 0) break;
    std::int64_t ms = 0;
    RecordId id;
    Found found;
    if (parse_expiry_key(key, ms, id) && (rc = tables.find(id, found)) == 0 && found.present() &&
        found.record->has_value() && to_ms((*found.record)->expires_at) == ms) {
      rc = tables.remove(id, found);  // the record and this index entry
      changed.push_back(id);
      ++removed;
      continue;
    }
    if (rc != 0) break;
    // A stale entry (the record moved on or is gone) or one for bytes that no longer
    // decode: only the index entry goes, never data the sweeper cannot read.
    rc = tables.remove_index_entry(key);
  }
  if (rc == 0) rc = tables.save_counters();
  if (rc == MDB_MAP_FULL) room_wanted_ = true;
  if (rc != 0 || due.empty()) {
    mdb_txn_abort(txn);
    return false;  // on failure (a full map) the next interval tries again
  }
  const std::uint64_t records = tables.record_count();
  if (mdb_txn_commit(txn) != 0) return false;
  commit_to_cache(changed, txnid);
  if (redo_) {
    log_commit(txnid);
    sync_wake_.notify_one();
  }
  mark_unsynced();
  records_.store(records, std::memory_order_relaxed);
  bytes_.store(tables.bytes(), std::memory_order_relaxed);
  if (removed > 0) {
    sweeps_.fetch_add(1, std::memory_order_relaxed);
    swept_.fetch_add(removed, std::memory_order_relaxed);
  }
  return more;
}

}  // namespace idem::lmdb
