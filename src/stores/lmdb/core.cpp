#include "stores/lmdb/core.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

namespace idem::lmdb {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Read transactions kept for reuse; a few more than the threads that usually read.
constexpr std::size_t kReadSlots = 64;
// New records are refused once live pages pass 7/8 of the map: the last eighth is for
// what must not fail for want of room (completions of records already claimed, renewals,
// removals, and the copy-on-write pages every transaction needs to free anything).
constexpr std::size_t kClaimLimitNum = 7;
constexpr std::size_t kClaimLimitDen = 8;

std::size_t used_pages(MDB_txn* txn, const Dbis& dbis) {
  std::size_t pages = 2;  // the two meta pages
  // 0 and 1 are LMDB's free-page and main databases: their trees take room too.
  for (MDB_dbi dbi : {MDB_dbi{0}, MDB_dbi{1}, dbis.records, dbis.expiry, dbis.meta}) {
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st) == 0) {
      pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
  }
  return pages;
}

}  // namespace

Core::Core(LmdbStoreOptions options, std::unique_ptr<Env> env)
    : options_(std::move(options)),
      env_(std::move(env)),
      reads_(env_->get(), kReadSlots),
      cache_(options_.cache_bytes) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(env_->get(), &info);
  mdb_env_stat(env_->get(), &st);
  map_bytes_ = info.me_mapsize;
  map_pages_ = info.me_mapsize / st.ms_psize;

  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_->get(), nullptr, MDB_RDONLY, &txn)) {
    fail(env_->dir(), "cannot begin a transaction: " + mdb_error(rc));
  }
  Tables tables(txn, env_->dbis());
  const int rc = tables.load_counters();
  records_ = tables.record_count();
  bytes_ = tables.bytes();
  tokens_ = tables.last_token();
  mdb_txn_abort(txn);
  if (rc != 0) fail(env_->dir(), "cannot read the meta database: " + mdb_error(rc));
  known_txnid_ = latest_txnid();
  if (options_.durability == Durability::power) start_redo_log();
}

Core::~Core() {
  if (pinned_) mdb_txn_abort(pinned_);  // a store that failed to start its threads
}

void Core::submit(Op op) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(op));
  }
  wake_.notify_one();
}

void Core::request_stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
}

LmdbStoreCounters Core::counters() const {
  constexpr auto r = std::memory_order_relaxed;
  std::uint64_t read_answers = 0;
  for (const Stripe& stripe : read_answers_) read_answers += stripe.n.load(r);
  LmdbStoreCounters c;
  c.transactions = transactions_.load(r);
  c.operations = operations_.load(r);
  c.syncs = syncs_.load(r);
  c.checkpoints = checkpoints_.load(r);
  c.checkpoint_failures = checkpoint_failures_.load(r);
  c.store_full = store_full_.load(r);
  c.read_answers = read_answers;
  c.sweeps = sweeps_.load(r);
  c.swept = swept_.load(r);
  c.leases_held = leases_made_.load(r);
  c.leases_written = leases_written_.load(r);
  c.completions_held = completions_held_.load(r);
  c.folds = folds_.load(r);
  return c;
}

Error Core::error_of(int rc) const {
  if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
    return Error{Errc::store_full, "lmdb store at " + env_->dir().string() + " is full (" +
                                       mdb_error(rc) + ", map_size " + std::to_string(map_bytes_) +
                                       " bytes); the operation was not stored"};
  }
  return Error{Errc::store_unavailable,
               "lmdb store at " + env_->dir().string() + ": " + mdb_error(rc)};
}

ApplyContext Core::context(MDB_txn* txn, TimePoint now) {
  ApplyContext ctx;
  ctx.now = now;
  // Power: what the records held in memory will take once folded (core_folds.cpp), at
  // the half-full pages that random inserts leave.
  const std::size_t page = map_bytes_ / std::max<std::size_t>(map_pages_, 1);
  const std::size_t held = leases_bytes_.load(std::memory_order_relaxed) * 2 / page;
  const std::size_t used = used_pages(txn, env_->dbis()) + held;
  used_pages_ = used;
  if (used * kClaimLimitDen > map_pages_ * kClaimLimitNum) {
    ctx.claims_allowed = false;
    ctx.full_error = "lmdb store at " + env_->dir().string() + " is full: " +
                     std::to_string(used * 100 / std::max<std::size_t>(map_pages_, 1)) +
                     "% of map_size (" + std::to_string(map_bytes_) +
                     " bytes) in use, new records are refused above 87%; raise map_size or "
                     "shorten ttl";
  }
  return ctx;
}

int Core::commit(std::span<Op> ops, TimePoint now, bool with_leases) {
  if (redo_ && (!with_leases || leases_to_write_.empty()) &&
      std::all_of(ops.begin(), ops.end(), [](const Op& op) {
        const auto* complete = std::get_if<CompleteOp>(&op);
        return (complete && complete->held) ||
               std::visit([](const auto& o) { return o.pending.settled; }, op);
      })) {
    return log_only(ops, now);
  }
  MDB_txn* txn = nullptr;
  if (int rc = begin_write(&txn)) return rc;
  const std::uint64_t txnid = mdb_txn_id(txn);
  if (redo_) redo_batch_.clear();
  Tables tables(txn, env_->dbis(), redo_ ? &redo_batch_ : nullptr);
  int rc = tables.load_counters();
  ApplyContext ctx = context(txn, now);
  if (fold_failed_.load(std::memory_order_relaxed) && ctx.claims_allowed) {
    ctx.claims_allowed = false;
    ctx.full_error = "lmdb store at " + env_->dir().string() +
                     " is full: completed records held in memory do not fit in map_size (" +
                     std::to_string(map_bytes_) + " bytes); raise map_size or shorten ttl";
  }
  if (holds_leases()) {
    tables.share_tokens(&tokens_);
    note_room(ctx);
  }
  for (Op& op : ops) {
    if (rc != 0) break;
    if (auto* complete = std::get_if<CompleteOp>(&op); complete && complete->held) {
      log_held_completion(*complete, now);
      continue;
    }
    if (auto* erase = std::get_if<EraseOp>(&op); erase && !erase->held_index.empty()) {
      redo_batch_.del(RedoTable::records, id_bytes(erase->id));
      redo_batch_.del(RedoTable::expiry, erase->held_index);
    }
    rc = apply(tables, op, ctx);
  }
  if (rc == 0 && with_leases) rc = write_held_leases(tables);
  if (rc == 0) rc = tables.save_counters();
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  const std::uint64_t records = tables.record_count();
  if ((rc = mdb_txn_commit(txn))) return rc;  // a failed commit frees the txn too
  if (redo_) log_commit(txnid);
  std::vector<RecordId> changed;
  changed.reserve(ops.size());
  for (const Op& op : ops) changed.push_back(op_id(op));
  commit_to_cache(changed, txnid);
  records_.store(records, std::memory_order_relaxed);
  bytes_.store(tables.bytes(), std::memory_order_relaxed);
  transactions_.fetch_add(1, std::memory_order_relaxed);
  operations_.fetch_add(ops.size(), std::memory_order_relaxed);
  return 0;
}

int Core::begin_write(MDB_txn** txn) {
  if (int rc = mdb_txn_begin(env_->get(), nullptr, 0, txn)) return rc;
  // Another process committed since our last commit: what the cache holds may be gone.
  if (mdb_txn_id(*txn) != known_txnid_.load(std::memory_order_relaxed) + 1) cache_.clear();
  return 0;
}

void Core::note_room(const ApplyContext& ctx) {
  if (claims_allowed_.load(std::memory_order_relaxed) == ctx.claims_allowed) return;
  std::lock_guard lock(leases_mutex_);
  full_error_ = ctx.full_error;
  claims_allowed_.store(ctx.claims_allowed, std::memory_order_relaxed);
}

int Core::log_only(std::span<Op> ops, TimePoint now) {
  redo_batch_.clear();
  for (Op& op : ops) {
    if (auto* complete = std::get_if<CompleteOp>(&op); complete && complete->held) {
      log_held_completion(*complete, now);
    }
  }
  if (redo_batch_.empty()) return 0;
  // The fencing tokens issued so far, as a transaction's counters would record them.
  const std::uint64_t tokens = tokens_.load(std::memory_order_relaxed);
  redo_batch_.put(RedoTable::meta, kLastTokenKey,
                  std::string_view(reinterpret_cast<const char*>(&tokens), sizeof tokens));
  // Numbered as the next commit will be: a checkpoint of that commit or a later one comes
  // after a fold, which writes these records (core_folds.cpp); an earlier one replays them.
  log_commit(latest_txnid() + 1);
  return 0;
}

int Core::sync() {
  const int rc = mdb_env_sync(env_->get(), 1);
  if (rc == 0) syncs_.fetch_add(1, std::memory_order_relaxed);
  return rc;
}

void Core::mark_unsynced() {
  std::lock_guard lock(sync_mutex_);
  sync_wanted_ = true;
}

void Core::hand_to_syncer(std::span<Op> ops) {
  {
    std::lock_guard lock(sync_mutex_);
    for (Op& op : ops) {
      marked_.push_back(op_id(op));
      awaiting_sync_.push_back(std::move(op));
    }
  }
  sync_wake_.notify_one();
}

void Core::mark_unflushed(std::span<const Op> ops) {
  std::lock_guard lock(unflushed_mutex_);
  for (const Op& op : ops) ++unflushed_[op_id(op)];
}

void Core::unmark_flushed(std::span<const RecordId> ids) {
  std::lock_guard lock(unflushed_mutex_);
  for (const RecordId& id : ids) {
    auto it = unflushed_.find(id);
    if (it != unflushed_.end() && --it->second == 0) unflushed_.erase(it);
  }
}

bool Core::unflushed(const RecordId& id) const {
  if (options_.durability != Durability::power) return false;
  std::lock_guard lock(unflushed_mutex_);
  return unflushed_.contains(id);
}

void Core::run_batch(std::span<Op> ops) {
  const TimePoint now = options_.clock->now();
  const bool power = options_.durability == Durability::power;
  if (power) {
    resolve_leases(ops, now);
    if (ops.empty() && leases_to_write_.empty()) return;
  }
  // Before the commit: readers see it the moment it is made.
  if (power) mark_unflushed(ops);
  bool committed = false;
  bool leases_written = false;
  const int batch_rc = commit(ops, now, power);
  if (batch_rc == MDB_MAP_FULL) room_wanted_ = true;
  if (batch_rc == 0) {
    committed = true;
    leases_written = power;
  } else if (ops.size() == 1) {
    std::visit([&](auto& o) { o.pending.result = error_of(batch_rc); }, ops[0]);
  } else {
    // Typically MDB_MAP_FULL: one operation did not fit. Alone, each one that fits
    // succeeds (a completion must not be lost with a claim), and only the others fail.
    for (Op& op : ops) {
      if (int one = commit(std::span<Op>(&op, 1), now); one == 0) {
        committed = true;
      } else {
        std::visit([&](auto& o) { o.pending.result = error_of(one); }, op);
      }
    }
  }
  if (power) {
    settle_leases(ops, leases_written);
    // A claim that created a record (or took over an expired lease) that may be taken over
    // once its lease runs out is answered once committed, not once flushed. A power cut
    // that takes it back takes back its lease, which is what the cut does to every lease
    // anyway: the retry executes afresh. (The next flush puts it on the disk too.) Under
    // on_expired_lease = "fail" the claim must survive, or a retry after the cut would
    // execute instead of being refused; and a claim that found a record answers with
    // what the disk may not have yet. Both wait for the flush, as does every other write.
    auto flush_first = std::stable_partition(ops.begin(), ops.end(), [](const Op& op) {
      const auto* claim = std::get_if<ClaimOp>(&op);
      return claim == nullptr || !claim->request.take_over_expired || !claim->pending.result ||
             !claim->pending.result->has_value() || !(*claim->pending.result)->acquired;
    });
    const std::span<Op> answered_now(flush_first, ops.end());
    {
      std::lock_guard lock(sync_mutex_);  // their marks go with the next flush too
      for (const Op& op : answered_now) marked_.push_back(op_id(op));
    }
    for (Op& op : answered_now) deliver(op);
    return hand_to_syncer(std::span<Op>(ops.begin(), flush_first));
  }
  if (committed) mark_unsynced();
  for (Op& op : ops) deliver(op);
}

void Core::run_syncer() {
  const bool periodic =
      options_.durability == Durability::process && options_.sync_interval.count() > 0;
  std::vector<Op> flushing;
  std::vector<RecordId> flushed_ids;
  std::vector<std::pair<std::uint64_t, std::string>> logging;
  std::unique_lock lock(sync_mutex_);
  for (;;) {
    auto woken = [&] { return syncer_stop_ || !awaiting_sync_.empty() || !unlogged_.empty(); };
    if (periodic) {
      sync_wake_.wait_for(lock, options_.sync_interval, woken);
    } else {
      sync_wake_.wait(lock, woken);
    }
    const bool wanted = sync_wanted_ || !awaiting_sync_.empty() || !unlogged_.empty();
    if (!wanted && syncer_stop_) break;
    if (!wanted) continue;
    flushing.swap(awaiting_sync_);
    flushed_ids.swap(marked_);
    logging.swap(unlogged_);
    const std::uint64_t frames = frames_queued_;
    sync_wanted_ = false;
    lock.unlock();
    // Process: every batch committed so far is flushed by this one call. Power: by the
    // log's write of everything committed so far.
    const int rc = redo_ ? write_log(logging) : sync();
    if (rc == 0 && redo_) {
      {
        std::lock_guard written(sync_mutex_);
        frames_written_ = std::max(frames_written_, frames);
      }
      log_written_.notify_all();
    }
    if (rc != 0) {
      const std::string what =
          redo_ ? "writing the redo log failed (" + std::string(std::strerror(rc)) + ")"
                : "flush to disk failed (" + mdb_error(rc) + ")";
      const Error error{Errc::store_unavailable, "lmdb store at " + env_->dir().string() + ": " +
                                                     what + "; the write may not be durable"};
      for (Op& op : flushing) std::visit([&](auto& o) { o.pending.result = error; }, op);
      if (flushing.empty()) mark_unsynced();  // the next interval tries again
    }
    // Unmarked even when the flush failed: those writes were answered with its error, and
    // keeping them marked would route their records' claims to the writer forever.
    unmark_flushed(flushed_ids);
    flushed_ids.clear();
    for (Op& op : flushing) deliver(op);
    flushing.clear();  // callbacks may hold the last reference to their captures
    lock.lock();
  }
  lock.unlock();
  {
    std::lock_guard checkpoint_lock(checkpoint_mutex_);
    checkpointer_stop_ = true;
  }
  checkpoint_wake_.notify_one();
}

void Core::deliver(Op& op) {
  const RecordId id = op_id(op);
  std::visit(
      [&](auto& o) {
        auto& p = o.pending;
        if (!p.result) p.result.emplace(Error{Errc::store_unavailable, "lmdb: no result"});
        if (!p.result->has_value() && p.result->error().code == Errc::store_full) {
          store_full_.fetch_add(1, std::memory_order_relaxed);
        }
        if (p.notify && p.result->has_value()) notify(id);
        auto done = std::move(p.done);
        done(std::move(*p.result));
      },
      op);
}

void Core::run() {
  const auto sweep_every = std::max(options_.sweep_interval, std::chrono::milliseconds(1));
  auto next_sweep = SteadyClock::now() + sweep_every;
  const std::size_t max_batch = std::max<std::size_t>(options_.max_batch, 1);
  std::vector<Op> batch;
  for (;;) {
    auto wake_at = next_sweep;
    if (holds_leases()) {
      if (auto lease_due = next_lease_write()) wake_at = std::min(wake_at, *lease_due);
      if (!folding_.empty()) wake_at = SteadyClock::now();  // the next chunk of a fold
    }
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, wake_at, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty() && stop_) break;
      const std::size_t n = std::min(queue_.size(), max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch.empty() || holds_leases()) {
      run_batch(batch);  // with no operations: writes the leases due, if any
      batch.clear();     // callbacks may hold the last reference to their captures
    }
    resync_cache();
    if (redo_) maybe_checkpoint();
    const auto now = SteadyClock::now();
    if (now >= next_sweep) {
      if (holds_leases()) sweep_leases(options_.clock->now());
      next_sweep = sweep(options_.clock->now()) ? now : now + sweep_every;
    }
  }
  // Completed records held in memory go to data.mdb before the checkpointer's last flush,
  // which retires the log; if they do not fit, the log stays for the next start.
  if (redo_ && fold_completions() != 0) fold_failed_.store(true, std::memory_order_relaxed);
  // The syncer flushes what was committed (a clean shutdown leaves nothing only in the
  // page cache), answers what it holds, and returns.
  {
    std::lock_guard lock(sync_mutex_);
    syncer_stop_ = true;
  }
  sync_wake_.notify_one();
}

}  // namespace idem::lmdb
