#include "stores/memory/quota.hpp"

#include <algorithm>

namespace idem::detail {
namespace {

std::size_t chunk_of(std::size_t limit, std::size_t shards, std::size_t cap) {
  return std::min(cap, limit / (shards * 64));
}

// Adds n to a store-wide reservation unless that passes max (or `force`).
bool reserve(std::atomic<std::size_t>& reserved, std::size_t n, std::size_t max, bool force) {
  if (n == 0) return true;
  if (reserved.fetch_add(n, std::memory_order_relaxed) + n > max && !force) {
    reserved.fetch_sub(n, std::memory_order_relaxed);
    return false;
  }
  return true;
}

// Short of spare room: the shortfall plus a chunk, or, near the limit, the shortfall alone.
bool refill(std::atomic<std::size_t>& reserved, std::size_t& spare, std::size_t want,
            std::size_t chunk, std::size_t max, bool force) {
  if (spare >= want) return true;
  const std::size_t shortfall = want - spare;
  if (reserve(reserved, shortfall + chunk, max, force)) {
    spare += shortfall + chunk;
    return true;
  }
  if (chunk == 0 || !reserve(reserved, shortfall, max, force)) return false;
  spare += shortfall;
  return true;
}

// Keeps at most two chunks spare, so that little of a limit sits idle in one shard.
void trim(std::atomic<std::size_t>& reserved, std::size_t& spare, std::size_t chunk) {
  if (spare > 2 * chunk) {
    reserved.fetch_sub(spare - chunk, std::memory_order_relaxed);
    spare = chunk;
  }
}

// Single writer (the shard's mutex holder): a plain store, no read-modify-write.
void add_relaxed(std::atomic<std::size_t>& a, std::size_t n) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
void sub_relaxed(std::atomic<std::size_t>& a, std::size_t n) {
  a.store(a.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

}  // namespace

Quota::Quota(std::size_t max_records, std::size_t max_bytes, std::size_t shards) noexcept
    : max_records_(max_records),
      max_bytes_(max_bytes),
      chunk_records_(chunk_of(max_records, shards, 64)),
      chunk_bytes_(chunk_of(max_bytes, shards, 64 * 1024)) {}

bool Quota::take(ShardUsage& u, std::size_t records, std::size_t bytes, bool force) noexcept {
  if (!refill(reserved_records_, u.spare_records, records, chunk_records_, max_records_, force) ||
      !refill(reserved_bytes_, u.spare_bytes, bytes, chunk_bytes_, max_bytes_, force)) {
    return false;  // what was taken stays spare
  }
  u.spare_records -= records;
  u.spare_bytes -= bytes;
  add_relaxed(u.records, records);
  add_relaxed(u.bytes, bytes);
  return true;
}

void Quota::give_back(ShardUsage& u, std::size_t records, std::size_t bytes) noexcept {
  sub_relaxed(u.records, records);
  sub_relaxed(u.bytes, bytes);
  u.spare_records += records;
  u.spare_bytes += bytes;
  trim(reserved_records_, u.spare_records, chunk_records_);
  trim(reserved_bytes_, u.spare_bytes, chunk_bytes_);
}

void Quota::return_spare(ShardUsage& u) noexcept {
  reserved_records_.fetch_sub(u.spare_records, std::memory_order_relaxed);
  reserved_bytes_.fetch_sub(u.spare_bytes, std::memory_order_relaxed);
  u.spare_records = 0;
  u.spare_bytes = 0;
}

}  // namespace idem::detail
