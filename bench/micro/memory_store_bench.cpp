// The memory store's hot paths: the first request of a key (claim + complete) and its
// retries (claim of a completed key: the replay path). Targets: claim + complete within
// 1 us on one thread, and more throughput from 2 threads than from 1 (shards, not one
// lock). Items per second is the number to compare across thread counts.

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "idem/memory_store.hpp"

namespace {

using namespace std::chrono_literals;

std::shared_ptr<idem::Store> g_store;

// Short TTL so records expire while the benchmark runs: the store stays at a steady size
// and the numbers include the expiry sweep that a long-running gateway pays too.
constexpr idem::Duration kTtl = 20ms;

// Record ids are HMACs, so their bytes look random: splitmix64 of (thread, counter) gives
// the same spread over shards and buckets.
idem::RecordId key(std::uint64_t n, int thread) {
  std::uint64_t x = n + (static_cast<std::uint64_t>(thread) << 56);
  std::array<std::uint8_t, 32> bytes{};
  for (int word = 0; word < 4; ++word) {
    x += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (int i = 0; i < 8; ++i) bytes[word * 8 + i] = static_cast<std::uint8_t>(z >> (8 * i));
  }
  return idem::Digest(bytes);
}

idem::StoredResponse small_response() {
  idem::StoredResponse r;
  r.status = 201;
  r.headers = {{"Content-Type", "application/json"}, {"Location", "/payments/42"}};
  r.body = R"({"id":42,"status":"captured"})";
  return r;
}

void make_store(const benchmark::State&) { g_store = idem::make_memory_store(); }
void drop_store(const benchmark::State&) { g_store.reset(); }

void BM_ClaimComplete(benchmark::State& state) {
  idem::Store& store = *g_store;
  const idem::StoredResponse response = small_response();
  idem::ClaimRequest request;
  request.fingerprint = key(~0ull, 0);
  request.owner = "gw-1";
  request.lease = 30s;
  request.ttl = kTtl;
  std::uint64_t n = 0;
  for (auto _ : state) {
    request.id = key(n++, state.thread_index());
    std::uint64_t token = 0;
    store.claim(request, [&](idem::Result<idem::ClaimOutcome> out) {
      if (out && out->acquired) token = out->fencing_token;
    });
    if (token == 0) {
      state.SkipWithError("claim did not acquire");
      break;
    }
    bool ok = false;
    store.complete(request.id, token, response, kTtl,
                   [&](idem::Result<idem::TokenCheck> r) { ok = r && *r == idem::TokenCheck::ok; });
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(state.iterations());
  // Live records at the end: steady, not growing, shows that expiry keeps up.
  if (state.thread_index() == 0) {
    state.counters["records"] = static_cast<double>(store.stats().records);
  }
}
BENCHMARK(BM_ClaimComplete)->Setup(make_store)->Teardown(drop_store);
BENCHMARK(BM_ClaimComplete)
    ->Setup(make_store)
    ->Teardown(drop_store)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

void BM_ClaimReplay(benchmark::State& state) {
  idem::Store& store = *g_store;
  idem::ClaimRequest request;
  request.id = key(0, state.thread_index());
  request.fingerprint = key(~0ull, 0);
  request.owner = "gw-1";
  request.lease = 30s;
  request.ttl = 1h;
  store.claim(request, [&](idem::Result<idem::ClaimOutcome> out) {
    store.complete(request.id, out->fencing_token, small_response(), 1h,
                   [](idem::Result<idem::TokenCheck>) {});
  });
  for (auto _ : state) {
    bool replayed = false;
    store.claim(request, [&](idem::Result<idem::ClaimOutcome> out) {
      replayed = out && !out->acquired && out->existing->response.has_value();
    });
    if (!replayed) {
      state.SkipWithError("claim did not report the completed record");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClaimReplay)->Setup(make_store)->Teardown(drop_store);
BENCHMARK(BM_ClaimReplay)
    ->Setup(make_store)
    ->Teardown(drop_store)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
