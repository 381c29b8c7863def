#include "stores/lmdb/tables.hpp"

#include <chrono>
#include <cstring>
#include <span>

namespace idem::lmdb {
namespace {

// Flipping the sign bit makes two's-complement times sort as unsigned big-endian bytes.
constexpr std::uint64_t kSignBit = std::uint64_t{1} << 63;

int get_u64(MDB_txn* txn, MDB_dbi dbi, std::string_view name, std::uint64_t& out) {
  MDB_val key = as_val(name);
  MDB_val val;
  const int rc = mdb_get(txn, dbi, &key, &val);
  if (rc == MDB_NOTFOUND) {
    out = 0;
    return 0;
  }
  if (rc != 0) return rc;
  if (val.mv_size != sizeof out) return MDB_CORRUPTED;
  std::memcpy(&out, val.mv_data, sizeof out);
  return 0;
}

}  // namespace

std::int64_t to_ms(TimePoint t) noexcept {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string expiry_key(TimePoint expires_at, const RecordId& id) {
  const std::uint64_t v = static_cast<std::uint64_t>(to_ms(expires_at)) ^ kSignBit;
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>((v >> (56 - 8 * i)) & 0xFF);
  key.append(id_bytes(id));
  return key;
}

bool parse_expiry_key(std::string_view key, std::int64_t& expires_ms, RecordId& id) {
  if (key.size() < 8 || key.size() > 8 + Digest::kMaxSize) return false;
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(key[i]);
  expires_ms = static_cast<std::int64_t>(v ^ kSignBit);
  id = RecordId(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(key.data()) + 8,
                                              key.size() - 8));
  return true;
}

int Tables::load_counters() {
  if (int rc = get_u64(txn_, dbis_.meta, kLastTokenKey, last_token_)) return rc;
  return get_u64(txn_, dbis_.meta, kBytesKey, bytes_);
}

int Tables::save_counters() {
  auto bytes_of = [](const std::uint64_t& v) {
    return std::string_view(reinterpret_cast<const char*>(&v), sizeof v);
  };
  if (shared_tokens_) {
    if (const std::uint64_t reached = shared_tokens_->load(); reached > last_token_) {
      last_token_ = reached;
      tokens_dirty_ = true;
    }
  }
  if (tokens_dirty_) {
    if (int rc = put_value(RedoTable::meta, kLastTokenKey, bytes_of(last_token_))) return rc;
  }
  if (bytes_dirty_) return put_value(RedoTable::meta, kBytesKey, bytes_of(bytes_));
  return 0;
}

MDB_dbi dbi_of(const Dbis& dbis, RedoTable table) noexcept {
  switch (table) {
    case RedoTable::records:
      return dbis.records;
    case RedoTable::expiry:
      return dbis.expiry;
    case RedoTable::meta:
      break;
  }
  return dbis.meta;
}

int Tables::put_value(RedoTable table, std::string_view key, std::string_view value) {
  MDB_val k = as_val(key);
  MDB_val v = as_val(value);
  if (int rc = mdb_put(txn_, dbi_of(dbis_, table), &k, &v, 0)) return rc;
  if (redo_) redo_->put(table, key, value);
  return 0;
}

int Tables::del_value(RedoTable table, std::string_view key) {
  MDB_val k = as_val(key);
  const int rc = mdb_del(txn_, dbi_of(dbis_, table), &k, nullptr);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  if (redo_) redo_->del(table, key);
  return 0;
}

int Tables::remove_index_entry(std::string_view key) { return del_value(RedoTable::expiry, key); }

int Tables::find(const RecordId& id, Found& out) {
  MDB_val key = as_val(id_bytes(id));
  MDB_val val;
  const int rc = mdb_get(txn_, dbis_.records, &key, &val);
  out = Found{};
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  out.size = key.mv_size + val.mv_size;
  out.record.emplace(decode_record(as_view(val)));
  return 0;
}

int Tables::put(const RecordId& id, const Record& record, const Found& old) {
  return put_encoded(id, encode_record(record), record.expires_at, old);
}

int Tables::put_encoded(const RecordId& id, std::string_view bytes, TimePoint expires_at,
                        const Found& old) {
  const std::string_view key = id_bytes(id);
  if (int rc = put_value(RedoTable::records, key, bytes)) return rc;
  const std::string new_index = expiry_key(expires_at, id);
  if (old.record && old.record->has_value()) {
    const std::string old_index = expiry_key((*old.record)->expires_at, id);
    if (old_index == new_index) {
      add_bytes(key.size() + bytes.size(), old.size);
      return 0;
    }
    if (int rc = del_value(RedoTable::expiry, old_index)) return rc;
  }
  if (int rc = put_value(RedoTable::expiry, new_index, {})) return rc;
  add_bytes(key.size() + bytes.size(), old.size);
  return 0;
}

int Tables::put_new(const RecordId& id, std::string_view bytes, TimePoint expires_at, bool& taken) {
  const std::string_view key = id_bytes(id);
  MDB_val k = as_val(key);
  MDB_val v = as_val(bytes);
  const int rc = mdb_put(txn_, dbis_.records, &k, &v, MDB_NOOVERWRITE);
  taken = rc == MDB_KEYEXIST;
  if (taken) return 0;
  if (rc != 0) return rc;
  if (redo_) redo_->put(RedoTable::records, key, bytes);
  if (int e = put_value(RedoTable::expiry, expiry_key(expires_at, id), {})) return e;
  add_bytes(key.size() + bytes.size(), 0);
  return 0;
}

int Tables::remove(const RecordId& id, const Found& old) {
  if (!old.present()) return 0;
  if (int rc = del_value(RedoTable::records, id_bytes(id))) return rc;
  // A record that does not decode leaves its index entry; the sweeper drops it when it
  // comes due and finds no record.
  if (old.record->has_value()) {
    if (int rc = del_value(RedoTable::expiry, expiry_key((*old.record)->expires_at, id))) {
      return rc;
    }
  }
  add_bytes(0, old.size);
  return 0;
}

std::uint64_t Tables::record_count() const {
  MDB_stat st;
  return mdb_stat(txn_, dbis_.records, &st) == 0 ? st.ms_entries : 0;
}

void Tables::add_bytes(std::size_t add, std::size_t sub) noexcept {
  bytes_ = bytes_ + add >= sub ? bytes_ + add - sub : 0;
  bytes_dirty_ = true;
}

Result<std::optional<Record>> read_record(MDB_txn* txn, MDB_dbi records, const RecordId& id,
                                          std::size_t* stored_size) {
  MDB_val key = as_val(id_bytes(id));
  MDB_val val;
  const int rc = mdb_get(txn, records, &key, &val);
  if (rc == MDB_NOTFOUND) return std::optional<Record>{};
  if (rc != 0) return Error{Errc::store_unavailable, "lmdb read: " + mdb_error(rc)};
  if (stored_size) *stored_size = key.mv_size + val.mv_size;
  auto record = decode_record(as_view(val));
  if (!record) return record.error();
  return std::optional<Record>(std::move(*record));
}

}  // namespace idem::lmdb
