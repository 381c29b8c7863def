// The LMDB store's reads, on the callers' threads: pooled read transactions, the record
// cache and what keeps it exact, and the watchers the writer wakes.

#include <utility>

#include "stores/lmdb/core.hpp"

namespace idem::lmdb {

Result<void> Core::read_live(const RecordId& id, TimePoint now, std::optional<Record>& out) {
  out.reset();
  if (cache_.enabled() && latest_txnid() == known_txnid_.load(std::memory_order_acquire) &&
      cache_.find(id, out)) {
    if (now >= out->expires_at) out.reset();
    return {};
  }
  ReadTxn txn(reads_);
  if (txn.rc() != 0) return error_of(txn.rc());
  std::size_t size = 0;
  auto found = read_record(txn.get(), env_->dbis().records, id, &size);
  if (!found) {
    if (found.error().code != Errc::corrupt_record) return found.error();
    return Error{Errc::corrupt_record, "lmdb record " + id.hex() + ": " + found.error().message};
  }
  // Expired is absent on every path, whether or not the sweeper got there yet.
  if (!*found || now >= (*found)->expires_at) return {};
  // Completed records change only by going away, which makes them worth keeping.
  if ((*found)->state == RecordState::completed && cache_.enabled()) {
    cache_.insert_if_latest(id, **found, size, mdb_txn_id(txn.get()),
                            [this] { return latest_txnid(); });
  }
  out = std::move(*found);
  return {};
}

std::uint64_t Core::latest_txnid() const {
  MDB_envinfo info;
  mdb_env_info(env_->get(), &info);
  return info.me_last_txnid;
}

void Core::commit_to_cache(std::span<const RecordId> changed, std::uint64_t txnid) {
  if (!cache_.enabled()) return;
  for (const RecordId& id : changed) cache_.erase(id);
  known_txnid_.store(txnid, std::memory_order_release);
}

void Core::resync_cache() {
  if (!cache_.enabled()) return;
  const std::uint64_t latest = latest_txnid();
  if (latest == known_txnid_.load(std::memory_order_acquire)) return;
  cache_.clear();
  known_txnid_.store(latest, std::memory_order_release);
}

Result<void> Core::ping() {
  ReadTxn txn(reads_);
  if (txn.rc() != 0) return error_of(txn.rc());
  return {};
}

std::shared_ptr<detail::WatchState> Core::add_watch(const RecordId& id, std::function<void()> fn) {
  auto state = std::make_shared<detail::WatchState>(std::move(fn));
  std::lock_guard lock(watch_mutex_);
  watchers_[id].push_back(state);
  return state;
}

void Core::remove_watch(const RecordId& id, const detail::WatchState* state) {
  std::lock_guard lock(watch_mutex_);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  auto& list = it->second;
  std::erase_if(list, [&](const auto& w) { return w.get() == state; });
  if (list.empty()) watchers_.erase(it);
}

void Core::notify(const RecordId& id) {
  std::vector<std::shared_ptr<detail::WatchState>> list;
  {
    std::lock_guard lock(watch_mutex_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    list = it->second;
  }
  for (const auto& w : list) w->fire();  // outside the lock: a callback may unwatch
}

}  // namespace idem::lmdb
