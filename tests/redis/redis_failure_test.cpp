// Redis going away, hanging and coming back: operations fail fast and within their
// timeouts, nothing crashes or hangs, and the store recovers by itself. Each test owns its
// redis-server, since it kills it.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "idem/redis_store.hpp"
#include "redis/redis_test_support.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class RedisFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_ = redis_options(server_.port(), fresh_prefix());
    options_.command_timeout = 300ms;
    store_ = redis_store(options_);
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(ping());
  }

  bool ping() {
    auto r = await<bool>([&](auto cb) { store_->ping(cb); }, 5s);
    return r && r->has_value() && **r;
  }
  static ClaimRequest request(const std::string& key) {
    ClaimRequest r;
    r.id = digest_of(key, 0x1d);
    r.fingerprint = digest_of("fp", 0xf9);
    r.owner = "gw";
    r.lease = 30s;
    r.ttl = 1h;
    return r;
  }
  /// Claims and returns the result with how long the callback took.
  std::pair<std::optional<Result<ClaimOutcome>>, Clock::duration> timed_claim(
      const std::string& key) {
    const auto start = Clock::now();
    auto r = await<ClaimOutcome>([&](auto cb) { store_->claim(request(key), cb); }, 5s);
    return {std::move(r), Clock::now() - start};
  }

  RedisServer server_;
  RedisStoreOptions options_;
  std::shared_ptr<RedisStore> store_;
};

TEST_F(RedisFailureTest, KilledRedisFailsFastAndPingSaysFalse) {
  server_.kill();
  std::this_thread::sleep_for(50ms);  // let the reset reach the client
  for (int i = 0; i < 20; ++i) {
    auto [r, took] = timed_claim("k" + std::to_string(i));
    ASSERT_TRUE(r.has_value()) << "no callback";
    ASSERT_FALSE(r->has_value());
    const Errc code = r->error().code;
    EXPECT_TRUE(code == Errc::store_unavailable || code == Errc::timeout) << r->error().message;
    EXPECT_LT(took, options_.command_timeout + 200ms);
  }
  EXPECT_FALSE(ping());
}

TEST_F(RedisFailureTest, RestartedRedisIsUsedAgainWithinTwoSeconds) {
  server_.kill();
  std::this_thread::sleep_for(1500ms);  // let the backoff grow to its cap
  ASSERT_TRUE(server_.start());
  const auto restarted = Clock::now();
  bool recovered = false;
  while (Clock::now() - restarted < 2s) {
    auto [r, took] = timed_claim("after");
    if (r && r->has_value()) {
      recovered = true;
      EXPECT_TRUE((*r)->acquired);  // the restarted Redis is empty: scripts were reloaded
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(recovered) << "not recovered within 2 s of the restart";
  EXPECT_TRUE(ping());
}

TEST_F(RedisFailureTest, HungRedisTimesOutAndRecoversWhenItAnswersAgain) {
  server_.pause();
  auto [r, took] = timed_claim("k");
  ASSERT_TRUE(r.has_value()) << "no callback";
  ASSERT_FALSE(r->has_value());
  EXPECT_TRUE(r->error().code == Errc::timeout || r->error().code == Errc::store_unavailable)
      << r->error().message;
  EXPECT_GE(took, options_.command_timeout - 50ms);
  EXPECT_LT(took, options_.command_timeout + 700ms);  // generous: sanitizers, a loaded CI
  EXPECT_FALSE(ping());
  server_.resume();
  const auto resumed = Clock::now();
  bool recovered = false;
  while (Clock::now() - resumed < 3s && !recovered) {
    auto [again, t] = timed_claim("k2");
    recovered = again && again->has_value();
    if (!recovered) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(recovered);
}

TEST_F(RedisFailureTest, InFlightCommandsFailWhenRedisDies) {
  std::atomic<int> failed{0}, answered{0};
  server_.pause();
  for (int i = 0; i < 100; ++i) {
    store_->claim(request("k" + std::to_string(i)), [&](Result<ClaimOutcome> r) {
      if (!r) failed.fetch_add(1);
      answered.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(50ms);
  server_.kill();
  const auto deadline = Clock::now() + 2s;
  while (answered.load() < 100 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(answered.load(), 100);
  EXPECT_EQ(failed.load(), 100);
}

TEST_F(RedisFailureTest, StoreIsDestroyedCleanlyWhileRedisIsDown) {
  server_.kill();
  std::atomic<int> answered{0};
  for (int i = 0; i < 10; ++i) {
    store_->claim(request("k"), [&](Result<ClaimOutcome>) { answered.fetch_add(1); });
  }
  store_.reset();  // joins its thread; every callback was called
  EXPECT_EQ(answered.load(), 10);
}

TEST(RedisStartTest, UnreachableRedisIsNotAStartupError) {
  auto options = redis_options(free_port(), fresh_prefix());
  options.connect_timeout = 200ms;
  const auto start = Clock::now();
  auto store = make_redis_store(options);
  ASSERT_TRUE(store.has_value());
  EXPECT_LT(Clock::now() - start, 1s);
  auto r = await<ClaimOutcome>(
      [&](auto cb) {
        ClaimRequest req;
        req.id = digest_of("k", 1);
        req.lease = 1s;
        req.ttl = 1s;
        (*store)->claim(req, cb);
      },
      2s);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(r->has_value());
  EXPECT_EQ(r->error().code, Errc::store_unavailable);
}

TEST(RedisStartTest, InvalidOptionsAreRefused) {
  RedisStoreOptions o;
  o.command_timeout = 0ms;
  auto store = make_redis_store(o);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code, Errc::invalid_argument);
  RedisStoreOptions braces;
  braces.key_prefix = "app{1}:";
  auto tagged = make_redis_store(braces);
  ASSERT_FALSE(tagged.has_value());
  EXPECT_NE(tagged.error().message.find("key_prefix"), std::string::npos);
}

}  // namespace
}  // namespace idem::testing
