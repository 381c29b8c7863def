#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <variant>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb/env.hpp"
#include "stores/lmdb/ops.hpp"
#include "stores/lmdb/read_pool.hpp"
#include "stores/lmdb/record_cache.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem::lmdb {

/// The LMDB store's state, shared by the Store object and its writer thread (which may
/// outlive it by one batch when the last reference is dropped from a callback).
///
/// Writes: submit() queues an operation; run(), on the writer thread, takes up to
/// max_batch queued operations, applies them in ONE write transaction, commits, and only
/// then calls back and wakes watchers. Flushes to disk run on a second thread,
/// run_syncer(), so that the writer never waits for the disk: for Durability::power the
/// writer hands each committed batch over and the syncer answers it once mdb_env_sync
/// has returned (while the writer commits the next batch); for Durability::process the
/// syncer flushes every sync_interval if anything was committed. When the
/// transaction fails (MDB_MAP_FULL), the operations are retried one per transaction, so a
/// completion that fits is not lost with a claim that does not. Between batches the writer
/// sweeps expired records in bounded transactions, oldest first, from the expiry index.
///
/// Reads: a completed record found by a read is kept decoded in a RecordCache, trusted
/// only while `known_txnid_` (the newest commit whose changes this process has applied to
/// the cache: its own, whose records it drops from the cache after each commit) is LMDB's
/// newest commit. Another process's commit (idemctl, a second gateway) makes them differ:
/// reads then go to LMDB, and the writer empties the cache before its next transaction or
/// at its next wake-up, whichever comes first.
class Core {
 public:
  Core(LmdbStoreOptions options, std::unique_ptr<Env> env);
  ~Core();

  // Any thread.
  void submit(Op op);
  /// Sets `out` to the record if present and unexpired at `now` (from the cache, or read in
  /// a pooled read transaction). Filled in place: a replay copies the record once.
  Result<void> read_live(const RecordId& id, TimePoint now, std::optional<Record>& out);
  /// Durability::power: true while a write to `id` is committed but not yet on the disk.
  /// A read then sees what a power cut could still take back, so a claim must not answer
  /// from it: the writer answers such a claim after the flush.
  bool unflushed(const RecordId& id) const;
  Result<void> ping();
  std::shared_ptr<detail::WatchState> add_watch(const RecordId& id, std::function<void()> fn);
  void remove_watch(const RecordId& id, const detail::WatchState* state);
  void count_read_answer() noexcept {
    read_answers_[thread_slot() % kStripes].n.fetch_add(1, std::memory_order_relaxed);
  }
  LmdbStoreCounters counters() const;
  StoreStats stats() const {
    return {records_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
  }
  const LmdbStoreOptions& options() const noexcept { return options_; }
  const std::filesystem::path& path() const noexcept { return env_->dir(); }
  /// The writer finishes what is queued, then run() returns; the syncer flushes what the
  /// writer committed, then run_syncer() returns.
  void request_stop();

  /// The writer thread's loop.
  void run();
  /// The syncer thread's loop.
  void run_syncer();

 private:
  void run_batch(std::span<Op> ops);
  int commit(std::span<Op> ops, TimePoint now);
  ApplyContext context(MDB_txn* txn, TimePoint now) const;
  /// Removes up to sweep_batch expired records; true when more are due.
  bool sweep(TimePoint now);
  int sync();
  /// Power: the batch is answered by the syncer once flushed.
  void hand_to_syncer(std::span<Op> ops);
  /// Power: marks the records `ops` write as unflushed, before their commit is visible.
  void mark_unflushed(std::span<const Op> ops);
  /// Power: after a flush, what `ids` marked is on the disk.
  void unmark_flushed(std::span<const RecordId> ids);
  void mark_unsynced();
  Error error_of(int rc) const;
  void deliver(Op& op);
  void notify(const RecordId& id);
  /// LMDB's newest committed transaction id, from the shared lock file: no system call.
  std::uint64_t latest_txnid() const;
  /// After a commit of ours: forget what it changed, then trust the cache again.
  void commit_to_cache(std::span<const RecordId> changed, std::uint64_t txnid);
  /// Empties the cache if someone else committed since we last looked.
  void resync_cache();

  const LmdbStoreOptions options_;
  std::unique_ptr<Env> env_;
  ReadPool reads_;  // after env_: destroyed (its transactions aborted) before the env closes
  RecordCache cache_;
  std::atomic<std::uint64_t> known_txnid_{0};
  std::size_t map_bytes_ = 0;  // as LMDB has it: an existing environment keeps its own
  std::size_t map_pages_ = 0;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Op> queue_;
  bool stop_ = false;

  std::mutex sync_mutex_;
  std::condition_variable sync_wake_;
  std::vector<Op> awaiting_sync_;  ///< power: committed, answered once flushed
  std::vector<RecordId> marked_;   ///< power: committed ids to unmark once flushed
  bool sync_wanted_ = false;       ///< process: committed since the last flush
  bool syncer_stop_ = false;

  // Power: ids written by commits not yet flushed, with how many such commits wrote each.
  mutable std::mutex unflushed_mutex_;
  std::unordered_map<RecordId, unsigned, DigestHash> unflushed_;

  std::mutex watch_mutex_;
  std::unordered_map<RecordId, std::vector<std::shared_ptr<detail::WatchState>>, DigestHash>
      watchers_;

  std::atomic<std::uint64_t> records_{0};
  std::atomic<std::uint64_t> bytes_{0};
  std::atomic<std::uint64_t> transactions_{0};
  std::atomic<std::uint64_t> operations_{0};
  std::atomic<std::uint64_t> syncs_{0};
  std::atomic<std::uint64_t> store_full_{0};
  // Counted by every reading thread: striped, so they do not fight over one cache line.
  static constexpr std::size_t kStripes = 16;
  struct alignas(64) Stripe {
    std::atomic<std::uint64_t> n{0};
  };
  std::array<Stripe, kStripes> read_answers_;
  std::atomic<std::uint64_t> sweeps_{0};
  std::atomic<std::uint64_t> swept_{0};
};

}  // namespace idem::lmdb
