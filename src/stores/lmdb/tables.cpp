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

int put_u64(MDB_txn* txn, MDB_dbi dbi, std::string_view name, std::uint64_t value) {
  MDB_val key = as_val(name);
  MDB_val val{sizeof value, &value};
  return mdb_put(txn, dbi, &key, &val, 0);
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
  if (tokens_dirty_) {
    if (int rc = put_u64(txn_, dbis_.meta, kLastTokenKey, last_token_)) return rc;
  }
  if (bytes_dirty_) return put_u64(txn_, dbis_.meta, kBytesKey, bytes_);
  return 0;
}

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
  const std::string bytes = encode_record(record);
  MDB_val key = as_val(id_bytes(id));
  MDB_val val = as_val(bytes);
  if (int rc = mdb_put(txn_, dbis_.records, &key, &val, 0)) return rc;
  const std::string new_index = expiry_key(record.expires_at, id);
  if (old.record && old.record->has_value()) {
    const std::string old_index = expiry_key((*old.record)->expires_at, id);
    if (old_index == new_index) {
      add_bytes(key.mv_size + bytes.size(), old.size);
      return 0;
    }
    MDB_val k = as_val(old_index);
    const int rc = mdb_del(txn_, dbis_.expiry, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  }
  MDB_val k = as_val(new_index);
  MDB_val empty{0, nullptr};
  if (int rc = mdb_put(txn_, dbis_.expiry, &k, &empty, 0)) return rc;
  add_bytes(key.mv_size + bytes.size(), old.size);
  return 0;
}

int Tables::remove(const RecordId& id, const Found& old) {
  if (!old.present()) return 0;
  MDB_val key = as_val(id_bytes(id));
  int rc = mdb_del(txn_, dbis_.records, &key, nullptr);
  if (rc != 0 && rc != MDB_NOTFOUND) return rc;
  // A record that does not decode leaves its index entry; the sweeper drops it when it
  // comes due and finds no record.
  if (old.record->has_value()) {
    const std::string index = expiry_key((*old.record)->expires_at, id);
    MDB_val k = as_val(index);
    rc = mdb_del(txn_, dbis_.expiry, &k, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
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
