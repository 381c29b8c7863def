// Recovery from the redo log of durability "power" (redo_log.hpp): after a power cut or an
// OS crash, data.mdb's pages since the last checkpoint may be on the disk in any mix of
// old and new, meta pages included. The pages of the checkpoint's commit were never
// written after it (a read transaction kept LMDB from reusing them) and were flushed
// before the checkpoint was recorded, so its meta page, put back into both meta slots,
// names a whole tree. Replaying the log's records on top of it gives every commit that
// was acknowledged since.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "stores/lmdb/env.hpp"
#include "stores/lmdb/redo_log.hpp"
#include "stores/lmdb/tables.hpp"

namespace idem::lmdb {
namespace fs = std::filesystem;
namespace {

std::string errno_text() { return std::strerror(errno); }

// A power store holds writer.lock exclusively while it runs (Env::lock_writers).
bool power_store_running(const fs::path& dir) {
  const int fd = ::open((dir / "writer.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool running = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return running;
}

void restore_meta(const fs::path& dir, const RedoCheckpoint& c) {
  if (c.meta.size() != kMetaCopyBytes || lmdb_meta_txnid(c.meta) != c.txnid || c.txnid == 0 ||
      c.page_size < kMetaCopyBytes) {
    fail(dir, "the redo log's checkpoint does not hold an LMDB meta page; nothing was changed");
  }
  const fs::path file = dir / "data.mdb";
  const int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) fail(dir, "cannot open data.mdb to recover it: " + errno_text());
  bool ok = true;
  for (std::uint64_t slot = 0; slot < 2 && ok; ++slot) {
    std::string page = c.meta;
    std::memcpy(page.data(), &slot, sizeof slot);  // a page starts with its own number
    ok = ::pwrite(fd, page.data(), page.size(), static_cast<off_t>(slot * c.page_size)) ==
         static_cast<ssize_t>(page.size());
  }
  ok = ok && ::fsync(fd) == 0;
  const std::string why = errno_text();
  ::close(fd);
  if (!ok) fail(dir, "cannot restore data.mdb's checkpoint: " + why);
}

// A read transaction keeps the checkpoint's pages from being reused while the log is
// replayed, in transactions of kRecordsPerTxn records: a crash during recovery leaves the
// same checkpoint to recover from again.
constexpr std::size_t kRecordsPerTxn = 1024;

int replay_records(MDB_env* env, const Dbis& dbis, const RedoContents& log) {
  std::size_t i = 0;
  while (i < log.records.size()) {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, 0, &txn)) return rc;
    int rc = 0;
    for (const std::size_t end = std::min(i + kRecordsPerTxn, log.records.size());
         i < end && rc == 0; ++i) {
      const RedoRecord& record = log.records[i];
      if (record.txnid <= log.checkpoint.txnid) continue;
      for (const RedoChange& change : record.changes) {
        MDB_val key{change.key.size(), const_cast<char*>(change.key.data())};
        if (change.put) {
          MDB_val val{change.value.size(), const_cast<char*>(change.value.data())};
          rc = mdb_put(txn, dbi_of(dbis, change.table), &key, &val, 0);
        } else {
          rc = mdb_del(txn, dbi_of(dbis, change.table), &key, nullptr);
          if (rc == MDB_NOTFOUND) rc = 0;
        }
        if (rc != 0) break;
      }
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return rc;
    }
    if ((rc = mdb_txn_commit(txn))) return rc;
  }
  return mdb_env_sync(env, 1);
}

// How many times a replay that does not fit starts again in a map twice as large.
constexpr int kMapGrowths = 10;

// The checkpoint's pin keeps every page of the checkpoint until the whole log is in, so a
// replay may need more room than the map the store ran with: that store reused the pages
// of records removed since, once a later checkpoint moved its pin. A replay that does not
// fit starts again from the checkpoint in a map twice as large. The file grows only as far
// as pages are written, and LMDB keeps the map the store opens next at least as large as
// the data.
void replay(const fs::path& dir, const RedoContents& log, std::size_t map_size) {
  for (int growths = 0;; ++growths) {
    int rc = 0;
    MDB_envinfo info;
    {
      EnvCloser env{open_raw(dir, MDB_NOTLS | MDB_NORDAHEAD | MDB_NOSYNC | MDB_WRITEMAP, map_size)};
      TxnAborter pin;
      const Dbis dbis = open_layout(dir, env.env, false);
      rc = mdb_txn_begin(env.env, nullptr, MDB_RDONLY, &pin.txn);
      if (rc == 0 && mdb_txn_id(pin.txn) != log.checkpoint.txnid) rc = MDB_CORRUPTED;
      if (rc == 0) rc = replay_records(env.env, dbis, log);
      mdb_env_info(env.env, &info);
    }
    if (rc == 0) return;
    if (rc != MDB_MAP_FULL || growths == kMapGrowths) {
      fail(dir, "cannot replay the redo log: " + mdb_error(rc) + " (map of " +
                    std::to_string(info.me_mapsize) + " bytes); nothing was lost, the log stays");
    }
    map_size = info.me_mapsize * 2;
    restore_meta(dir, log.checkpoint);  // what the failed replay committed goes
  }
}

}  // namespace

void recover_from_redo_log(const fs::path& dir, int lock_fd, bool exclusive, bool reader,
                           std::size_t map_size) {
  std::optional<RedoContents> log = read_redo_log(dir);
  if (!log) return;
  const std::string boot = current_boot_id();
  const bool same_boot = !boot.empty() && boot == log->checkpoint.boot_id;
  // The page cache kept every page a store of this boot wrote, but the completions it
  // held in memory (core_folds.cpp) are only in the log. A store that still runs holds
  // writer.lock: a reader then sees data.mdb as it is, without those.
  if (same_boot && reader && power_store_running(dir)) return;
  if (!exclusive && ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    fail(dir, same_boot
                  ? "must be recovered from its redo log (a gateway with durability \"power\" "
                    "stopped without writing all of it to data.mdb), which needs every other "
                    "user of the directory stopped"
                  : "must be recovered from its redo log (the machine restarted since a "
                    "gateway with durability \"power\" wrote it), which needs every other "
                    "user of the directory stopped");
  }
  restore_meta(dir, log->checkpoint);
  replay(dir, *log, map_size);
  retire_redo_log(dir);
  if (!exclusive) ::flock(lock_fd, LOCK_SH);
}

}  // namespace idem::lmdb
