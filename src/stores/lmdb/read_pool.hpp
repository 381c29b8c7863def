#pragma once

#include <lmdb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace idem::lmdb {

/// A small number per thread, handed out in order: spreads threads over slots and stripes
/// without hashing thread ids on every call.
inline std::size_t thread_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t slot = next.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

/// Read-only transactions kept reset between uses. Beginning a read transaction takes a
/// slot in LMDB's reader table under a process-shared mutex; renewing a reset one only
/// publishes a snapshot id, which is what lets a replay cost about as much as a lookup in
/// the memory store. A reset transaction pins no snapshot, so it never holds back page
/// reuse. Lock-free: a thread takes a transaction out of one of a few slots picked by its
/// id, or begins a fresh one when those are empty. Needs MDB_NOTLS, since a transaction
/// may be renewed by another thread than the one that began it.
class ReadPool {
 public:
  ReadPool(MDB_env* env, std::size_t slots)
      : env_(env), size_(slots), slots_(std::make_unique<std::atomic<MDB_txn*>[]>(slots)) {}
  ~ReadPool() {
    for (std::size_t i = 0; i < size_; ++i) {
      if (MDB_txn* txn = slots_[i].exchange(nullptr)) mdb_txn_abort(txn);
    }
  }
  ReadPool(const ReadPool&) = delete;
  ReadPool& operator=(const ReadPool&) = delete;

  /// A live read transaction over the latest commit, or an LMDB error code.
  int acquire(MDB_txn** out) {
    const std::size_t start = home();
    for (std::size_t i = 0; i < kProbe; ++i) {
      if (MDB_txn* txn = slots_[(start + i) % size_].exchange(nullptr, std::memory_order_acquire)) {
        if (mdb_txn_renew(txn) == 0) {
          *out = txn;
          return 0;
        }
        mdb_txn_abort(txn);
        break;
      }
    }
    return mdb_txn_begin(env_, nullptr, MDB_RDONLY, out);
  }

  /// Gives back a transaction from acquire().
  void release(MDB_txn* txn) {
    mdb_txn_reset(txn);
    const std::size_t start = home();
    for (std::size_t i = 0; i < kProbe; ++i) {
      MDB_txn* empty = nullptr;
      if (slots_[(start + i) % size_].compare_exchange_strong(empty, txn,
                                                              std::memory_order_release)) {
        return;
      }
    }
    mdb_txn_abort(txn);
  }

 private:
  static constexpr std::size_t kProbe = 4;
  std::size_t home() const noexcept { return thread_slot() % size_; }

  MDB_env* env_;
  std::size_t size_;
  std::unique_ptr<std::atomic<MDB_txn*>[]> slots_;
};

/// A transaction from a ReadPool for one scope.
class ReadTxn {
 public:
  explicit ReadTxn(ReadPool& pool) : pool_(pool), rc_(pool.acquire(&txn_)) {}
  ~ReadTxn() {
    if (rc_ == 0) pool_.release(txn_);
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;

  int rc() const noexcept { return rc_; }
  MDB_txn* get() const noexcept { return txn_; }

 private:
  ReadPool& pool_;
  MDB_txn* txn_ = nullptr;
  int rc_;
};

}  // namespace idem::lmdb
