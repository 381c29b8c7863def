#include "stores/redis/replay_cache.hpp"

#include <unordered_set>
#include <utility>

namespace idem::redis {

std::optional<Record> ReplayCache::find(const std::string& key, TimePoint now) {
  std::lock_guard lock(mutex_);
  if (!active_) return std::nullopt;
  auto it = slots_.find(key);
  if (it == slots_.end() || !it->second.record) return std::nullopt;
  if (it->second.record->expires_at <= now) {
    slots_.erase(it);  // expired: Redis answers from here on, as it decides expiry too
    return std::nullopt;
  }
  return it->second.record;
}

std::optional<std::uint64_t> ReplayCache::begin_fill(const std::string& key) {
  std::lock_guard lock(mutex_);
  if (!active_ || capacity_ == 0 || slots_.contains(key)) return std::nullopt;
  // Oldest out first. order_ also names keys removed since (or, after a removal and a new
  // fill, a key twice): popping those costs nothing, or evicts a key a little early.
  while (slots_.size() >= capacity_ && !order_.empty()) {
    slots_.erase(order_.front());
    order_.pop_front();
  }
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
  if (!record || record->state != RecordState::completed) {
    slots_.erase(it);
    return;
  }
  it->second.record = std::move(record);
}

void ReplayCache::invalidate(std::string_view key) {
  std::lock_guard lock(mutex_);
  if (auto it = slots_.find(std::string(key)); it != slots_.end()) slots_.erase(it);
}

void ReplayCache::set_active(bool active) {
  std::lock_guard lock(mutex_);
  active_ = active;
  ++epoch_;
  slots_.clear();
  order_.clear();
}

std::size_t ReplayCache::size() {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

}  // namespace idem::redis
