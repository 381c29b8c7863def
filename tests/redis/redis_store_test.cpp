// The Redis store against a real redis-server: the shared conformance suite, then what only
// Redis has: round trips, script reloads, several instances on one Redis, failures.

#include "idem/redis_store.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "idem/record.hpp"
#include "idem/redis_store_asio.hpp"
#include "redis/redis_test_support.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

INSTANTIATE_TEST_SUITE_P(Redis, StoreConformanceTest,
                         ::testing::Values(StoreFactory{
                             "redis",
                             [](std::shared_ptr<ManualClock> clock) -> std::shared_ptr<Store> {
                               return redis_store(redis_options(shared_redis().port(),
                                                                fresh_prefix(), std::move(clock)));
                             }}),
                         StoreFactory::name_of);

TEST_F(RedisStoreTest, OneEvalshaPerClaimCompleteAndReplay) {
  RedisProbe probe(shared_redis().port());
  ASSERT_EQ(probe.run({"CONFIG", "RESETSTAT"}), "OK");
  const std::uint64_t token = acquire(request("k"));
  EXPECT_EQ(probe.calls("evalsha"), 1);
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  EXPECT_EQ(probe.calls("evalsha"), 2);
  auto replay = claim(request("k"));
  ASSERT_TRUE(replay.has_value() && replay->existing.has_value());
  EXPECT_EQ(replay->existing->state, RecordState::completed);
  EXPECT_EQ(probe.calls("evalsha"), 3);
  // No script was sent again (commandstats also counts the commands scripts run, so GET
  // and SET inside the scripts show there; they are not round trips).
  EXPECT_EQ(probe.calls("eval"), 0);
  EXPECT_EQ(probe.calls("script|load"), 0);
}

TEST_F(RedisStoreTest, ScriptFlushIsRecoveredByReloading) {
  RedisProbe probe(shared_redis().port());
  ASSERT_EQ(probe.run({"SCRIPT", "FLUSH"}), "OK");
  const std::uint64_t token = acquire(request("k"));
  ASSERT_EQ(probe.run({"SCRIPT", "FLUSH"}), "OK");
  EXPECT_EQ(*complete("k", token), TokenCheck::ok);
  ASSERT_EQ(probe.run({"SCRIPT", "FLUSH"}), "OK");
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->state, RecordState::completed);
}

TEST_F(RedisStoreTest, RecordsAreCodecBytesUnderAHashTaggedKeyWithAGenerousTtl) {
  const std::uint64_t token = acquire(request("k", "fp", 30s, 1h));
  ASSERT_EQ(*complete("k", token, response(), 10min), TokenCheck::ok);
  RedisProbe probe(shared_redis().port());
  const std::string raw = probe.run({"GET", key_of("k")});
  auto decoded = decode_record(raw);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ(*decoded, **got);
  // Redis's TTL is the garbage collector: the logical expiry plus the slack (1 min).
  const long pttl = std::stol(probe.run({"PTTL", key_of("k")}));
  EXPECT_LE(pttl, std::chrono::milliseconds(11min).count());
  EXPECT_GT(pttl, std::chrono::milliseconds(10min + 50s).count());
}

TEST_F(RedisStoreTest, TakeOverKeepsCreatedAt) {
  const auto start = clock_->now();
  acquire(request("k", "fp", 1s));
  clock_->advance(5s);
  auto out = claim(request("k", "fp", 1s));
  ASSERT_TRUE(out.has_value() && out->took_over);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->created_at, start);
}

TEST_F(RedisStoreTest, ValuesThatAreNotRecordsAreCorrupt) {
  RedisProbe probe(shared_redis().port());
  ASSERT_EQ(probe.run({"SET", key_of("k"), "not a record"}), "OK");
  auto got = get("k");
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Errc::corrupt_record);
  auto claimed = claim(request("k"));
  ASSERT_FALSE(claimed.has_value());
  EXPECT_EQ(claimed.error().code, Errc::corrupt_record);
  auto completed = complete("k", 1);
  ASSERT_FALSE(completed.has_value());
  EXPECT_EQ(completed.error().code, Errc::corrupt_record);
  EXPECT_TRUE(*erase("k"));  // operators can still flush it
}

TEST_F(RedisStoreTest, TwoInstancesShareOneTruth) {
  auto other = make();
  ASSERT_NE(other, nullptr);
  const std::uint64_t token = acquire(request("k"));
  auto seen = await<ClaimOutcome>([&](auto cb) { other->claim(request("k"), cb); });
  ASSERT_TRUE(seen && seen->has_value());
  EXPECT_FALSE((*seen)->acquired);
  // B completes what A claimed: the token is the record's, whoever holds it.
  auto done =
      await<TokenCheck>([&](auto cb) { other->complete(id("k"), token, response(), 1h, cb); });
  ASSERT_TRUE(done && done->has_value());
  EXPECT_EQ(**done, TokenCheck::ok);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->state, RecordState::completed);
}

TEST_F(RedisStoreTest, OnlyOneOfManyConcurrentClaimsAcrossInstancesAcquires) {
  auto other = make();
  ASSERT_NE(other, nullptr);
  constexpr int kClaims = 200;
  std::atomic<int> acquired{0}, answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Store& s = t % 2 ? static_cast<Store&>(*store_) : static_cast<Store&>(*other);
      for (int i = 0; i < kClaims / 4; ++i) {
        s.claim(request("contended"), [&](Result<ClaimOutcome> r) {
          if (r && r->acquired) acquired.fetch_add(1);
          if (r) answered.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (answered.load() < kClaims && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(answered.load(), kClaims);
  EXPECT_EQ(acquired.load(), 1);
}

TEST_F(RedisStoreTest, CompletionOnOneInstanceWakesAWatcherOnAnother) {
  auto other = make();
  ASSERT_NE(other, nullptr);
  const std::uint64_t token = acquire(request("k"));
  CallCounter calls;
  auto watch = other->watch(id("k"), calls.callback());
  // The engine's pattern: watch, then look again. The look is ordered after the SUBSCRIBE.
  auto look = await<ClaimOutcome>([&](auto cb) { other->claim(request("k"), cb); });
  ASSERT_TRUE(look && look->has_value());
  ASSERT_FALSE((*look)->acquired);
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  EXPECT_EQ(calls.wait_for(1, 2s), 1);
}

TEST_F(RedisStoreTest, EveryInstanceReadsTheSameSecret) {
  auto other = make();
  ASSERT_NE(other, nullptr);
  auto a = await<std::string>(
      [&](auto cb) { std::static_pointer_cast<RedisStore>(store_)->load_or_create_secret(cb); });
  auto b = await<std::string>([&](auto cb) { other->load_or_create_secret(cb); });
  ASSERT_TRUE(a && a->has_value() && b && b->has_value());
  EXPECT_EQ((*a)->size(), 32u);
  EXPECT_EQ(**a, **b);
  auto again = await<std::string>([&](auto cb) { other->load_or_create_secret(cb); });
  ASSERT_TRUE(again && again->has_value());
  EXPECT_EQ(**again, **a);
}

TEST_F(RedisStoreTest, ManyConcurrentClaimsArePipelinedOnThePool) {
  constexpr int kOps = 2000;
  std::atomic<int> ok{0}, answered{0};
  for (int i = 0; i < kOps; ++i) {
    store_->claim(request("p-" + std::to_string(i)), [&](Result<ClaimOutcome> r) {
      if (r && r->acquired) ok.fetch_add(1);
      answered.fetch_add(1);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (answered.load() < kOps && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(ok.load(), kOps);
  // Two pooled connections and one for pub/sub carried all of them.
  RedisProbe probe(shared_redis().port());
  const std::string clients = probe.run({"CLIENT", "LIST"});
  std::size_t pooled = 0;
  for (auto at = clients.find("name=idem-store"); at != std::string::npos;
       at = clients.find("name=idem-store", at + 1)) {
    ++pooled;
  }
  EXPECT_EQ(pooled, 2u);
  EXPECT_EQ(store_->stats().records, static_cast<std::uint64_t>(kOps));
}

TEST_F(RedisStoreTest, RunsOnTheCallersExecutor) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  auto options = redis_options(shared_redis().port(), prefix_, clock_);
  auto store = make_redis_store(options, io.get_executor());
  ASSERT_TRUE(store.has_value());
  std::thread::id ran_on;
  // Called at once: the factory does not wait for the connection, the claim does.
  auto out = await<ClaimOutcome>([&](auto cb) {
    (*store)->claim(request("k"), [&, cb](Result<ClaimOutcome> r) {
      ran_on = std::this_thread::get_id();
      cb(std::move(r));
    });
  });
  ASSERT_TRUE(out && out->has_value()) << (out ? out->error().message : "no answer");
  EXPECT_TRUE((*out)->acquired);
  EXPECT_EQ(ran_on, loop.get_id());
  store->reset();
  work.reset();
  loop.join();  // returns: the store left no work behind
}

TEST_F(RedisStoreTest, OnAnExecutorOperationsBeforeTheFirstConnectionWaitForIt) {
  boost::asio::io_context io;
  auto store =
      make_redis_store(redis_options(shared_redis().port(), prefix_, clock_), io.get_executor());
  ASSERT_TRUE(store.has_value());
  constexpr int kClaims = 20;
  int acquired = 0;
  for (int i = 0; i < kClaims; ++i) {
    (*store)->claim(request("early-" + std::to_string(i)), [&](Result<ClaimOutcome> r) {
      if (r && r->acquired) ++acquired;
    });
  }
  (*store)->close([] {});
  io.run_for(5s);
  EXPECT_EQ(acquired, kClaims) << "sent before the connection was up, answered after";
}

TEST_F(RedisStoreTest, OnAnExecutorAnUnreachableRedisFailsTheWaitingOperations) {
  boost::asio::io_context io;
  auto store = make_redis_store(redis_options(free_port(), prefix_), io.get_executor());
  ASSERT_TRUE(store.has_value());
  std::optional<Result<ClaimOutcome>> out;
  (*store)->claim(request("nobody home"), [&](Result<ClaimOutcome> got) { out = std::move(got); });
  const auto start = std::chrono::steady_clock::now();
  while (!out && std::chrono::steady_clock::now() - start < 5s) io.run_one_for(100ms);
  ASSERT_TRUE(out.has_value()) << "no answer: the operation waits past the first attempt";
  ASSERT_FALSE(out->has_value());
  EXPECT_EQ(out->error().code, Errc::store_unavailable);
  store->reset();
}

TEST_F(RedisStoreTest, CloseAnswersWhatWasSentThenLeavesTheLoopWithoutWork) {
  boost::asio::io_context io;  // no work guard: run() returns once nothing is pending
  auto store =
      make_redis_store(redis_options(shared_redis().port(), prefix_, clock_), io.get_executor());
  ASSERT_TRUE(store.has_value());
  constexpr int kClaims = 50;
  int answered = 0;
  int acquired = 0;
  for (int i = 0; i < kClaims; ++i) {
    (*store)->claim(request("close-" + std::to_string(i)), [&](Result<ClaimOutcome> r) {
      ++answered;
      if (r && r->acquired) ++acquired;
    });
  }
  bool closed = false;
  (*store)->close([&] { closed = true; });
  // After close() nothing reaches Redis: the call fails before it returns.
  std::optional<Result<ClaimOutcome>> late;
  (*store)->claim(request("after-close"), [&](Result<ClaimOutcome> r) { late = std::move(r); });
  ASSERT_TRUE(late.has_value());
  ASSERT_FALSE(late->has_value());
  EXPECT_EQ(late->error().code, Errc::store_unavailable);

  const auto start = std::chrono::steady_clock::now();
  io.run_for(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "the loop kept work after close()";
  EXPECT_TRUE(closed);
  EXPECT_EQ(answered, kClaims);
  EXPECT_EQ(acquired, kClaims) << "claims sent before close() are answered, not failed";
  // The records are in Redis, as a second store sees.
  auto other = redis_store(redis_options(shared_redis().port(), prefix_, clock_));
  auto seen = await<std::optional<Record>>([&](auto cb) { other->get(request("close-0").id, cb); });
  ASSERT_TRUE(seen && seen->has_value());
  EXPECT_TRUE((*seen)->has_value());
  store->reset();
}

TEST(RedisUrlTest, ParsesHostPortDatabaseAndCredentials) {
  auto a = parse_redis_url("redis://cache.internal:6380/3");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->host, "cache.internal");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 3);
  EXPECT_TRUE(a->password.empty());

  auto b = parse_redis_url("redis://idem:p%40ss@10.0.0.1");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->username, "idem");
  EXPECT_EQ(b->password, "p@ss");
  EXPECT_EQ(b->port, 6379);
  EXPECT_EQ(b->db, 0);

  auto c = parse_redis_url("redis://:secret@[::1]:7000/");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 7000);
  EXPECT_TRUE(c->username.empty());
  EXPECT_EQ(c->password, "secret");
}

TEST(RedisUrlTest, RefusesWhatItCannotServe) {
  for (const char* url :
       {"redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/-1", "redis://h/a",
        "http://h", "redis://h?db=1", "redis://[::1", "redis://u:%zz@h"}) {
    auto r = parse_redis_url(url);
    EXPECT_FALSE(r.has_value()) << url;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::invalid_argument);
    }
  }
  auto tls = parse_redis_url("rediss://h:6380");
  ASSERT_FALSE(tls.has_value());
  EXPECT_NE(tls.error().message.find("TLS"), std::string::npos);
}

TEST(RedisUrlTest, PasswordIsNeverInTheMessage) {
  auto r = parse_redis_url("redis://u:hunter2@h:bad");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace idem::testing
