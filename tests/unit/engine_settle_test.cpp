// Completions and releases that the store failed are written again in the background
// (src/core/engine_settle.cpp).

#include <gtest/gtest.h>

#include "idem/engine.hpp"
#include "idem/memory_store.hpp"
#include "unit/engine_test_support.hpp"

namespace idem {
namespace {

using testing::decide;
using testing::FlakyStore;
using Action = Decision::Action;
using namespace std::chrono_literals;

class EngineSettleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policies_.defaults.lease = 30s;
    build_engine(scheduler_);
  }
  void build_engine(std::shared_ptr<Scheduler> scheduler) {
    EngineOptions o;
    o.policies = policies_;
    o.store = store_;
    o.secret = std::string(32, 'x');
    o.clock = clock_;
    o.events = events_;
    o.scheduler = std::move(scheduler);
    engine_ = Engine::create(std::move(o));
  }

  static testing::TestRequest charge(std::string key = "k1") {
    testing::TestRequest r;
    r.key(std::move(key)).json(R"({"amount":100})").with("Authorization", "Bearer tok_1");
    return r;
  }
  Decision begin() {
    auto d = decide(*engine_, charge());
    EXPECT_TRUE(d.has_value());
    return d ? std::move(*d) : Decision{};
  }
  static Response answer(int status, std::string body = R"({"id":"ch_1"})") {
    Response r;
    r.status = status;
    r.headers = {{"Content-Type", "application/json"}};
    r.body = std::move(body);
    return r;
  }
  /// complete() as an adapter calls it; the result handed to its callback.
  Result<Completion> finish(Decision& d, const Response& response) {
    EXPECT_EQ(d.action, Action::proceed);
    std::optional<Result<Completion>> out;
    engine_->complete(std::move(*d.ticket), response, true,
                      [&](Result<Completion> r) { out.emplace(std::move(r)); });
    EXPECT_TRUE(out.has_value());
    return out ? std::move(*out) : Result<Completion>(Error{Errc::invalid_argument, "none"});
  }
  std::string last_detail(EventKind kind) {
    std::lock_guard lock(events_->mutex_);
    for (auto it = events_->events.rbegin(); it != events_->events.rend(); ++it) {
      if (it->kind == kind) return it->detail;
    }
    return {};
  }

  PolicySet policies_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<testing::ManualScheduler> scheduler_ =
      std::make_shared<testing::ManualScheduler>();
  std::shared_ptr<testing::RecordingSink> events_ = std::make_shared<testing::RecordingSink>();
  std::shared_ptr<FlakyStore> store_ =
      std::make_shared<FlakyStore>(make_memory_store({.clock = clock_}));
  std::shared_ptr<Engine> engine_;
};

TEST_F(EngineSettleTest, AFailedCompletionIsWrittenAgainAndTheRetryIsReplayed) {
  auto first = begin();
  store_->fail_writes = 2;
  auto result = finish(first, answer(201));
  ASSERT_FALSE(result) << "the caller hears of the first failure at once";
  EXPECT_EQ(result.error().code, Errc::store_unavailable);
  EXPECT_EQ(engine_->settling(), 1u);
  EXPECT_EQ(begin().outcome, Outcome::conflict) << "in flight until the store takes it";

  scheduler_->fire_all();  // the second attempt fails as well
  EXPECT_EQ(store_->writes, 2);
  EXPECT_EQ(engine_->settling(), 1u);
  scheduler_->fire_all();
  EXPECT_EQ(store_->writes, 3);
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(scheduler_->pending(), 0u);
  EXPECT_EQ(events_->count(EventKind::store_recovered), 1u);
  EXPECT_EQ(last_detail(EventKind::store_recovered), "completion written on attempt 3");

  // Past the lease too: the retry is answered with the first response, not executed.
  clock_->advance(31s);
  auto retry = begin();
  EXPECT_EQ(retry.outcome, Outcome::replayed);
  EXPECT_EQ(retry.response.status, 201);
  EXPECT_EQ(retry.response.body, R"({"id":"ch_1"})");
}

TEST_F(EngineSettleTest, RetriesBackOffToOneSecond) {
  auto first = begin();
  store_->fail_writes = 8;
  ASSERT_FALSE(finish(first, answer(201)));
  for (int i = 0; i < 8; ++i) scheduler_->fire_all();
  const std::vector<Duration> expected = {50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s};
  EXPECT_EQ(scheduler_->delays(), expected);
  EXPECT_EQ(events_->count(EventKind::store_recovered), 1u);
  EXPECT_EQ(begin().outcome, Outcome::replayed);
}

TEST_F(EngineSettleTest, AFullStoreIsRetriedToo) {
  // Under durability "power", room freed by a sweep returns at the next checkpoint.
  auto first = begin();
  store_->error = Errc::store_full;
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(first, answer(200)));
  scheduler_->fire_all();
  EXPECT_EQ(begin().outcome, Outcome::replayed);
}

TEST_F(EngineSettleTest, AFailedReleaseIsWrittenAgainSoThatTheRetryExecutes) {
  auto first = begin();
  store_->fail_writes = 1;
  auto result = finish(first, answer(503));  // not stored: the record is released
  ASSERT_FALSE(result);
  EXPECT_EQ(begin().outcome, Outcome::conflict);
  scheduler_->fire_all();
  EXPECT_EQ(last_detail(EventKind::store_recovered), "release written on attempt 2");
  EXPECT_EQ(begin().action, Action::proceed) << "executes afresh without waiting for the lease";
}

TEST_F(EngineSettleTest, AFailedAbandonIsWrittenAgain) {
  auto first = begin();
  store_->fail_writes = 1;
  std::optional<Result<TokenCheck>> released;
  engine_->abandon(std::move(*first.ticket), [&](Result<TokenCheck> r) { released = r; });
  ASSERT_TRUE(released);
  EXPECT_FALSE(*released);
  scheduler_->fire_all();
  EXPECT_EQ(begin().action, Action::proceed);
}

TEST_F(EngineSettleTest, ADroppedTicketsReleaseIsWrittenAgain) {
  {
    auto first = begin();
    store_->fail_writes = 1;
  }  // the adapter lost the request: its ticket releases the record
  EXPECT_EQ(engine_->settling(), 1u);
  EXPECT_EQ(begin().outcome, Outcome::conflict);
  scheduler_->fire_all();
  EXPECT_EQ(begin().action, Action::proceed);
}

TEST_F(EngineSettleTest, RetriesEndWithTheLease) {
  auto first = begin();
  store_->fail_writes = 1000;
  ASSERT_FALSE(finish(first, answer(201)));
  scheduler_->fire_all();
  EXPECT_EQ(scheduler_->pending(), 1u);
  clock_->advance(30s);
  scheduler_->fire_all();
  EXPECT_EQ(scheduler_->pending(), 0u) << "no retry once the lease has run out";
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(last_detail(EventKind::store_error),
            "completion given up on attempt 3: connection reset");
  EXPECT_EQ(events_->count(EventKind::store_recovered), 0u);
}

TEST_F(EngineSettleTest, ErrorsThatDoNotPassAreNotRetried) {
  for (Errc code : {Errc::corrupt_record, Errc::invalid_argument}) {
    store_ = std::make_shared<FlakyStore>(make_memory_store({.clock = clock_}));
    build_engine(scheduler_);
    auto first = begin();
    store_->error = code;
    store_->fail_writes = 1;
    ASSERT_FALSE(finish(first, answer(201)));
    EXPECT_EQ(scheduler_->pending(), 0u);
    EXPECT_EQ(engine_->settling(), 0u);
  }
}

TEST_F(EngineSettleTest, WithoutASchedulerNothingIsRetried) {
  build_engine(nullptr);
  auto first = begin();
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(first, answer(201)));
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(begin().outcome, Outcome::conflict);
}

TEST_F(EngineSettleTest, StopRetriesDropsThem) {
  auto first = begin();
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(first, answer(201)));
  EXPECT_EQ(engine_->settling(), 1u);
  engine_->stop_retries();
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(scheduler_->pending(), 0u);
  // Later failures are not retried either.
  auto other = decide(*engine_, charge("k2"));
  ASSERT_TRUE(other);
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(*other, answer(201)));
  EXPECT_EQ(scheduler_->pending(), 0u);
  EXPECT_EQ(engine_->settling(), 0u);
}

TEST_F(EngineSettleTest, ACompletionThatTimedOutButWasWrittenIsRecognised) {
  auto first = begin();
  store_->error = Errc::timeout;
  store_->carried_out = true;
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(first, answer(201)));
  scheduler_->fire_all();  // stale: the first attempt's write is there
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(events_->count(EventKind::lease_lost), 0u);
  EXPECT_EQ(last_detail(EventKind::store_recovered),
            "completion found written by an earlier attempt on attempt 2");
  EXPECT_EQ(begin().outcome, Outcome::replayed);
}

TEST_F(EngineSettleTest, AClaimThatTimedOutButWasCarriedOutIsReleased) {
  // A stalled Redis runs the claim once it goes on; the client was answered 503.
  store_->error = Errc::timeout;
  store_->carried_out = true;
  store_->fail_claims = 1;
  EXPECT_EQ(begin().outcome, Outcome::store_error);
  EXPECT_EQ(begin().outcome, Outcome::conflict) << "the claim holds the key";
  scheduler_->fire_all();
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(last_detail(EventKind::store_recovered),
            "release of a claim that timed out written on attempt 2");
  EXPECT_EQ(begin().action, Action::proceed) << "the retry executes, without waiting 30 s";
}

TEST_F(EngineSettleTest, AClaimThatTimedOutAndWasNotCarriedOutLeavesNothingToDo) {
  store_->error = Errc::timeout;
  store_->fail_claims = 1;
  EXPECT_EQ(begin().outcome, Outcome::store_error);
  EXPECT_EQ(engine_->settling(), 1u);
  scheduler_->fire_all();
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(scheduler_->pending(), 0u);
  EXPECT_EQ(events_->count(EventKind::store_recovered), 0u);
}

TEST_F(EngineSettleTest, AClaimThatTimedOutNeverReleasesAnotherAttempt) {
  store_->error = Errc::timeout;
  store_->fail_claims = 1;
  EXPECT_EQ(begin().outcome, Outcome::store_error);
  auto other = begin();  // the client's retry holds the key now
  ASSERT_EQ(other.action, Action::proceed);
  scheduler_->fire_all();
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(begin().outcome, Outcome::conflict) << "the retry's attempt is still in flight";
  EXPECT_TRUE(finish(other, answer(201)));
}

TEST_F(EngineSettleTest, AClaimTheStoreRefusedLeavesNothingToCheck) {
  store_->error = Errc::store_unavailable;  // not sent: "not connected"
  store_->fail_claims = 1;
  EXPECT_EQ(begin().outcome, Outcome::store_error);
  EXPECT_EQ(scheduler_->pending(), 0u);
  EXPECT_EQ(engine_->settling(), 0u);
}

TEST_F(EngineSettleTest, ARetryThatFindsTheRecordTakenOverWritesNothing) {
  auto first = begin();
  store_->fail_writes = 1;
  ASSERT_FALSE(finish(first, answer(201, R"({"id":"old"})")));
  clock_->advance(31s);  // the lease runs out; the client's retry takes the record over
  auto second = begin();
  ASSERT_EQ(second.action, Action::proceed);
  EXPECT_TRUE(finish(second, answer(201, R"({"id":"new"})")));
  scheduler_->fire_all();  // the first completion's retry: its fencing token is stale
  EXPECT_EQ(engine_->settling(), 0u);
  EXPECT_EQ(last_detail(EventKind::lease_lost),
            "completion found the record no longer held on attempt 2");
  EXPECT_EQ(begin().response.body, R"({"id":"new"})");
}

}  // namespace
}  // namespace idem
