// Durability "power": the store's side of the redo log (redo_log.hpp). The writer frames
// each commit's changes, the syncer writes them with O_DSYNC before it answers anyone,
// and the checkpointer flushes data.mdb every checkpoint_interval and records a checkpoint, so
// that the log starts again instead of growing and a recovery replays at most that much.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "stores/lmdb/core.hpp"

namespace idem::lmdb {
namespace {

// A generation this large is folded into data.mdb at once, not at the next interval.
constexpr std::uint64_t kGenerationBytesLimit = std::uint64_t{64} << 20;
// So many completed records held in memory are folded into data.mdb at once
// (core_folds.cpp), not at the next interval.
constexpr std::size_t kHeldCompletionsLimit = 65536;
// A failed checkpoint can leave the next one due at once (the pages copied since the older,
// still pinned one go on counting), but a disk that keeps failing is not asked again more
// often than this.
constexpr auto kRetryAfterFailure = std::chrono::milliseconds(100);

std::chrono::milliseconds interval(const LmdbStoreOptions& options) {
  return std::max(options.checkpoint_interval, std::chrono::milliseconds(1));
}

}  // namespace

void Core::start_redo_log() {
  auto first = take_checkpoint();
  if (!first) fail(env_->dir(), "cannot pin the newest commit for the redo log");
  if (int rc = sync()) {
    mdb_txn_abort(first->second);
    fail(env_->dir(), "cannot flush data.mdb: " + mdb_error(rc));
  }
  first->first.generation = generation_;
  try {
    redo_ = RedoLog::create(env_->dir(), first->first);
  } catch (...) {
    mdb_txn_abort(first->second);
    throw;
  }
  pinned_ = first->second;
  MDB_envinfo info;
  mdb_env_info(env_->get(), &info);
  pinned_last_page_ = info.me_last_pgno;
  next_checkpoint_ = std::chrono::steady_clock::now() + interval(options_);
}

void Core::log_commit(std::uint64_t txnid) {
  if (redo_batch_.empty()) return;
  std::lock_guard lock(sync_mutex_);
  if (unlogged_.empty() || unlogged_.back().first != generation_) {
    unlogged_.emplace_back(generation_, std::string());
  }
  ++frames_queued_;
  std::string& out = unlogged_.back().second;
  const std::size_t before = out.size();
  redo_batch_.frame(generation_, txnid, out);
  generation_bytes_ += out.size() - before;
}

int Core::write_log(std::vector<std::pair<std::uint64_t, std::string>>& segments) {
  std::size_t written = 0;
  int error = 0;
  for (; written < segments.size(); ++written) {
    if ((error = redo_->append(segments[written].first, segments[written].second))) break;
  }
  if (error == 0) {
    if (!segments.empty()) syncs_.fetch_add(1, std::memory_order_relaxed);
    segments.clear();
    return 0;
  }
  // What was not written goes first next time, at the same place in the log: a later
  // record must never be on the disk without the ones before it.
  std::vector<std::pair<std::uint64_t, std::string>> rest(
      std::make_move_iterator(segments.begin() + static_cast<std::ptrdiff_t>(written)),
      std::make_move_iterator(segments.end()));
  segments.clear();
  std::lock_guard lock(sync_mutex_);
  for (auto& segment : unlogged_) {
    if (rest.back().first == segment.first) {
      rest.back().second += segment.second;
    } else {
      rest.push_back(std::move(segment));
    }
  }
  unlogged_ = std::move(rest);
  return error;
}

std::optional<std::pair<RedoCheckpoint, MDB_txn*>> Core::take_checkpoint() {
  MDB_txn* pin = nullptr;
  if (mdb_txn_begin(env_->get(), nullptr, MDB_RDONLY, &pin) != 0) return std::nullopt;
  RedoCheckpoint c;
  c.txnid = mdb_txn_id(pin);
  MDB_stat st;
  mdb_env_stat(env_->get(), &st);
  c.page_size = st.ms_psize;
  // The newest commit's meta page is the slot its txnid picks, read through the file (the
  // writable map is that file's page cache). Nothing in this process commits meanwhile
  // (this runs on the writer); another process's commit shows as a different txnid, and
  // the next interval tries again.
  mdb_filehandle_t fd;
  c.meta.resize(kMetaCopyBytes);
  if (mdb_env_get_fd(env_->get(), &fd) != 0 ||
      ::pread(fd, c.meta.data(), c.meta.size(), static_cast<off_t>((c.txnid & 1) * st.ms_psize)) !=
          static_cast<ssize_t>(c.meta.size())) {
    mdb_txn_abort(pin);
    return std::nullopt;
  }
  if (lmdb_meta_txnid(c.meta) != c.txnid) {
    mdb_txn_abort(pin);
    return std::nullopt;
  }
  c.boot_id = current_boot_id();
  return std::make_pair(std::move(c), pin);
}

void Core::maybe_checkpoint() {
  const auto now = std::chrono::steady_clock::now();
  if (checkpoint_busy_.load(std::memory_order_acquire)) return;
  const bool failed = checkpoint_failed_.load(std::memory_order_relaxed);
  // The pin moves only with a checkpoint recorded: after a failed one, the map's growth
  // still counts from the older checkpoint, whose pin is the one still held.
  if (job_last_page_ != 0) {
    if (failed) {
      retry_at_ = now + kRetryAfterFailure;
    } else {
      pinned_last_page_ = job_last_page_;
    }
    job_last_page_ = 0;
  }
  if (failed && now < retry_at_) return;
  if (generation_bytes_ == 0 && !failed && !room_wanted_) {
    next_checkpoint_ = now + interval(options_);  // nothing logged since the last one
    return;
  }
  // The pin keeps LMDB from reusing any page freed since the checkpoint, so the map
  // fills with them as fast as commits copy pages. A checkpoint is due, whatever the
  // interval, once the map has grown by an eighth of its size, or by half the room that
  // records may still take (new records stop at 7/8 of the map) if that is less, or past
  // 7/8 of it: pinned pages and records together then never take more than the map has.
  // (A larger allowance makes each checkpoint flush more at once, and measured slower.)
  MDB_envinfo info;
  mdb_env_info(env_->get(), &info);
  const std::size_t records_room = map_pages_ * 7 / 8 - std::min(used_pages_, map_pages_ * 7 / 8);
  const std::size_t limit =
      std::min(pinned_last_page_ + std::min(map_pages_ / 8, records_room / 2), map_pages_ * 7 / 8);
  const bool pages_due = info.me_last_pgno > limit;
  const bool folds_due = completed_since_fold_ >= kHeldCompletionsLimit;
  if (folding_.empty()) {
    if (now < next_checkpoint_ && generation_bytes_ < kGenerationBytesLimit && !pages_due &&
        !folds_due && !room_wanted_) {
      return;
    }
    room_wanted_ = false;
    start_fold();
  }
  // The checkpoint's commit must hold every completion logged before it, or the log must
  // have them again after it: the writer folds what was held when the checkpoint came due
  // a chunk at a time, between batches, and then logs again what completed meanwhile
  // (core_folds.cpp). What a fold could not write for want of room is logged again too.
  const int folded = folding_.empty() ? 0 : fold_next();
  if (folded != 0 && folded != MDB_MAP_FULL) {
    next_checkpoint_ = now + kRetryAfterFailure;
    return;
  }
  if (!folding_.empty()) return;  // more chunks to go
  auto job = take_checkpoint();
  next_checkpoint_ = now + interval(options_);
  if (!job) return;
  // After a failed checkpoint the log keeps its generation: the one before it is the
  // newest recorded, and its records must stay until a checkpoint after them is.
  if (!failed) {
    ++generation_;
    generation_bytes_ = 0;
  }
  job->first.generation = generation_;
  relog_held(job->first.txnid + 1);
  std::uint64_t frames = 0;
  {
    std::lock_guard lock(sync_mutex_);
    frames = frames_queued_;
  }
  job_last_page_ = info.me_last_pgno;
  checkpoint_busy_.store(true, std::memory_order_relaxed);
  {
    std::lock_guard lock(checkpoint_mutex_);
    checkpoint_job_ = std::move(job);
    checkpoint_log_needed_ = frames;
  }
  checkpoint_wake_.notify_one();
}

// A flush of a second's pages in one call puts them all in the disk's queue at once, and
// every log write, which answers wait for, then waits behind them: p99 of fresh keys
// 26-30 ms. Flushed a few MiB at a time, with the log's writes in between: 10-11 ms, for
// about 5% of the rate (alternated runs, docs/durable-store.md).
int Core::flush_in_steps() {
  constexpr off_t kStep = off_t{4} << 20;
  mdb_filehandle_t fd;
  if (int rc = mdb_env_get_fd(env_->get(), &fd)) return rc;
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(env_->get(), &info);
  mdb_env_stat(env_->get(), &st);
  const auto end = static_cast<off_t>((info.me_last_pgno + 1) * st.ms_psize);
  for (off_t at = 0; at < end; at += kStep) {
    // Best effort: the flush below is what the checkpoint relies on.
    ::sync_file_range(
        fd, at, kStep,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  return sync();
}

int Core::wait_for_log(std::uint64_t frames) {
  std::unique_lock lock(sync_mutex_);
  const bool written = log_written_.wait_for(lock, std::chrono::seconds(10),
                                             [&] { return frames_written_ >= frames; });
  return written ? 0 : EIO;
}

void Core::run_checkpointer() {
  std::unique_lock lock(checkpoint_mutex_);
  for (;;) {
    checkpoint_wake_.wait(lock, [&] { return checkpointer_stop_ || checkpoint_job_; });
    if (!checkpoint_job_) break;
    auto [checkpoint, pin] = std::move(*checkpoint_job_);
    checkpoint_job_.reset();
    const std::uint64_t frames = checkpoint_log_needed_;
    lock.unlock();
    // The checkpoint's pages on the disk first, then the record that points at them.
    int error = injected_checkpoint_failure();
    if (error == 0) error = flush_in_steps();
    if (error == 0) error = wait_for_log(frames);
    if (error == 0) error = redo_->write_checkpoint(checkpoint);
    if (error == 0) {
      // The checkpoint before it is no longer what a recovery starts from.
      if (pinned_) mdb_txn_abort(pinned_);
      pinned_ = pin;
      checkpoints_.fetch_add(1, std::memory_order_relaxed);
    } else {
      mdb_txn_abort(pin);
      checkpoint_failures_.fetch_add(1, std::memory_order_relaxed);
    }
    checkpoint_failed_.store(error != 0, std::memory_order_relaxed);
    checkpoint_busy_.store(false, std::memory_order_release);
    lock.lock();
  }
  lock.unlock();
  if (!redo_) return;
  // A clean stop: everything the log holds is in data.mdb once it is flushed, and a
  // start after the machine restarts then has nothing to replay. Unless the writer's last
  // fold failed: then only the log holds those completions, and the next start replays it.
  if (!fold_failed_.load(std::memory_order_relaxed) && sync() == 0) {
    try {
      retire_redo_log(env_->dir());
    } catch (const LmdbStoreError&) {
      // Kept: the next start replays it, which is only slower.
    }
  }
  if (pinned_) mdb_txn_abort(std::exchange(pinned_, nullptr));
}

}  // namespace idem::lmdb
