#pragma once

#include <lmdb.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"
#include "idem/result.hpp"
#include "stores/lmdb/env.hpp"
#include "stores/lmdb/redo_log.hpp"

namespace idem::lmdb {

inline MDB_val as_val(std::string_view s) noexcept {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view as_view(const MDB_val& v) noexcept {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}
inline std::string_view id_bytes(const RecordId& id) noexcept {
  return {reinterpret_cast<const char*>(id.bytes().data()), id.size()};
}

/// The database a redo log change names.
MDB_dbi dbi_of(const Dbis& dbis, RedoTable table) noexcept;

/// The expiry index key of a record: 8 bytes that sort like the time, then the id.
std::string expiry_key(TimePoint expires_at, const RecordId& id);
/// The expiry time (in ms) and id held in an expiry key; false when it is malformed.
bool parse_expiry_key(std::string_view key, std::int64_t& expires_ms, RecordId& id);
std::int64_t to_ms(TimePoint t) noexcept;

/// A stored record as found in a transaction.
struct Found {
  std::optional<Result<Record>> record;  ///< empty: no such id; an error: it does not decode
  std::size_t size = 0;                  ///< key + value bytes, for the byte counter

  bool present() const noexcept { return record.has_value(); }
  bool live(TimePoint now) const noexcept {
    return record && record->has_value() && now < (*record)->expires_at;
  }
};

/// One write transaction's view of the tables. Keeps the byte counter and the fencing
/// token counter of the meta database, read at the start and written by save(), so that
/// every process writing the directory (a gateway, idemctl) keeps them consistent.
/// Methods return 0 or an LMDB error code; after an error the caller aborts the txn.
class Tables {
 public:
  /// `redo`, when given, receives every change the transaction makes through this object.
  Tables(MDB_txn* txn, const Dbis& dbis, RedoBatch* redo = nullptr) noexcept
      : txn_(txn), dbis_(dbis), redo_(redo) {}

  int load_counters();
  int save_counters();

  int find(const RecordId& id, Found& out);
  /// Writes `record`, replacing what `old` found (its expiry index entry too).
  int put(const RecordId& id, const Record& record, const Found& old);
  /// put() of a record already encoded (encode_record) that expires at `expires_at`.
  int put_encoded(const RecordId& id, std::string_view bytes, TimePoint expires_at,
                  const Found& old);
  /// put_encoded() when the tables hold nothing for `id`; sets `taken` and writes nothing
  /// otherwise. One B-tree search where find() and put() take two.
  int put_new(const RecordId& id, std::string_view bytes, TimePoint expires_at, bool& taken);
  /// Removes what `old` found.
  int remove(const RecordId& id, const Found& old);
  /// Removes one expiry index entry; absent is not an error.
  int remove_index_entry(std::string_view key);

  std::uint64_t issue_token() noexcept {
    tokens_dirty_ = true;
    if (shared_tokens_) return last_token_ = shared_tokens_->fetch_add(1) + 1;
    return ++last_token_;
  }
  /// Tokens come from `tokens` (the last one issued, at least the stored one), which
  /// leases held in memory draw from too; save_counters() stores what it has reached.
  void share_tokens(std::atomic<std::uint64_t>* tokens) noexcept { shared_tokens_ = tokens; }
  std::uint64_t last_token() const noexcept { return last_token_; }
  std::uint64_t bytes() const noexcept { return bytes_; }
  void reset_bytes() noexcept {
    bytes_ = 0;
    bytes_dirty_ = true;
  }
  /// Records in the records database now (expired ones included until swept).
  std::uint64_t record_count() const;
  MDB_txn* txn() const noexcept { return txn_; }
  const Dbis& dbis() const noexcept { return dbis_; }

 private:
  void add_bytes(std::size_t add, std::size_t sub) noexcept;
  int put_value(RedoTable table, std::string_view key, std::string_view value);
  /// Absent is not an error.
  int del_value(RedoTable table, std::string_view key);

  MDB_txn* txn_;
  const Dbis& dbis_;
  RedoBatch* redo_;
  std::atomic<std::uint64_t>* shared_tokens_ = nullptr;
  std::uint64_t last_token_ = 0;
  std::uint64_t bytes_ = 0;
  bool tokens_dirty_ = false;
  bool bytes_dirty_ = false;
};

/// Reads one record in a read-only (or any) transaction: nullopt when absent. Decoding
/// copies out of the map, so the result outlives the transaction.
/// `stored_size`, when given, receives the key + value bytes.
Result<std::optional<Record>> read_record(MDB_txn* txn, MDB_dbi records, const RecordId& id,
                                          std::size_t* stored_size = nullptr);

}  // namespace idem::lmdb
