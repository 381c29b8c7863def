// The in-memory store. Records live in power-of-two shards picked by the id's hash, each
// under its own mutex, so unrelated keys rarely contend. Every operation is O(1), the
// expiry queue included (one FIFO per lifetime, see expiry_queue.hpp): each operation first pops
// at most kSweepBudget due items of its shard, which keeps pace with inserts without ever
// scanning. Expired records are also invisible at once: every lookup checks the time.
//
// Limits are store-wide; shards take room from them a chunk at a time (quota.hpp). When a
// claim finds no room it first reclaims every due record of its own shard, then of all
// shards, taking back their spare room (one lock at a time, never two), then gives up with
// store_full. Nothing else is ever evicted: dropping an in-flight record would let a
// duplicate through, dropping a completed one would re-execute a retry.
//
// Fencing tokens come from each shard's own counter, interleaved so that no two shards
// issue the same one: a record's tokens strictly increase, since a record stays in its
// shard, and no token is issued twice in the store.

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
        shards_(round_up_pow2(std::max<std::size_t>(options.shards, 1))),
        mask_(shards_.size() - 1),
        quota_(options.max_records, options.max_bytes, shards_.size()) {}

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
    StoreStats total;
    for (const Shard& s : shards_) {
      total.records += s.usage.records.load(std::memory_order_relaxed);
      total.bytes += s.usage.bytes.load(std::memory_order_relaxed);
    }
    return total;
  }
  std::string_view kind() const noexcept override { return "memory"; }

  void unwatch(const RecordId& id, const WatchState* state);

 private:
  Shard& shard_for(const RecordId& id) noexcept {
    // Fibonacci mixing, so that the shard and the buckets inside it use different bits.
    const std::uint64_t h = DigestHash{}(id)*0x9E3779B97F4A7C15ull;
    return shards_[(h >> 32) & mask_];
  }

  // All of the following run with the shard's mutex held.
  void sweep(Shard& s, TimePoint now, std::size_t budget);
  /// The record's entry, or null.
  Entry* find_live(Shard& s, const RecordId& id, TimePoint now);
  /// The entry of the in-flight record whose lease `token` holds, or null (stale).
  Entry* find_held(Shard& s, const RecordId& id, std::uint64_t token, TimePoint now) {
    Entry* e = find_live(s, id, now);
    return e && e->state == RecordState::in_flight && e->fencing_token == token ? e : nullptr;
  }
  void remove(Shard& s, const RecordId& id, Entry& e);
  Entry& insert(Shard& s, const RecordId& id);  ///< only when id is absent
  void requeue(Shard& s, Entry& e, const RecordId& id, Duration lifetime);
  static std::uint32_t slot_of(const Shard& s, const Entry& e) noexcept {
    return static_cast<std::uint32_t>(&e - s.entries.data());
  }
  void resize(Shard& s, Entry& e, std::size_t bytes);
  Watchers watchers_of(Shard& s, const RecordId& id);
  std::uint64_t next_token(Shard& s) noexcept;

  void reclaim_all(TimePoint now);
  Error full_error() const;
  static void notify(const Watchers& watchers) {
    for (const auto& w : watchers) w->fire();
  }

  std::shared_ptr<const Clock> clock_;
  std::vector<Shard> shards_;
  const std::size_t mask_;
  detail::Quota quota_;
};

MemoryWatch::~MemoryWatch() {
  if (auto store = store_.lock()) store->unwatch(id_, state_.get());
  state_->cancel();
}

void MemoryStore::sweep(Shard& s, TimePoint now, std::size_t budget) {
  for (; budget > 0 && s.expiry.due(now); --budget) {
    const auto item = s.expiry.pop();
    if (item.generation == ExpiryQueue::kRemoved) continue;
    Entry& e = s.entries[item.slot];
    if (e.generation != item.generation || e.queued_at != item.at) continue;  // a heap hint
    // pop() took its item.
    e.queued = nullptr;
    remove(s, item.id, e);  // a live item is due exactly when its record expires
  }
}

Entry* MemoryStore::find_live(Shard& s, const RecordId& id, TimePoint now) {
  auto it = s.slots.find(id);
  if (it == s.slots.end()) return nullptr;
  Entry& e = s.entries[it->second];
  if (e.expires_at <= now) {
    remove(s, id, e);  // expired but not swept yet: gone all the same
    return nullptr;
  }
  return &e;
}

void MemoryStore::remove(Shard& s, const RecordId& id, Entry& e) {
  quota_.give_back(s.usage, 1, e.bytes);
  s.expiry.remove(e.queued);
  s.slots.erase(id);
  e.generation = 0;
  e.queued = nullptr;
  e.response = {};
  s.free_slots.push_back(slot_of(s, e));  // room was reserved when the entry was made
}

Entry& MemoryStore::insert(Shard& s, const RecordId& id) {
  if (s.free_slots.empty()) {
    s.entries.emplace_back();
    s.free_slots.reserve(s.entries.capacity());  // room for all: remove() never allocates
    s.free_slots.push_back(static_cast<std::uint32_t>(s.entries.size() - 1));
  }
  const std::uint32_t slot = s.free_slots.back();
  s.slots.try_emplace(id, slot);
  s.free_slots.pop_back();
  return s.entries[slot];
}

// After expires_at changed to now + lifetime.
void MemoryStore::requeue(Shard& s, Entry& e, const RecordId& id, Duration lifetime) {
  if (e.expires_at != e.queued_at) {
    s.expiry.remove(e.queued);
    e.queued_at = e.expires_at;
    e.queued = s.expiry.push(lifetime, e.queued_at, e.generation, id, slot_of(s, e));
  }
}

// Never refused: see complete().
void MemoryStore::resize(Shard& s, Entry& e, std::size_t bytes) {
  if (bytes >= e.bytes) {
    quota_.take(s.usage, 0, bytes - e.bytes, true);
  } else {
    quota_.give_back(s.usage, 0, e.bytes - bytes);
  }
  e.bytes = bytes;
}

Watchers MemoryStore::watchers_of(Shard& s, const RecordId& id) {
  if (s.watchers.empty()) return {};
  auto it = s.watchers.find(id);
  return it == s.watchers.end() ? Watchers{} : it->second;
}

std::uint64_t MemoryStore::next_token(Shard& s) noexcept {
  const auto index = static_cast<std::uint64_t>(&s - shards_.data());
  return s.tokens_issued++ * shards_.size() + index + 1;
}

void MemoryStore::reclaim_all(TimePoint now) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    sweep(s, now, kSweepAll);
    quota_.return_spare(s.usage);
  }
}

Error MemoryStore::full_error() const {
  const auto st = stats();
  return Error{Errc::store_full,
               "memory store full: " + std::to_string(st.records) + " records, " +
                   std::to_string(st.bytes) + " bytes (max_records " +
                   std::to_string(quota_.max_records()) + ", max_bytes " +
                   std::to_string(quota_.max_bytes()) +
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
    if (Entry* found = find_live(s, req.id, now); found != nullptr) {
      Entry& e = *found;
      // A different fingerprint is a client reusing the key: never hand it the record,
      // report it so the caller answers key-reused.
      if (req.take_over_expired && e.lease_expired(now) && e.fingerprint == req.fingerprint) {
        e.fencing_token = next_token(s);
        e.lease_owner = std::move(req.owner);
        e.lease_expires_at = now + req.lease;
        e.expires_at = now + std::max(req.ttl, req.lease);
        requeue(s, e, req.id, std::max(req.ttl, req.lease));
        resize(s, e, entry_bytes(req.id, e));
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
    if (!quota_.take(s.usage, 1, need, false)) {
      sweep(s, now, kSweepAll);
      if (!quota_.take(s.usage, 1, need, false)) {
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
    e.fencing_token = next_token(s);
    e.lease_owner = std::move(req.owner);
    e.created_at = now;
    e.lease_expires_at = now + req.lease;
    // The record outlives its lease even with a short ttl, so a renewed lease stays valid.
    e.expires_at = now + std::max(req.ttl, req.lease);
    e.queued_at = e.expires_at;
    e.queued = s.expiry.push(std::max(req.ttl, req.lease), e.queued_at, e.generation, req.id,
                             slot_of(s, e));
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
  Entry* found = find_held(s, id, token, now);
  if (found == nullptr) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  Entry& e = *found;
  e.state = RecordState::completed;
  e.response = detail::PackedResponse(response);
  e.expires_at = now + ttl;
  requeue(s, e, id, ttl);
  // May pass max_bytes: refusing a completion would re-execute the request on retry,
  // which is worse than a store briefly over its soft byte limit.
  resize(s, e, entry_bytes(id, e) + response_bytes(response));
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
  Entry* found = find_held(s, id, token, now);
  if (found == nullptr) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  remove(s, id, *found);
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
  Entry* found = find_held(s, id, token, now);
  if (found == nullptr) {
    lock.unlock();
    done(TokenCheck::stale);
    return;
  }
  Entry& e = *found;
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
  if (const Entry* found = find_live(s, id, now); found != nullptr) {
    found->copy_to(out.emplace());
  }
  lock.unlock();
  done(std::move(out));
}

void MemoryStore::erase(const RecordId& id, Callback<bool> done) {
  const TimePoint now = clock_->now();
  Shard& s = shard_for(id);
  std::unique_lock lock(s.mutex);
  sweep(s, now, kSweepBudget);
  Entry* found = find_live(s, id, now);
  if (found == nullptr) {
    lock.unlock();
    done(false);
    return;
  }
  remove(s, id, *found);
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
