// Two engines (two gateways) on one Redis, end to end through the engine: they name records
// alike with the shared secret, and a duplicate waiting on one is woken by the other's
// completion through pub/sub, well before the engine's fallback re-check.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "idem/engine.hpp"
#include "idem/redis_store.hpp"
#include "idem/scheduler.hpp"
#include "redis/redis_test_support.hpp"
#include "unit/engine_test_support.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

struct Gateway {
  std::shared_ptr<RedisStore> store;
  std::shared_ptr<Engine> engine;
};

Gateway gateway(const std::string& prefix, const std::string& name) {
  Gateway g;
  g.store = redis_store(redis_options(shared_redis().port(), prefix));
  if (!g.store) return g;
  auto secret = await<std::string>([&](auto cb) { g.store->load_or_create_secret(cb); });
  if (!secret || !secret->has_value()) {
    ADD_FAILURE() << "no secret";
    return g;
  }
  EngineOptions o;
  o.store = g.store;
  o.secret = **secret;
  o.policies.defaults.concurrency = Concurrency::wait;
  o.scheduler = make_thread_scheduler();
  o.instance_id = name;
  g.engine = Engine::create(std::move(o));
  return g;
}

std::future<Decision> begin(Engine& engine, const TestRequest& request) {
  auto promise = std::make_shared<std::promise<Decision>>();
  request.visit([&](const RequestView& v) {
    engine.begin(v, [promise](Decision d) { promise->set_value(std::move(d)); });
  });
  return promise->get_future();
}

TEST(RedisEngineTest, ADuplicateWaitingOnOneGatewayIsWokenByTheOther) {
  const std::string prefix = fresh_prefix();
  Gateway a = gateway(prefix, "gw-a");
  Gateway b = gateway(prefix, "gw-b");
  ASSERT_TRUE(a.engine && b.engine);
  EXPECT_EQ(a.engine->record_id("Bearer t", "pay-1"), b.engine->record_id("Bearer t", "pay-1"));

  TestRequest request;
  request.key("pay-1").with("Authorization", "Bearer t").json(R"({"amount":1000})");
  auto first = begin(*a.engine, request);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  Decision original = first.get();
  ASSERT_EQ(original.action, Decision::Action::proceed);

  const auto waiting_since = Steady::now();
  auto duplicate = begin(*b.engine, request);
  EXPECT_EQ(duplicate.wait_for(150ms), std::future_status::timeout) << "did not wait";

  Response response;
  response.status = 201;
  response.headers = {{"Content-Type", "application/json"}};
  response.body = R"({"id":"pay_1"})";
  std::promise<Result<Completion>> stored;
  a.engine->complete(std::move(*original.ticket), response, true,
                     [&](Result<Completion> c) { stored.set_value(std::move(c)); });
  auto completion = stored.get_future().get();
  ASSERT_TRUE(completion.has_value());
  ASSERT_EQ(*completion, Completion::stored);

  ASSERT_EQ(duplicate.wait_for(5s), std::future_status::ready);
  const auto waited = Steady::now() - waiting_since;
  Decision replay = duplicate.get();
  EXPECT_EQ(replay.outcome, Outcome::replayed);
  EXPECT_EQ(replay.response.status, 201);
  EXPECT_EQ(replay.response.body, response.body);
  EXPECT_EQ(header_of(replay.response, "Idempotent-Replayed"), "true");
  // The engine re-checks by itself every second; a wake-up by pub/sub is much sooner.
  EXPECT_LT(waited, 800ms);
}

}  // namespace
}  // namespace idem::testing
