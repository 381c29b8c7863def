// The Redis store's replay cache: retries of a completed request answered in this process,
// and every way a record can go (an erase here or on another instance, a DEL or FLUSHDB in
// Redis) reaching the cache through Redis's client-side caching, or emptying it when the
// invalidations cannot arrive.

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "idem/redis_store.hpp"
#include "idem/redis_store_asio.hpp"
#include "redis/redis_test_support.hpp"
#include "stores/redis/replay_cache.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class RedisReplayCacheTest : public RedisStoreTest {
 protected:
  Result<ClaimOutcome> claim_on(Store& s, std::string_view name) {
    auto out = await<ClaimOutcome>([&](auto cb) { s.claim(request(name), cb); });
    if (out) return std::move(*out);
    ADD_FAILURE() << "no answer to a claim";
    return Error{Errc::timeout, "no callback"};
  }
  /// Retries `name` on `s` until one costs no EVALSHA (the cache answered it), for up to 2 s.
  bool until_cached(Store& s, std::string_view name) {
    const auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline) {
      const long before = probe_.calls("evalsha");
      auto out = claim_on(s, name);
      if (!out || out->acquired) return false;
      if (probe_.calls("evalsha") == before) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }
  /// Claims `name` on `s` until one acquires: the record's removal reached s. Within `limit`.
  bool acquires_within(Store& s, std::string_view name, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    do {
      auto out = claim_on(s, name);
      if (out && out->acquired) return true;
      std::this_thread::sleep_for(1ms);
    } while (Clock::now() < deadline);
    return false;
  }
  void completed(std::string_view name, std::string body = "{\"id\":7}") {
    ASSERT_EQ(*complete(name, acquire(request(name)), response(201, std::move(body))),
              TokenCheck::ok);
  }
  /// Closes the connection Redis knows by `name` (CLIENT SETNAME) as if it had failed.
  void kill_client(const std::string& name) {
    const std::string list = probe_.run({"CLIENT", "LIST"});
    const auto at = list.find("name=" + name + " ");
    ASSERT_NE(at, std::string::npos) << list;
    const auto line = list.rfind('\n', at);
    const auto id_at = list.find("id=", line == std::string::npos ? 0 : line) + 3;
    const std::string client_id = list.substr(id_at, list.find(' ', id_at) - id_at);
    ASSERT_EQ(probe_.run({"CLIENT", "KILL", "ID", client_id}), "1");
  }
  void check_losing(const std::string& connection);
  /// Completes `name`, then checks that each of `retries` retries costs one EVALSHA.
  void every_retry_is_a_round_trip(std::string_view name, int retries) {
    completed(name);
    for (int i = 0; i < retries; ++i) {
      const long before = probe_.calls("evalsha");
      auto out = claim(request(name));
      ASSERT_TRUE(out.has_value() && out->existing.has_value());
      EXPECT_EQ(probe_.calls("evalsha"), before + 1);
      std::this_thread::sleep_for(5ms);  // time for a fill that should not happen
    }
  }

  RedisProbe probe_{shared_redis().port()};
};

TEST_F(RedisReplayCacheTest, RetriesOfACompletedRequestCostNoRoundTrip) {
  completed("k");
  ASSERT_TRUE(until_cached(*store_, "k"));
  const long before = probe_.calls("evalsha");
  for (int i = 0; i < 20; ++i) {
    auto out = claim(request("k"));
    ASSERT_TRUE(out.has_value() && out->existing.has_value());
    EXPECT_EQ(out->existing->state, RecordState::completed);
    ASSERT_TRUE(out->existing->response.has_value());
    EXPECT_EQ(out->existing->response->status, 201);
    EXPECT_EQ(out->existing->response->body, "{\"id\":7}");
  }
  EXPECT_EQ(probe_.calls("evalsha"), before);
  // A retry with another payload is still told of the record, to be answered 422.
  auto reused = claim(request("k", "another fingerprint"));
  ASSERT_TRUE(reused.has_value() && reused->existing.has_value());
  EXPECT_EQ(reused->existing->fingerprint, fingerprint("fp"));
  EXPECT_EQ(probe_.calls("evalsha"), before);
}

TEST_F(RedisReplayCacheTest, AnEraseHereIsSeenAtOnce) {
  completed("k");
  ASSERT_TRUE(until_cached(*store_, "k"));
  ASSERT_TRUE(*erase("k"));
  auto out = claim(request("k"));
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->acquired);
}

TEST_F(RedisReplayCacheTest, AnEraseOnAnotherInstanceReachesTheCache) {
  auto other = make();
  ASSERT_NE(other, nullptr);
  completed("k");
  ASSERT_TRUE(until_cached(*other, "k"));
  ASSERT_TRUE(*erase("k"));
  EXPECT_TRUE(acquires_within(*other, "k", 1000ms));
}

// A gateway's admin API flushes through a store of its own, beside its workers' stores.
// Redis's invalidation reaches a worker on the worker's loop, in its turn; forget_cached
// makes the removal count at once. The worker's loop is held here, so only forget_cached
// can keep the next claim from being answered from the cache.
TEST_F(RedisReplayCacheTest, ARemovalThroughAnotherStoreOfTheProcessCountsOnceForgotten) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  auto made =
      make_redis_store(redis_options(shared_redis().port(), prefix_, clock_), io.get_executor());
  ASSERT_TRUE(made.has_value());
  std::shared_ptr<RedisStore> worker = *made;
  completed("k");
  ASSERT_TRUE(until_cached(*worker, "k"));

  std::promise<void> held, release;
  boost::asio::post(io, [&] {
    held.set_value();
    release.get_future().wait();
  });
  held.get_future().wait();
  ASSERT_TRUE(*erase("k"));  // on store_, whose own thread is free
  worker->forget_cached(id("k"));
  std::promise<Result<ClaimOutcome>> answer;
  worker->claim(request("k"), [&](Result<ClaimOutcome> r) { answer.set_value(std::move(r)); });
  auto answered = answer.get_future();
  // A claim the cache answers is answered before claim() returns; one for Redis needs the
  // worker's loop.
  EXPECT_EQ(answered.wait_for(0s), std::future_status::timeout) << "answered from the cache";
  release.set_value();
  ASSERT_EQ(answered.wait_for(2s), std::future_status::ready);
  auto out = answered.get();
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_TRUE(out->acquired);

  worker->close([] {});
  worker.reset();
  work.reset();
  loop.join();  // returns: closed, the store leaves no work behind
}

TEST_F(RedisReplayCacheTest, ADeleteInRedisReachesTheCache) {
  completed("k");
  ASSERT_TRUE(until_cached(*store_, "k"));
  ASSERT_EQ(probe_.run({"DEL", key_of("k")}), "1");
  EXPECT_TRUE(acquires_within(*store_, "k", 1000ms));
}

TEST_F(RedisReplayCacheTest, AFlushOfTheDatabaseEmptiesTheCache) {
  completed("k");
  ASSERT_TRUE(until_cached(*store_, "k"));
  ASSERT_EQ(probe_.run({"FLUSHDB"}), "OK");
  EXPECT_TRUE(acquires_within(*store_, "k", 1000ms));
}

TEST_F(RedisReplayCacheTest, ExpiredRecordsAreNotAnsweredFromTheCache) {
  ASSERT_EQ(*complete("k", acquire(request("k")), response(), 10s), TokenCheck::ok);
  ASSERT_TRUE(until_cached(*store_, "k"));
  clock_->advance(11s);
  auto out = claim(request("k"));
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->acquired);
}

// While the invalidations cannot arrive, or the reads are no longer tracked, a removal
// would go unseen: the cache must empty and stay out of use until both connections are back
// and tracking again.
void RedisReplayCacheTest::check_losing(const std::string& connection) {
  completed("k");
  ASSERT_TRUE(until_cached(*store_, "k"));
  kill_client(connection);
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(probe_.run({"DEL", key_of("k")}), "1");  // Redis cannot report this one
  auto out = claim(request("k"));
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->acquired) << "answered from a cache that missed a removal";
  ASSERT_EQ(*complete("k", out->fencing_token), TokenCheck::ok);
  EXPECT_TRUE(until_cached(*store_, "k")) << "the cache did not come back";
  ASSERT_EQ(probe_.run({"DEL", key_of("k")}), "1");
  EXPECT_TRUE(acquires_within(*store_, "k", 1000ms));
}

TEST_F(RedisReplayCacheTest, LosingTheInvalidationsEmptiesTheCacheUntilTheyAreBack) {
  check_losing("idem-invalidations");
}

TEST_F(RedisReplayCacheTest, LosingTheTrackedReaderEmptiesTheCacheUntilItIsBack) {
  check_losing("idem-cache-reader");
}

TEST_F(RedisReplayCacheTest, OffEveryRetryReachesRedis) {
  store_ = make(0, 0);  // no replay cache
  every_retry_is_a_round_trip("k", 5);
  EXPECT_EQ(probe_.run({"CLIENT", "LIST"}).find("idem-invalidations"), std::string::npos);
}

/// What on_replay_cache_state said, from the store's thread.
class StateLog {
 public:
  RedisStoreOptions::OnReplayCacheState callback() {
    return [this](bool active, const std::string& why) {
      std::lock_guard lock(mutex_);
      said_.emplace_back(active, why);
      changed_.notify_all();
    };
  }
  /// Waits up to 2 s for a report of `active`; returns its reason, or nullopt.
  std::optional<std::string> wait_for(bool active) {
    std::unique_lock lock(mutex_);
    std::optional<std::string> why;
    changed_.wait_for(lock, 2s, [&] {
      for (const auto& [a, w] : said_) {
        if (a == active) why = w;
      }
      return why.has_value();
    });
    return why;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::pair<bool, std::string>> said_;
};

TEST_F(RedisReplayCacheTest, TheStoreSaysWhenTheCacheStartsAndStops) {
  StateLog log;
  RedisStoreOptions o = redis_options(shared_redis().port(), prefix_, clock_);
  o.on_replay_cache_state = log.callback();
  store_ = redis_store(o);
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(log.wait_for(true), "");
  kill_client("idem-invalidations");
  const auto why = log.wait_for(false);
  ASSERT_TRUE(why.has_value()) << "no report that the cache stopped";
  EXPECT_NE(why->find("invalidations"), std::string::npos) << *why;
}

TEST_F(RedisReplayCacheTest, AUserWhoMayNotTrackGetsRoundTripsAndAReason) {
  // The ACL a cautious operator might write: everything but CLIENT TRACKING.
  ASSERT_EQ(probe_.run({"ACL", "SETUSER", "idem-notrack", "reset", "on", ">pw", "~*", "&*", "+@all",
                        "-client|tracking"}),
            "OK");
  StateLog log;
  RedisStoreOptions o = redis_options(shared_redis().port(), prefix_, clock_);
  o.username = "idem-notrack";
  o.password = "pw";
  o.on_replay_cache_state = log.callback();
  store_ = redis_store(o);
  ASSERT_NE(store_, nullptr);
  const auto why = log.wait_for(false);
  ASSERT_TRUE(why.has_value()) << "no report of the refusal";
  EXPECT_NE(why->find("CLIENT TRACKING"), std::string::npos) << *why;
  EXPECT_NE(why->find("NOPERM"), std::string::npos) << *why;
  EXPECT_FALSE(log.wait_for(true).has_value());
  // Correct without the cache: every retry is a round trip.
  every_retry_is_a_round_trip("k", 3);
  store_.reset();
  probe_.run({"ACL", "DELUSER", "idem-notrack"});
}

// The cache on its own: the races between a read and an invalidation, and its bound.
TEST(ReplayCacheTest, AnInvalidationThatOvertakesTheReadDropsIt) {
  redis::ReplayCache cache(10, 1 << 20);
  cache.set_active(true);
  Record completed;
  completed.state = RecordState::completed;
  completed.expires_at = TimePoint::max();
  const auto epoch = cache.begin_fill("k");
  ASSERT_TRUE(epoch.has_value());
  EXPECT_FALSE(cache.begin_fill("k").has_value()) << "one read at a time";
  cache.invalidate("k");
  cache.finish_fill("k", *epoch, completed);
  EXPECT_FALSE(cache.find("k", TimePoint{}).has_value());

  const auto again = cache.begin_fill("k");
  ASSERT_TRUE(again.has_value());
  cache.set_active(true);  // what losing and regaining the invalidations does
  cache.finish_fill("k", *again, completed);
  EXPECT_FALSE(cache.find("k", TimePoint{}).has_value());

  const auto third = cache.begin_fill("k");
  cache.finish_fill("k", *third, completed);
  EXPECT_TRUE(cache.find("k", TimePoint{}).has_value());
  cache.set_active(false);
  EXPECT_FALSE(cache.find("k", TimePoint{}).has_value());
  EXPECT_FALSE(cache.begin_fill("k").has_value());
}

TEST(ReplayCacheTest, KeepsOnlyCompletedRecordsAndAtMostItsCapacity) {
  redis::ReplayCache cache(3, 1 << 20);
  cache.set_active(true);
  Record in_flight;
  const auto e = cache.begin_fill("in-flight");
  cache.finish_fill("in-flight", *e, in_flight);
  EXPECT_FALSE(cache.find("in-flight", TimePoint{}).has_value());
  Record completed;
  completed.state = RecordState::completed;
  completed.expires_at = TimePoint::max();
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 5; ++i) {
      const std::string key = "k" + std::to_string(i);
      if (auto epoch = cache.begin_fill(key)) cache.finish_fill(key, *epoch, completed);
      if (i % 2 == 0) cache.invalidate(key);
      EXPECT_LE(cache.size(), 3u);
    }
  }
  EXPECT_TRUE(cache.find("k3", TimePoint{}).has_value());
}

TEST(ReplayCacheTest, KeepsAtMostItsBytes) {
  constexpr std::size_t kMax = 64 * 1024;
  redis::ReplayCache cache(1000, kMax);
  cache.set_active(true);
  Record completed;
  completed.state = RecordState::completed;
  completed.expires_at = TimePoint::max();
  completed.response.emplace().body.assign(3000, 'x');
  for (int i = 0; i < 100; ++i) {
    const std::string key = "k" + std::to_string(i);
    const auto epoch = cache.begin_fill(key);
    ASSERT_TRUE(epoch.has_value());
    cache.finish_fill(key, *epoch, completed);
    EXPECT_LE(cache.bytes(), kMax);
    EXPECT_TRUE(cache.find(key, TimePoint{}).has_value()) << "the newest is kept";
  }
  EXPECT_GE(cache.size(), 15u);
  completed.response->body.assign(kMax / 8, 'x');  // over an eighth with the rest
  const auto epoch = cache.begin_fill("big");
  cache.finish_fill("big", *epoch, completed);
  EXPECT_FALSE(cache.find("big", TimePoint{}).has_value());
}

}  // namespace
}  // namespace idem::testing
