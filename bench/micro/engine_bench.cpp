// The engine's cost per request on the memory store: a fresh key (begin + complete), a
// replay, and the parts that dominate them (record naming, fingerprinting).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "idem/engine.hpp"
#include "idem/memory_store.hpp"
#include "idem/record_name.hpp"

namespace {

const std::string kBody =
    R"({"amount":1000,"currency":"eur","customer":"cus_9s6XKzkNRiz8i3","description":"Order 1234",)"
    R"("metadata":{"order_id":"6735","channel":"web"},"capture":true})";

struct Fixture {
  std::shared_ptr<idem::Engine> engine;
  std::vector<idem::HeaderField> headers;
  std::string key;

  /// With a scheduler, as in the gateway, a completion is kept until the store has it, so
  /// that a failed one can be written again (engine_settle.cpp).
  explicit Fixture(bool with_scheduler = false) {
    idem::EngineOptions o;
    o.store = idem::make_memory_store({.max_records = 1u << 26});
    o.secret = std::string(32, 'b');
    if (with_scheduler) o.scheduler = idem::make_thread_scheduler();
    engine = idem::Engine::create(std::move(o));
  }

  idem::Decision begin(const std::string& k) {
    key = k;
    headers = {{"Content-Type", "application/json"},
               {"Authorization", "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc"},
               {"Idempotency-Key", key}};
    idem::RequestView v{"POST", "/v1/payments", headers, kBody, "127.0.0.1"};
    idem::Decision out;
    engine->begin(v, [&](idem::Decision d) { out = std::move(d); });
    return out;
  }
};

void BM_EngineFreshKey(benchmark::State& state) {
  Fixture f(state.range(0) != 0);
  idem::Response response;
  response.status = 201;
  response.headers = {{"Content-Type", "application/json"}};
  response.body = R"({"id":"ch_1","status":"succeeded"})";
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto d = f.begin("fresh-" + std::to_string(n++));
    f.engine->complete(std::move(*d.ticket), response, true, {});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EngineFreshKey)->ArgName("scheduler")->Arg(0)->Arg(1);

void BM_EngineReplay(benchmark::State& state) {
  Fixture f;
  idem::Response response;
  response.status = 201;
  response.body = R"({"id":"ch_1","status":"succeeded"})";
  auto first = f.begin("replayed-key");
  f.engine->complete(std::move(*first.ticket), response, true, {});
  for (auto _ : state) {
    auto d = f.begin("replayed-key");
    benchmark::DoNotOptimize(d.response.body.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EngineReplay);

void BM_RecordName(benchmark::State& state) {
  idem::RecordNamer namer(std::string(32, 'n'));
  std::string scope = "identity";
  scope.push_back('\0');
  scope += "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc";
  for (auto _ : state)
    benchmark::DoNotOptimize(namer.name(scope, "3f2c1a7e-0000-4000-8000-000000000001"));
}
BENCHMARK(BM_RecordName);

}  // namespace

BENCHMARK_MAIN();
