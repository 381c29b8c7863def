// The LMDB store's cost: fresh records (claim + complete) with many operations outstanding,
// so that group commit shows, in both durabilities; and replays (a claim that finds a
// completed record), next to the memory store's in the same run.
//
//   build/lm/bench/lmdb_store_bench --benchmark_min_time=2
//
// Data goes to a scratch directory under $TMPDIR (default /tmp): put it on the disk you
// mean to measure; a tmpfs makes power durability look free.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "idem/engine.hpp"
#include "idem/lmdb_store.hpp"
#include "idem/memory_store.hpp"

namespace {

namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "idem-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

idem::RecordId id_of(std::uint64_t n) {
  std::uint8_t bytes[32] = {};
  std::memcpy(bytes, &n, sizeof n);
  bytes[31] = 0x1d;
  return idem::RecordId(bytes);
}

idem::ClaimRequest request(const idem::RecordId& id) {
  idem::ClaimRequest r;
  r.id = id;
  r.fingerprint = id;
  r.owner = "bench-gw";
  r.lease = std::chrono::seconds(30);
  r.ttl = std::chrono::hours(24);
  return r;
}

// What an API answers to a payment: a small JSON body and a few headers.
idem::StoredResponse response() {
  idem::StoredResponse r;
  r.status = 201;
  r.headers = {{"Content-Type", "application/json"},
               {"X-Request-Id", "req_8d1f0c2b9a"},
               {"Cache-Control", "no-store"}};
  r.body =
      R"({"id":"ch_3MmlLrLkdIwHu7ix0snN0B15","amount":1000,"currency":"eur","status":"succeeded"})";
  return r;
}

// Bounds the operations in flight, and waits for the last of them.
class Window {
 public:
  explicit Window(int size) : free_(size), size_(size) {}
  void take() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void give() {
    std::lock_guard lock(mutex_);
    ++free_;
    cv_.notify_all();
  }
  void drain() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return free_ == size_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int free_;
  const int size_;
};

// Claim, then complete from the claim's callback, with state.range(0) records outstanding.
void fresh_records(benchmark::State& state, idem::Durability durability) {
  ScratchDir dir;
  idem::LmdbStoreOptions options;
  options.path = dir.path();
  options.durability = durability;
  auto store = idem::make_lmdb_store(options);
  Window window(static_cast<int>(state.range(0)));
  std::atomic<std::uint64_t> failures{0};
  const idem::StoredResponse resp = response();
  std::uint64_t n = 0;
  const auto before = store->counters();
  for (auto _ : state) {
    window.take();
    const idem::RecordId id = id_of(n++);
    store->claim(request(id), [&, id](idem::Result<idem::ClaimOutcome> r) {
      if (!r || !r->acquired) {
        failures.fetch_add(1);
        window.give();
        return;
      }
      store->complete(id, r->fencing_token, resp, std::chrono::hours(24),
                      [&](idem::Result<idem::TokenCheck> done) {
                        if (!done || *done != idem::TokenCheck::ok) failures.fetch_add(1);
                        window.give();
                      });
    });
  }
  window.drain();
  const auto after = store->counters();
  state.SetItemsProcessed(state.iterations());
  // Under power, batches of held completions are logged with no transaction.
  if (after.transactions > before.transactions) {
    state.counters["ops_per_txn"] = static_cast<double>(after.operations - before.operations) /
                                    static_cast<double>(after.transactions - before.transactions);
  }
  state.counters["syncs"] = static_cast<double>(after.syncs - before.syncs);
  if (durability == idem::Durability::power) {
    // Claims held in memory, and those still in flight after lease_write_delay.
    state.counters["leases_held"] = static_cast<double>(after.leases_held - before.leases_held);
    state.counters["leases_written"] =
        static_cast<double>(after.leases_written - before.leases_written);
    // Their completions, logged and held until a fold writes them to data.mdb.
    state.counters["completions_held"] =
        static_cast<double>(after.completions_held - before.completions_held);
    state.counters["folds"] = static_cast<double>(after.folds - before.folds);
  }
  if (failures.load() != 0) state.SkipWithError("operations failed");
}

void BM_LmdbFreshProcess(benchmark::State& state) {
  fresh_records(state, idem::Durability::process);
}
void BM_LmdbFreshPower(benchmark::State& state) { fresh_records(state, idem::Durability::power); }
BENCHMARK(BM_LmdbFreshProcess)->Arg(1)->Arg(64)->Arg(512)->UseRealTime();
BENCHMARK(BM_LmdbFreshPower)->Arg(1)->Arg(64)->Arg(512)->UseRealTime();

// One completed record per thread, claimed again and again: what every replay costs.
void replay(benchmark::State& state, idem::Store& store) {
  const idem::RecordId id = id_of(1'000'000'000 + static_cast<std::uint64_t>(state.thread_index()));
  std::mutex m;
  std::condition_variable cv;
  bool ready = false;
  auto finish = [&] {
    std::lock_guard lock(m);
    ready = true;
    cv.notify_all();
  };
  store.claim(request(id), [&](idem::Result<idem::ClaimOutcome> r) {
    if (!r || !r->acquired) return finish();  // completed by an earlier run
    store.complete(id, r->fencing_token, response(), std::chrono::hours(24),
                   [&](idem::Result<idem::TokenCheck>) { finish(); });
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return ready; });
  }
  for (auto _ : state) {
    store.claim(request(id), [&](idem::Result<idem::ClaimOutcome> r) {
      if (!r || r->acquired || !r->existing) return state.SkipWithError("not a replay");
      benchmark::DoNotOptimize(r->existing->response->body.data());
    });
  }
  state.SetItemsProcessed(state.iterations());
}

// One store of each kind for the whole run (static initialisation is thread-safe), so the
// threads of a multi-threaded run share it.
void BM_ReplayMemory(benchmark::State& state) {
  static const auto store = idem::make_memory_store();
  replay(state, *store);
}
BENCHMARK(BM_ReplayMemory)->Threads(1)->Threads(2);

void BM_ReplayLmdb(benchmark::State& state) {
  struct Fixture {
    ScratchDir dir;
    std::shared_ptr<idem::Store> store;
    Fixture() {
      idem::LmdbStoreOptions options;
      options.path = dir.path();
      store = idem::make_lmdb_store(options);
    }
  };
  static Fixture fixture;
  replay(state, *fixture.store);
}
BENCHMARK(BM_ReplayLmdb)->Threads(1)->Threads(2);

// The same replay through the engine (record naming, fingerprint, the store, the replayed
// response), which is what a gateway's replay costs before HTTP.
const std::string kBody =
    R"({"amount":1000,"currency":"eur","customer":"cus_9s6XKzkNRiz8i3","description":"Order 1234",)"
    R"("metadata":{"order_id":"6735","channel":"web"},"capture":true})";

void engine_replay(benchmark::State& state, std::shared_ptr<idem::Store> store) {
  idem::EngineOptions o;
  o.store = std::move(store);
  o.secret = std::string(32, 'b');
  auto engine = idem::Engine::create(std::move(o));
  const std::vector<idem::HeaderField> headers = {
      {"Content-Type", "application/json"},
      {"Authorization", "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc"},
      {"Idempotency-Key", "3f2c1a7e-0000-4000-8000-000000000001"}};
  const idem::RequestView request{"POST", "/v1/payments", headers, kBody, "127.0.0.1"};
  {
    std::promise<idem::Decision> first;
    engine->begin(request, [&](idem::Decision d) { first.set_value(std::move(d)); });
    idem::Decision d = first.get_future().get();
    if (d.ticket) {
      idem::Response response;
      response.status = 201;
      response.headers = {{"Content-Type", "application/json"}};
      response.body = R"({"id":"ch_1","status":"succeeded"})";
      std::promise<void> stored;
      engine->complete(std::move(*d.ticket), response, true,
                       [&](idem::Result<idem::Completion>) { stored.set_value(); });
      stored.get_future().wait();
    }
  }
  for (auto _ : state) {
    idem::Decision out;
    engine->begin(request, [&](idem::Decision d) { out = std::move(d); });
    if (out.outcome != idem::Outcome::replayed) return state.SkipWithError("not a replay");
    benchmark::DoNotOptimize(out.response.body.data());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EngineReplayMemory(benchmark::State& state) {
  engine_replay(state, idem::make_memory_store());
}
BENCHMARK(BM_EngineReplayMemory);

void BM_EngineReplayLmdb(benchmark::State& state) {
  ScratchDir dir;
  idem::LmdbStoreOptions options;
  options.path = dir.path();
  engine_replay(state, idem::make_lmdb_store(options));
}
BENCHMARK(BM_EngineReplayLmdb);

}  // namespace

BENCHMARK_MAIN();
