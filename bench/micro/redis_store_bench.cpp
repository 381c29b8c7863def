// The Redis store's throughput with many operations outstanding, beside the memory store
// in the same run: a fresh key (claim + complete, two round trips) and a replay (claim of
// a completed record, one round trip). Starts its own redis-server on a free port.
//
// Argument: operations kept outstanding at once (the pipelining window). The memory store
// answers inline, so its window is always one. The replay rows run without the replay
// cache, to measure the round trip; BM_RedisCachedReplay runs with it.

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "idem/memory_store.hpp"
#include "idem/redis_store.hpp"
#include "redis/redis_server.hpp"

namespace {

using namespace std::chrono_literals;

// Record ids are HMACs, uniformly random, and the memory store hashes their first bytes
// as they are: ids that share a prefix would all land in one bucket. splitmix64 spreads
// (run, n) over all 32 bytes as a real id would.
idem::RecordId id_of(std::uint64_t run, std::uint64_t n) {
  std::uint64_t x = run * 0x9E3779B97F4A7C15ull ^ n;
  std::array<std::uint8_t, 32> bytes{};
  for (int word = 0; word < 4; ++word) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (int i = 0; i < 8; ++i) bytes[word * 8 + i] = static_cast<std::uint8_t>(z >> (8 * i));
  }
  return idem::Digest(bytes);
}

idem::ClaimRequest claim_of(const idem::RecordId& id) {
  idem::ClaimRequest r;
  r.id = id;
  r.fingerprint = id_of(~0ull, 1);
  r.owner = "bench";
  r.lease = 30s;
  r.ttl = 1h;
  return r;
}

idem::StoredResponse response() {
  idem::StoredResponse r;
  r.status = 201;
  r.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", "req_8f2a"}};
  r.body = R"({"id":"ch_1","status":"succeeded","amount":1000,"currency":"eur"})";
  return r;
}

/// Keeps `window` chains of operations going until `total` were done; each chain starts
/// its next operation from the previous one's callback (on the store's thread for Redis).
class Driver {
 public:
  using Op = std::function<void(std::uint64_t i, std::function<void(bool ok)> done)>;
  Driver(std::uint64_t total, Op op) : total_(total), op_(std::move(op)) {}

  /// Returns the number of failed operations.
  std::uint64_t run(int window) {
    for (int w = 0; w < window; ++w) chain();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return finished_ == total_; });
    return errors_.load();
  }

 private:
  // Callbacks that run inline (the memory store) loop here instead of recursing.
  void chain() {
    for (;;) {
      const std::uint64_t i = next_.fetch_add(1);
      if (i >= total_) return;
      auto state = std::make_shared<std::atomic<int>>(0);  // 1: done, 2: chain() returned
      op_(i, [this, state](bool ok) {
        if (!ok) errors_.fetch_add(1);
        if (state->exchange(1) == 2) chain();
        finish();  // last: run() may return, and this Driver go, once all are finished
      });
      if (state->exchange(2) != 1) return;
    }
  }
  void finish() {
    std::lock_guard lock(mutex_);
    if (++finished_ == total_) cv_.notify_all();
  }

  const std::uint64_t total_;
  Op op_;
  std::atomic<std::uint64_t> next_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t finished_ = 0;
};

idem::testing::RedisServer& server() {
  static idem::testing::RedisServer s;
  return s;
}

std::shared_ptr<idem::Store> make(bool redis, std::size_t replay_cache = 0) {
  if (!redis) return idem::make_memory_store({.max_records = 1u << 26});
  idem::RedisStoreOptions o;
  o.port = server().port();
  o.key_prefix = "bench:";
  o.replay_cache = replay_cache;
  auto store = idem::make_redis_store(o);
  return store ? *store : nullptr;
}

constexpr std::uint64_t kBatch = 20'000;
std::atomic<std::uint64_t> g_run{1};

void fresh_keys(benchmark::State& state, bool redis) {
  auto store = make(redis);
  if (!store) return state.SkipWithError("no store");
  for (auto _ : state) {
    const std::uint64_t run = g_run.fetch_add(1);
    Driver d(kBatch, [&](std::uint64_t i, std::function<void(bool)> done) {
      const idem::RecordId id = id_of(run, i);
      store->claim(claim_of(id), [&store, id, done](idem::Result<idem::ClaimOutcome> c) {
        if (!c || !c->acquired) return done(false);
        store->complete(
            id, c->fencing_token, response(), 1h,
            [done](idem::Result<idem::TokenCheck> r) { done(r && *r == idem::TokenCheck::ok); });
      });
    });
    if (d.run(redis ? static_cast<int>(state.range(0)) : 1) != 0) {
      return state.SkipWithError("operations failed");
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["round_trips/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kBatch * 2), benchmark::Counter::kIsRate);
}

void replays(benchmark::State& state, bool redis, std::size_t replay_cache = 0) {
  auto store = make(redis, replay_cache);
  if (!store) return state.SkipWithError("no store");
  constexpr std::uint64_t kKeys = 1000;
  const std::uint64_t run = g_run.fetch_add(1);
  Driver setup(kKeys, [&](std::uint64_t i, std::function<void(bool)> done) {
    const idem::RecordId id = id_of(run, i);
    store->claim(claim_of(id), [&store, id, done](idem::Result<idem::ClaimOutcome> c) {
      if (!c || !c->acquired) return done(false);
      store->complete(id, c->fencing_token, response(), 1h,
                      [done](idem::Result<idem::TokenCheck> r) { done(r.has_value()); });
    });
  });
  if (setup.run(64) != 0) return state.SkipWithError("setup failed");
  for (auto _ : state) {
    Driver d(kBatch, [&](std::uint64_t i, std::function<void(bool)> done) {
      store->claim(claim_of(id_of(run, i % kKeys)), [done](idem::Result<idem::ClaimOutcome> c) {
        done(c && c->existing && c->existing->response);
      });
    });
    if (d.run(redis ? static_cast<int>(state.range(0)) : 1) != 0) {
      return state.SkipWithError("replays failed");
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

void BM_MemoryFreshKey(benchmark::State& state) { fresh_keys(state, false); }
void BM_RedisFreshKey(benchmark::State& state) { fresh_keys(state, true); }
void BM_MemoryReplay(benchmark::State& state) { replays(state, false); }
void BM_RedisReplay(benchmark::State& state) { replays(state, true); }
void BM_RedisCachedReplay(benchmark::State& state) { replays(state, true, 10'000); }

BENCHMARK(BM_MemoryFreshKey)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RedisFreshKey)
    ->Arg(1)
    ->Arg(16)
    ->Arg(128)
    ->Arg(512)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MemoryReplay)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RedisReplay)
    ->Arg(1)
    ->Arg(16)
    ->Arg(128)
    ->Arg(512)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RedisCachedReplay)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
