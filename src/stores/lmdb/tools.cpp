// Offline tools for idemctl. They share the store's Env (validation, locks) and Tables
// (the byte counter and index kept in step), so a record erased here looks to the store
// exactly like one it erased itself.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "idem/lmdb_store.hpp"
#include "idem/lmdb_tools.hpp"
#include "stores/lmdb/env.hpp"
#include "stores/lmdb/tables.hpp"

namespace idem {
namespace {

namespace fs = std::filesystem;
using lmdb::Access;
using lmdb::Env;

std::unique_ptr<Env> open_env(const fs::path& dir, Access access) {
  Env::Options options;
  options.access = access;
  options.sync_commits = true;  // a tool's few writes are flushed before it reports them done
  return Env::open(dir, options);
}

// A transaction that aborts unless committed; failures throw with the directory's name.
class Txn {
 public:
  Txn(const Env& env, bool write) : env_(env) {
    if (int rc = mdb_txn_begin(env.get(), nullptr, write ? 0 : MDB_RDONLY, &txn_)) {
      lmdb::fail(env.dir(), "cannot begin a transaction: " + lmdb::mdb_error(rc));
    }
  }
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }
  MDB_txn* get() const noexcept { return txn_; }
  void check(int rc, const char* what) const {
    if (rc != 0) lmdb::fail(env_.dir(), std::string(what) + ": " + lmdb::mdb_error(rc));
  }
  void commit() {
    const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
    check(rc, "commit");
    check(mdb_env_sync(env_.get(), 1), "flush to disk");
  }

 private:
  const Env& env_;
  MDB_txn* txn_ = nullptr;
};

LmdbRecordInfo info_of(const MDB_val& key, const MDB_val& val, TimePoint now) {
  LmdbRecordInfo info;
  const auto k = lmdb::as_view(key);
  info.id = RecordId(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(k.data()),
                                                   std::min(k.size(), Digest::kMaxSize)));
  info.size = key.mv_size + val.mv_size;
  auto record = decode_record(lmdb::as_view(val));
  if (record) {
    info.expired = now >= record->expires_at;
    info.record = std::move(*record);
  } else {
    info.error = record.error().message;
  }
  return info;
}

}  // namespace

std::vector<LmdbRecordInfo> lmdb_list_records(const fs::path& dir, TimePoint now,
                                              std::size_t limit) {
  auto env = open_env(dir, Access::read_only);
  Txn txn(*env, false);
  MDB_cursor* cursor = nullptr;
  txn.check(mdb_cursor_open(txn.get(), env->dbis().records, &cursor), "cursor");
  std::vector<LmdbRecordInfo> out;
  MDB_val key, val;
  int rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
  for (; rc == 0 && (limit == 0 || out.size() < limit);
       rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
    out.push_back(info_of(key, val, now));
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND && rc != 0) txn.check(rc, "list");
  return out;
}

std::optional<LmdbRecordInfo> lmdb_inspect_record(const fs::path& dir, const RecordId& id,
                                                  TimePoint now) {
  auto env = open_env(dir, Access::read_only);
  Txn txn(*env, false);
  MDB_val key = lmdb::as_val(lmdb::id_bytes(id));
  MDB_val val;
  const int rc = mdb_get(txn.get(), env->dbis().records, &key, &val);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  txn.check(rc, "read");
  return info_of(key, val, now);
}

bool lmdb_erase_record(const fs::path& dir, const RecordId& id) {
  auto env = open_env(dir, Access::read_write);
  Txn txn(*env, true);
  lmdb::Tables tables(txn.get(), env->dbis());
  txn.check(tables.load_counters(), "read the meta database");
  lmdb::Found found;
  txn.check(tables.find(id, found), "read");
  if (!found.present()) return false;
  txn.check(tables.remove(id, found), "erase");
  txn.check(tables.save_counters(), "write the meta database");
  txn.commit();
  return true;
}

std::uint64_t lmdb_erase_all(const fs::path& dir) {
  auto env = open_env(dir, Access::read_write);
  Txn txn(*env, true);
  lmdb::Tables tables(txn.get(), env->dbis());
  txn.check(tables.load_counters(), "read the meta database");
  const std::uint64_t count = tables.record_count();
  // Emptied, not deleted: the tables and the token counter stay, so tokens handed out
  // after the flush are still higher than any before it.
  txn.check(mdb_drop(txn.get(), env->dbis().records, 0), "empty the records");
  txn.check(mdb_drop(txn.get(), env->dbis().expiry, 0), "empty the expiry index");
  tables.reset_bytes();
  txn.check(tables.save_counters(), "write the meta database");
  txn.commit();
  return count;
}

LmdbCompactReport lmdb_compact(const fs::path& dir) {
  auto env = open_env(dir, Access::exclusive);
  const fs::path data = env->data_file();
  const fs::path scratch = dir / "compact.tmp";
  std::error_code ec;
  LmdbCompactReport report;
  report.bytes_before = fs::file_size(data, ec);
  fs::remove_all(scratch, ec);  // a leftover of an interrupted compaction
  fs::create_directory(scratch, ec);
  if (ec) lmdb::fail(dir, "cannot create " + scratch.string() + ": " + ec.message());
  if (int rc = mdb_env_copy2(env->get(), scratch.c_str(), MDB_CP_COMPACT)) {
    fs::remove_all(scratch, ec);
    lmdb::fail(dir, "compacting copy failed: " + lmdb::mdb_error(rc) + "; nothing was changed");
  }
  const fs::path copy = scratch / "data.mdb";
  if (!lmdb::fsync_path(copy)) {
    fs::remove_all(scratch, ec);
    lmdb::fail(dir, "cannot flush the compacted copy; nothing was changed");
  }
  // The environment is closed before the swap; idem.lock stays held until the end, so no
  // gateway opens the directory halfway through. One rename replaces the data file: a crash
  // leaves either the old file or the new one, both whole.
  env->close_environment();
  if (std::rename(copy.c_str(), data.c_str()) != 0) {
    fs::remove_all(scratch, ec);
    lmdb::fail(dir, "cannot move the compacted copy into place; nothing was changed");
  }
  lmdb::fsync_path(dir);
  fs::remove_all(scratch, ec);
  report.bytes_after = fs::file_size(data, ec);
  return report;
}

}  // namespace idem
