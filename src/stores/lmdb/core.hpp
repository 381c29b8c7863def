#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb/env.hpp"
#include "stores/lmdb/ops.hpp"
#include "stores/lmdb/read_pool.hpp"
#include "stores/lmdb/record_cache.hpp"
#include "stores/lmdb/redo_log.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem::lmdb {

/// The LMDB store's state, shared by the Store object and its writer thread (which may
/// outlive it by one batch when the last reference is dropped from a callback).
///
/// Writes: submit() queues an operation; run(), on the writer thread, takes up to
/// max_batch queued operations, applies them in ONE write transaction, commits, and only
/// then calls back and wakes watchers. Writes to the disk run on a second thread,
/// run_syncer(), so that the writer never waits for the disk: for Durability::power the
/// writer frames each commit's changes for the redo log (redo_log.hpp) and hands the
/// batch over, and the syncer answers it once its log write has returned (while the
/// writer commits the next batch); a third thread, run_checkpointer(), flushes data.mdb
/// every checkpoint_interval and records the checkpoint that lets the log start again. For
/// Durability::process the syncer flushes every sync_interval if anything was committed. When the
/// transaction fails (MDB_MAP_FULL), the operations are retried one per transaction, so a
/// completion that fits is not lost with a claim that does not. Between batches the writer
/// sweeps expired records in bounded transactions, oldest first, from the expiry index.
///
/// Under Durability::power, the in-flight records of claims that may be taken over are
/// held in memory and answered on the caller's thread; a request that completes within
/// lease_write_delay is logged once, by its completion, and its completed record stays
/// in memory until the fold before the next checkpoint writes it (core_leases.cpp,
/// core_folds.cpp).
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

  // Durability::power: the in-flight records of claims that may be taken over (the
  // default, on_expired_lease = "retry") are held in memory until they complete, or are
  // written once lease_write_delay has passed (core_leases.cpp).
  bool holds_leases() const noexcept { return options_.durability == Durability::power; }
  /// A claim that may take over an expired lease, answered from memory and the tables; none
  /// when the writer must answer it.
  std::optional<Result<ClaimOutcome>> claim_in_memory(const ClaimRequest& request, TimePoint now);
  /// None when no lease for `id` is held in memory: the writer answers.
  std::optional<TokenCheck> release_in_memory(const RecordId& id, std::uint64_t token,
                                              TimePoint now);
  std::optional<TokenCheck> renew_in_memory(const RecordId& id, std::uint64_t token, Duration lease,
                                            TimePoint now);
  /// The in-flight record held in memory for `id`, while it lives.
  std::optional<Record> leased(const RecordId& id, TimePoint now);
  std::shared_ptr<detail::WatchState> add_watch(const RecordId& id, std::function<void()> fn);
  void remove_watch(const RecordId& id, const detail::WatchState* state);
  void count_read_answer() noexcept {
    read_answers_[thread_slot() % kStripes].n.fetch_add(1, std::memory_order_relaxed);
  }
  LmdbStoreCounters counters() const;
  StoreStats stats() const {
    return {
        records_.load(std::memory_order_relaxed) + leases_count_.load(std::memory_order_relaxed),
        bytes_.load(std::memory_order_relaxed) + leases_bytes_.load(std::memory_order_relaxed)};
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
  /// The checkpointer thread's loop (Durability::power; returns at once otherwise).
  void run_checkpointer();

 private:
  void run_batch(std::span<Op> ops);
  /// Power, before the transaction: answers what a lease held in memory decides (claims,
  /// erases) and marks the leases that completions are about to write.
  void resolve_leases(std::span<Op> ops, TimePoint now);
  /// Power, after the transaction: a written completion's lease goes, and so does a lease
  /// written as it stands (the tables hold it now); a failed write's lease stays.
  void settle_leases(std::span<Op> ops, bool leases_written);
  /// Power, inside the transaction: writes leases_to_write_.
  int write_held_leases(Tables& tables);
  /// Power: drops leases whose records have expired.
  void sweep_leases(TimePoint now);
  /// Power, inside the transaction: logs a held completion (CompleteOp::held) without
  /// writing it to the tables.
  void log_held_completion(CompleteOp& op, TimePoint now);
  /// Power, on the writer: writes every completed record held in memory to the tables
  /// (which the log has already, core_folds.cpp), all at once: at a stop. 0 or an LMDB
  /// error.
  int fold_completions();
  /// A write transaction; empties the cache if another process committed since ours.
  int begin_write(MDB_txn** txn);
  /// Power: a fold in steps, between batches: start_fold() copies the completed records
  /// held, fold_next() writes the next chunk of them (folding_ is empty once all are).
  void start_fold();
  int fold_next();
  struct Folded {
    RecordId id;
    std::shared_ptr<const std::string> encoded;
    TimePoint expires_at;
    std::uint64_t token = 0;
  };
  int fold_chunk(std::span<const Folded> chunk);
  std::vector<Folded> folding_;  ///< the writer's: the fold under way, if any
  std::size_t folded_ = 0;       ///< how far into folding_ it has got
  /// `with_leases`: the transaction also writes leases_to_write_.
  int commit(std::span<Op> ops, TimePoint now, bool with_leases = false);
  /// Power: commit() of a batch that leaves the tables alone (held completions, and ops
  /// answered from memory): logged with no transaction.
  int log_only(std::span<Op> ops, TimePoint now);
  /// Power: whether new records may be made, after `ctx` measured the room left.
  void note_room(const ApplyContext& ctx);
  /// Also notes the pages in use (used_pages_).
  ApplyContext context(MDB_txn* txn, TimePoint now);
  /// Removes up to sweep_batch expired records; true when more are due.
  bool sweep(TimePoint now);
  int sync();
  /// Power: a fresh log whose first checkpoint is the newest commit, flushed.
  void start_redo_log();
  /// Power: flushes data.mdb a few MiB at a time, then in full (sync()).
  int flush_in_steps();
  /// Power: the syncer's write of what the writer logged; 0 or an errno value.
  int write_log(std::vector<std::pair<std::uint64_t, std::string>>& segments);
  /// Power: frames the changes of the transaction just committed for the syncer.
  void log_commit(std::uint64_t txnid);
  /// Power, on the writer between transactions: hands a checkpoint to the checkpointer
  /// when one is due and none is under way.
  void maybe_checkpoint();
  /// Power: pins the newest commit with a read transaction and copies its meta page.
  /// Empty when another process committed in between.
  std::optional<std::pair<RedoCheckpoint, MDB_txn*>> take_checkpoint();
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
  std::size_t used_pages_ = 0;  // the writer's, as of its last transaction

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

  // Power: the redo log. The writer frames records into redo_batch_ and unlogged_ (by
  // generation, under sync_mutex_); the syncer writes them; the checkpointer records
  // checkpoints and keeps the newest recorded one's pages pinned.
  std::unique_ptr<RedoLog> redo_;
  RedoBatch redo_batch_;
  std::uint64_t generation_ = 1;
  std::uint64_t generation_bytes_ = 0;
  std::size_t pinned_last_page_ = 0;  ///< the map's last page when the pin was taken
  std::size_t job_last_page_ = 0;     ///< the same for the checkpoint being written, if any
  std::chrono::steady_clock::time_point retry_at_;  ///< after a failed checkpoint
  std::chrono::steady_clock::time_point next_checkpoint_;
  std::vector<std::pair<std::uint64_t, std::string>> unlogged_;
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wake_;
  std::optional<std::pair<RedoCheckpoint, MDB_txn*>> checkpoint_job_;
  bool checkpointer_stop_ = false;
  std::atomic<bool> checkpoint_busy_{false};
  std::atomic<bool> checkpoint_failed_{false};
  MDB_txn* pinned_ = nullptr;  // the checkpointer's

  // Power: leases held in memory. Invariant: while one is held for an id, the tables hold
  // no live record for it. Lock order: leases_mutex_, then unflushed_mutex_.
  struct Lease {
    Record record;
    std::size_t bytes = 0;    ///< counted in stats() while held
    bool completing = false;  ///< its completion is being written: not taken over meanwhile
    bool writing = false;     ///< being written as it stands: changes go to the writer
    bool completed = false;   ///< completed and logged; in the tables from the next fold
    std::shared_ptr<const std::string> encoded;  ///< completed: the record as logged
  };
  using Leases = std::unordered_map<RecordId, Lease, DigestHash>;
  std::optional<Result<ClaimOutcome>> claim_locked(const ClaimRequest& request, TimePoint now);
  /// Under leases_mutex_.
  void hold_lease(const RecordId& id, Record record);
  void drop_lease(Leases::iterator it);
  std::mutex leases_mutex_;
  Leases leases_;
  std::atomic<std::uint64_t> leases_count_{0};
  std::atomic<std::uint64_t> leases_bytes_{0};
  std::atomic<std::uint64_t> tokens_{0};  ///< the last fencing token issued (power)
  std::atomic<bool> claims_allowed_{true};
  std::string full_error_;  ///< under leases_mutex_
  /// Leases in the order they were made (under leases_mutex_): one still held
  /// options_.lease_write_delay later is written as it stands (write_held_leases).
  struct NewLease {
    RecordId id;
    std::uint64_t token;
    std::chrono::steady_clock::time_point made;
  };
  std::deque<NewLease> new_leases_;
  std::vector<std::pair<RecordId, Record>> leases_to_write_;  ///< the writer's, this batch
  /// When the oldest lease not yet looked at is due to be written, if any.
  std::optional<std::chrono::steady_clock::time_point> next_lease_write();

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
  std::atomic<std::uint64_t> checkpoints_{0};
  std::atomic<std::uint64_t> checkpoint_failures_{0};
  std::atomic<std::uint64_t> store_full_{0};
  // Counted by every reading thread: striped, so they do not fight over one cache line.
  static constexpr std::size_t kStripes = 16;
  struct alignas(64) Stripe {
    std::atomic<std::uint64_t> n{0};
  };
  std::array<Stripe, kStripes> read_answers_;
  std::atomic<std::uint64_t> sweeps_{0};
  std::atomic<std::uint64_t> swept_{0};
  std::atomic<std::uint64_t> leases_made_{0};
  std::atomic<std::uint64_t> leases_written_{0};
  std::atomic<std::uint64_t> completions_held_{0};
  std::atomic<std::uint64_t> folds_{0};
  /// Power: the last fold failed (a full map): new records are refused until one succeeds,
  /// and a stop leaves the log for the next start to replay (writer and checkpointer).
  std::atomic<bool> fold_failed_{false};
  std::size_t completed_since_fold_ = 0;  ///< the writer's, a bound on what a fold writes
  /// Power: a write failed for want of room. A checkpoint moves the pin (the writer's), so
  /// that the pages freed since the last one can be used again, even with nothing logged.
  bool room_wanted_ = false;
  /// Power: a fold that did not fit leaves its records held; they are logged again, in the
  /// generation of the checkpoint about to be taken (`txnid` above its commit), so that a
  /// recovery from that checkpoint replays them (core_folds.cpp).
  void relog_held(std::uint64_t txnid);
  /// Power, on the checkpointer: 0 once the log holds every record framed before the
  /// checkpoint was taken, EIO if it does not within a while.
  int wait_for_log(std::uint64_t frames);
  std::uint64_t frames_queued_ = 0;   ///< power, under sync_mutex_: records framed so far
  std::uint64_t frames_written_ = 0;  ///< power, under sync_mutex_: of those, on the disk
  std::condition_variable log_written_;
  std::uint64_t checkpoint_log_needed_ = 0;  ///< under checkpoint_mutex_, with checkpoint_job_
};

}  // namespace idem::lmdb
