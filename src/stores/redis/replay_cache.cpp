#include "stores/redis/replay_cache.hpp"

#include <unordered_set>
#include <utility>

namespace idem::redis {

namespace {

std::size_t size_of(const Record& r) {
  std::size_t n = sizeof(Record);
  if (r.response) {
    n += r.response->body.size();
    for (const auto& [name, value] : r.response->headers) n += name.size() + value.size();
  }
  return n;
}

}  // namespace

void ReplayCache::erase(Slots::iterator it) {
  bytes_ -= it->second.bytes;
  slots_.erase(it);
}

// order_ also names keys removed since (or, after a removal and a new fill, a key twice):
// popping those costs nothing, or evicts a key a little early.
void ReplayCache::evict_oldest() {
  if (auto it = slots_.find(order_.front()); it != slots_.end()) erase(it);
  order_.pop_front();
}

std::optional<Record> ReplayCache::find(const std::string& key, TimePoint now) {
  std::lock_guard lock(mutex_);
  if (!active_) return std::nullopt;
  auto it = slots_.find(key);
  if (it == slots_.end() || !it->second.record) return std::nullopt;
  if (it->second.record->expires_at <= now) {
    erase(it);  // expired: Redis answers from here on, as it decides expiry too
    return std::nullopt;
  }
  return it->second.record;
}

std::optional<std::uint64_t> ReplayCache::begin_fill(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (!active_ || capacity_ == 0 || slots_.contains(key)) return std::nullopt;
  while (slots_.size() >= capacity_ && !order_.empty()) evict_oldest();
  if (order_.size() > 2 * capacity_) {
    // Mostly names of removed keys or repeats: keep each present key's newest name once.
    std::deque<std::string> kept;
    std::unordered_set<std::string> seen;
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      if (slots_.contains(*it) && seen.insert(*it).second) kept.push_front(*it);
    }
    order_ = std::move(kept);
  }
  slots_[key].epoch = epoch_;
  order_.push_back(key);
  return epoch_;
}

void ReplayCache::finish_fill(const std::string& key, std::uint64_t epoch,
                              std::optional<Record> record) {
  std::lock_guard lock(mutex_);
  auto it = slots_.find(key);
  if (it == slots_.end() || it->second.record || it->second.epoch != epoch || epoch != epoch_) {
    return;  // invalidated, dropped or refilled meanwhile
  }
  const std::size_t bytes = record ? size_of(*record) + key.size() : 0;
  if (!record || record->state != RecordState::completed || bytes > max_bytes_ / 8) {
    erase(it);
    return;
  }
  it->second.record = std::move(record);
  it->second.bytes = bytes;
  bytes_ += bytes;
  // Older records make room. This one's newest name is the last (begin_fill): an older
  // name of it further ahead is a leftover, dropped without evicting it.
  while (bytes_ > max_bytes_ && order_.size() > 1) {
    if (order_.front() == key) {
      order_.pop_front();
    } else {
      evict_oldest();
    }
  }
}

void ReplayCache::invalidate(std::string_view key) {
  std::lock_guard lock(mutex_);
  if (auto it = slots_.find(std::string(key)); it != slots_.end()) erase(it);
}

void ReplayCache::set_active(bool active) {
  std::lock_guard lock(mutex_);
  active_ = active;
  drop_all();
}

void ReplayCache::clear() {
  std::lock_guard lock(mutex_);
  drop_all();
}

// Fills under way belong to the old epoch: their replies are not kept.
void ReplayCache::drop_all() {
  ++epoch_;
  slots_.clear();
  order_.clear();
  bytes_ = 0;
}

std::size_t ReplayCache::size() {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

std::size_t ReplayCache::bytes() {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace idem::redis
