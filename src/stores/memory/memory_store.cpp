// The in-memory store. Records live in power-of-two shards picked by the id's hash, each
// under its own mutex, so unrelated keys rarely contend. Every operation is O(1), the
// expiry queue included (one FIFO per lifetime, see expiry_queue.hpp): each operation first pops
// at most kSweepBudget due items of its shard, which keeps pace with inserts without ever
// scanning. Expired records are also invisible at once: every lookup checks the time.
//
// Limits are global and exact for claims: a claim reserves its record and bytes with
// atomic adds before inserting. When full it first reclaims every due record of its own
// shard, then of all shards (one lock at a time, never two), then gives up with store_full.
// Nothing else is ever evicted: dropping an in-flight record would let a duplicate through,
// dropping a completed one would re-execute a retry.

#include "idem/memory_store.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <string>
#include <utility>

#include "stores/memory/shard.hpp"
#include "stores/memory/watch_state.hpp"

namespace idem {
namespace {

using detail::Entry;
using detail::ExpiryQueue;
using detail::Shard;
using detail::Watchers;
using detail::WatchState;

// Due items popped per operation. A record has one item in the queue (two at most while
// the heap holds an old one as a hint) and its request makes two or more calls, so 4
// keeps up with any load.
constexpr std::size_t kSweepBudget = 4;
constexpr std::size_t kSweepAll = std::numeric_limits<std::size_t>::max();

std::size_t round_up_pow2(std::size_t n) {
  std::size_t p = 1;
  while (p < n && p < (std::size_t{1} << 20)) p <<= 1;
  return p;
}

std::size_t response_bytes(const StoredResponse& r) {
  std::size_t n = r.body.size();
  for (const auto& [name, value] : r.headers) n += name.size() + value.size();
  return n;
}

std::size_t entry_bytes(const RecordId& id, const Entry& e) {
  return id.size() + e.fingerprint.size() + e.lease_owner.size();
}

class MemoryStore;

class MemoryWatch final : public Watch {
 public:
  MemoryWatch(std::weak_ptr<MemoryStore> store, RecordId id, std::shared_ptr<WatchState> state)
      : store_(std::move(store)), id_(id), state_(std::move(state)) {}
  ~MemoryWatch() override;

 private:
  std::weak_ptr<MemoryStore> store_;
  RecordId id_;
  std::shared_ptr<WatchState> state_;
};

class MemoryStore final : public Store, public std::enable_shared_from_this<MemoryStore> {
 public:
  explicit MemoryStore(MemoryStoreOptions options)
      : clock_(options.clock ? std::move(options.clock) : std::make_shared<SystemClock>()),
        max_records_(options.max_records),
        max_bytes_(options.max_bytes),
        shards_(round_up_pow2(std::max<std::size_t>(options.shards, 1))),
        mask_(shards_.size() - 1) {}

  void claim(ClaimRequest request, Callback<ClaimOutcome> done) override;
  void complete(const RecordId& id, std::uint64_t token, StoredResponse response, Duration ttl,
                Callback<TokenCheck> done) override;
  void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) override;
  void renew(const RecordId& id, std::uint64_t token, Duration lease,
             Callback<TokenCheck> done) override;
  void get(const RecordId& id, Callback<std::optional<Record>> done) override;
  void erase(const RecordId& id, Callback<bool> done) override;
  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) override;
  void ping(Callback<bool> done) override { done(true); }
  StoreStats stats() const override {
    return {records_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
  }
  std::string_view kind() const noexcept override { return "memory"; }

  void unwatch(const RecordId& id, const WatchState* state);

 private:
  using Iter = decltype(Shard::records)::iterator;

  Shard& shard_for(const RecordId& id) noexcept {
    // Fibonacci mixing, so that the shard and the buckets inside it use different bits.
    const std::uint64_t h = DigestHash{}(id)*0x9E3779B97F4A7C15ull;
    return shards_[(h >> 32) & mask_];
  }

  // All of the following run with the shard's mutex held.
  void sweep(Shard& s, TimePoint now, std::size_t budget);
  Iter find_live(Shard& s, const RecordId& id, TimePoint now);
  void remove(Shard& s, Iter it);
  Entry& insert(Shard& s, const RecordId& id);  ///< only when id is absent
  void requeue(Shard& s, Entry& e, const RecordId& id, Duration lifetime);
  void resize(Entry& e, std::size_t bytes);
  Watchers watchers_of(Shard& s, const RecordId& id);

  bool reserve(std::size_t bytes) noexcept;
  void reclaim_all(TimePoint now);
  Error full_error() const;
  static void notify(const Watchers& watchers) {
    for (const auto& w : watchers) w->fire();
  }

  std::shared_ptr<const Clock> clock_;
  const std::size_t max_records_;
  const std::size_t max_bytes_;
  std::vector<Shard> shards_;
  const std::size_t mask_;
  // The store-wide counters share one cache line, away from the shards: a claim updates
  // all three, so across cores it moves one line rather than three.
  alignas(64) std::atomic<std::uint64_t> next_token_{0};
  std::atomic<std::uint64_t> records_{0};
  std::atomic<std::uint64_t> bytes_{0};
};

MemoryWatch::~MemoryWatch() {
  if (auto store = store_.lock()) store->unwatch(id_, state_.get());
  state_->cancel();
}

void MemoryStore::sweep(Shard& s, TimePoint now, std::size_t budget) {
  for (; budget > 0 && s.expiry.due(now); --budget) {
    const auto item = s.expiry.pop();
    if (item.generation == ExpiryQueue::kRemoved) continue;
    auto it = s.records.find(item.id);
    if (it == s.records.end()) continue;
    Entry& e = it->second;
    if (e.generation != item.generation || e.queued_at != item.at) continue;  // a heap hint
    // pop() took its item.
    e.queued = nullptr;
    remove(s, it);  // a live item is due exactly when its record expires
  }
}

MemoryStore::Iter MemoryStore::find_live(Shard& s, const RecordId& id, TimePoint now) {
  auto it = s.records.find(id);
  if (it != s.records.end() && it->second.expires_at <= now) {
    remove(s, it);  // expired but not swept yet: gone all the same
    return s.records.end();
  }
  return it;
}

void MemoryStore::remove(Shard& s, Iter it) {
  records_.fetch_sub(1, std::memory_order_relaxed);
  bytes_.fetch_sub(it->second.bytes, std::memory_order_relaxed);
  s.expiry.remove(it->second.queued);
  s.records.erase(it);
}

Entry& MemoryStore::insert(Shard& s, const RecordId& id) {
  return s.records.try_emplace(id).first->second;
}

// After expires_at changed to now + lifetime.
void MemoryStore::requeue(Shard& s, Entry& e, const RecordId& id, Duration lifetime) {
  if (e.expires_at != e.queued_at) {
    s.expiry.remove(e.queued);
    e.queued_at = e.expires_at;
    e.queued = s.expiry.push(lifetime, e.queued_at, e.generation, id);
  }
}

void MemoryStore::resize(Entry& e, std::size_t bytes) {
  if (bytes >= e.bytes) {
    bytes_.fetch_add(bytes - e.bytes, std::memory_order_relaxed);
  } else {
    bytes_.fetch_sub(e.bytes - bytes, std::memory_order_relaxed);
  }
  e.bytes = bytes;
}

Watchers MemoryStore::watchers_of(Shard& s, const RecordId& id) {
  if (s.watchers.empty()) return {};
  auto it = s.watchers.find(id);
  return it == s.watchers.end() ? Watchers{} : it->second;
}

bool MemoryStore::reserve(std::size_t bytes) noexcept {
  if (records_.fetch_add(1, std::memory_order_relaxed) + 1 > max_records_) {
    records_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  if (bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes > max_bytes_) {
    bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    records_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void MemoryStore::reclaim_all(TimePoint now) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    sweep(s, now, kSweepAll);
  }
}

Error MemoryStore::full_error() const {
  const auto st = stats();
  return Error{Errc::store_full,
               "memory store full: " + std::to_string(st.records) + " records, " +
                   std::to_string(st.bytes) + " bytes (max_records " +
                   std::to_string(max_records_) + ", max_bytes " + std::to_string(max_bytes_) +
                   "); in-flight and unexpired completed records are never evicted"};
}

void MemoryStore::claim(ClaimRequest req, Callback<ClaimOutcome> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(req.id);
  const std::size_t need = req.id.size() + req.fingerprint.size() + req.owner.size();
  for (bool reclaimed = false;; reclaimed = true) {
    std::unique_lock lock(s.mutex);
    sweep(s, now, kSweepBudget);
    ClaimOutcome out;
    if (auto it = find_live(s, req.id, now); it != s.records.end()) {
      Entry& e = it->second;
      // A different fingerprint is a client reusing the key: never hand it the record,
      // report it so the caller answers key-reused.
      if (req.take_over_expired && e.lease_expired(now) && e.fingerprint == req.fingerprint) {
        e.fencing_token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
        e.lease_owner = std::move(req.owner);
        e.lease_expires_at = now + req.lease;
        e.expires_at = now + std::max(req.ttl, req.lease);
        requeue(s, e, req.id, std::max(req.ttl, req.lease));
        resize(e, entry_bytes(req.id, e));
        out.acquired = true;
        out.took_over = true;
        out.fencing_token = e.fencing_token;
      } else {
        e.copy_to(out.existing.emplace());
      }
      lock.unlock();
      done(std::move(out));
      return;
    }
    if (!reserve(need)) {
      sweep(s, now, kSweepAll);
      if (!reserve(need)) {
        lock.unlock();
        if (!reclaimed) {
          reclaim_all(now);
          continue;  // someone may have claimed the id meanwhile: look again
        }
        done(full_error());
        return;
      }
    }
    Entry& e = insert(s, req.id);
    e.generation = s.next_generation++;
    e.bytes = need;
    e.state = RecordState::in_flight;
    e.fingerprint = req.fingerprint;
    e.fencing_token = next_token_.fetch_add(1, std::memory_order_relaxed) + 1;
    e.lease_owner = std::move(req.owner);
    e.created_at = now;
    e.lease_expires_at = now + req.lease;
    // The record outlives its lease even with a short ttl, so a renewed lease stays valid.
    e.expires_at = now + std::max(req.ttl, req.lease);
    e.queued_at = e.expires_at;
    e.queued = s.expiry.push(std::max(req.ttl, req.lease), e.queued_at, e.generation, req.id);
    out.acquired = true;
    out.fencing_token = e.fencing_token;
    lock.unlock();
    done(std::move(out));
    return;
  }
}

void MemoryStore::complete(const RecordId& id, std::uint64_t token, StoredResponse response,
                           Duration ttl, Callback<TokenCheck> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  auto it = find_live(s, id, now);
  if (it == s.records.end() || it->second.state != RecordState::in_flight ||
      it->second.fencing_token != token) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  Entry& e = it->second;
  e.state = RecordState::completed;
  e.response = detail::PackedResponse(response);
  e.expires_at = now + ttl;
  requeue(s, e, id, ttl);
  // May pass max_bytes: refusing a completion would re-execute the request on retry,
  // which is worse than a store briefly over its soft byte limit.
  resize(e, entry_bytes(id, e) + response_bytes(response));
  Watchers watchers = watchers_of(s, id);
  lock.unlock();
  notify(watchers);
  done(TokenCheck::ok);
}

void MemoryStore::release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  auto it = find_live(s, id, now);
  if (it == s.records.end() || it->second.state != RecordState::in_flight ||
      it->second.fencing_token != token) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  remove(s, it);
  Watchers watchers = watchers_of(s, id);
  lock.unlock();
  notify(watchers);
  done(TokenCheck::ok);
}

void MemoryStore::renew(const RecordId& id, std::uint64_t token, Duration lease,
                        Callback<TokenCheck> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  auto it = find_live(s, id, now);
  if (it == s.records.end() || it->second.state != RecordState::in_flight ||
      it->second.fencing_token != token) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  Entry& e = it->second;
  e.lease_expires_at = now + lease;
  if (e.lease_expires_at > e.expires_at) {
    e.expires_at = e.lease_expires_at;
    requeue(s, e, id, lease);
  }
  lock.unlock();
  done(TokenCheck::ok);
}

void MemoryStore::get(const RecordId& id, Callback<std::optional<Record>> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  std::optional<Record> out;
  if (auto it = find_live(s, id, now); it != s.records.end()) it->second.copy_to(out.emplace());
  lock.unlock();
  done(std::move(out));
}

void MemoryStore::erase(const RecordId& id, Callback<bool> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  auto it = find_live(s, id, now);
  if (it == s.records.end()) {
    lock.unlock();
    done(false);
    return;
  }
  remove(s, it);
  Watchers watchers = watchers_of(s, id);
  lock.unlock();
  notify(watchers);
  done(true);
}

std::unique_ptr<Watch> MemoryStore::watch(const RecordId& id, std::function<void()> changed) {
  auto state = std::make_shared<WatchState>(std::move(changed));
  Shard& s = shard_for(id);
  {
    std::lock_guard lock(s.mutex);
    s.watchers[id].push_back(state);
  }
  return std::make_unique<MemoryWatch>(weak_from_this(), id, std::move(state));
}

void MemoryStore::unwatch(const RecordId& id, const WatchState* state) {
  Shard& s = shard_for(id);
  std::lock_guard lock(s.mutex);
  auto it = s.watchers.find(id);
  if (it == s.watchers.end()) return;
  auto& list = it->second;
  list.erase(
      std::remove_if(list.begin(), list.end(), [&](const auto& w) { return w.get() == state; }),
      list.end());
  if (list.empty()) s.watchers.erase(it);
}

}  // namespace

std::shared_ptr<Store> make_memory_store(MemoryStoreOptions options) {
  return std::make_shared<MemoryStore>(std::move(options));
}

}  // namespace idem
