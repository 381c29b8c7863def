// The store conformance suite (see store_conformance.hpp): each TEST_P runs once for every
// backend that instantiates StoreConformanceTest.

#include "unit/store_conformance.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

TEST_P(StoreConformanceTest, ClaimAcquiresOnce) {
  auto first = claim(request("k"));
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_TRUE(first->acquired);
  EXPECT_FALSE(first->took_over);
  EXPECT_GT(first->fencing_token, 0u);
  EXPECT_FALSE(first->existing.has_value());

  auto second = claim(request("k"));
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->acquired);
}

TEST_P(StoreConformanceTest, SecondClaimReportsInFlightRecord) {
  const auto start = clock_->now();
  const std::uint64_t token = acquire(request("k", "fp-a", 30s));
  clock_->advance(1s);

  auto second = claim(request("k", "fp-b"));
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->acquired);
  ASSERT_TRUE(second->existing.has_value());
  const Record& rec = *second->existing;
  EXPECT_EQ(rec.state, RecordState::in_flight);
  EXPECT_EQ(rec.fingerprint, fingerprint("fp-a"));
  EXPECT_EQ(rec.fencing_token, token);
  EXPECT_EQ(rec.lease_owner, "gw-1");
  EXPECT_EQ(rec.created_at, start);
  EXPECT_EQ(rec.lease_expires_at, start + 30s);
  EXPECT_FALSE(rec.lease_expired(clock_->now()));
  EXPECT_FALSE(rec.response.has_value());
}

TEST_P(StoreConformanceTest, CompleteThenGetAndClaimReturnTheResponse) {
  const std::uint64_t token = acquire(request("k"));
  StoredResponse resp = response(201, std::string("bin\0ary", 7));
  auto done = complete("k", token, resp);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, TokenCheck::ok);

  auto got = get("k");
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->state, RecordState::completed);
  EXPECT_EQ((*got)->fingerprint, fingerprint("fp"));
  ASSERT_TRUE((*got)->response.has_value());
  EXPECT_EQ(*(*got)->response, resp);

  auto again = claim(request("k"));
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->acquired);
  ASSERT_TRUE(again->existing.has_value());
  EXPECT_EQ(again->existing->state, RecordState::completed);
  ASSERT_TRUE(again->existing->response.has_value());
  EXPECT_EQ(*again->existing->response, resp);
}

TEST_P(StoreConformanceTest, ResponseWithoutBodyIsKept) {
  const std::uint64_t token = acquire(request("k"));
  StoredResponse resp = response(200, "");
  resp.body_stored = false;
  ASSERT_EQ(*complete("k", token, resp), TokenCheck::ok);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value() && (*got)->response.has_value());
  EXPECT_EQ(*(*got)->response, resp);
}

TEST_P(StoreConformanceTest, StaleTokenIsRejectedAndWritesNothing) {
  const std::uint64_t token = acquire(request("k"));
  const std::uint64_t stale = token + 1000;
  EXPECT_EQ(*complete("k", stale), TokenCheck::stale);
  EXPECT_EQ(*renew("k", stale, 1h), TokenCheck::stale);
  EXPECT_EQ(*release("k", stale), TokenCheck::stale);

  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->state, RecordState::in_flight);
  EXPECT_EQ((*got)->fencing_token, token);
  EXPECT_EQ((*got)->lease_expires_at, clock_->now() + 30s);
  EXPECT_FALSE((*got)->response.has_value());
}

TEST_P(StoreConformanceTest, OperationsOnACompletedRecordAreStale) {
  const std::uint64_t token = acquire(request("k"));
  ASSERT_EQ(*complete("k", token, response(200, "first")), TokenCheck::ok);
  EXPECT_EQ(*complete("k", token, response(500, "second")), TokenCheck::stale);
  EXPECT_EQ(*renew("k", token, 1h), TokenCheck::stale);
  EXPECT_EQ(*release("k", token), TokenCheck::stale);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value() && (*got)->response.has_value());
  EXPECT_EQ((*got)->response->body, "first");
}

TEST_P(StoreConformanceTest, OperationsOnAMissingRecord) {
  EXPECT_EQ(*complete("none", 1), TokenCheck::stale);
  EXPECT_EQ(*renew("none", 1, 1h), TokenCheck::stale);
  EXPECT_EQ(*release("none", 1), TokenCheck::stale);
  EXPECT_FALSE(get("none")->has_value());
  EXPECT_FALSE(*erase("none"));
}

TEST_P(StoreConformanceTest, ReleaseThenClaimAcquiresWithAHigherToken) {
  const std::uint64_t first = acquire(request("k"));
  ASSERT_EQ(*release("k", first), TokenCheck::ok);
  EXPECT_FALSE(get("k")->has_value());
  const std::uint64_t second = acquire(request("k"));
  EXPECT_GT(second, first);
  EXPECT_EQ(*complete("k", first), TokenCheck::stale);
  EXPECT_EQ(*complete("k", second), TokenCheck::ok);
}

TEST_P(StoreConformanceTest, ExpiredLeaseIsTakenOverWhenAsked) {
  const std::uint64_t first = acquire(request("k", "fp", 30s));
  clock_->advance(31s);
  ClaimRequest retry = request("k", "fp", 30s);
  retry.owner = "gw-2";
  auto out = claim(retry);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->acquired);
  EXPECT_TRUE(out->took_over);
  EXPECT_GT(out->fencing_token, first);

  // The first attempt is fenced off; the second owns the record.
  EXPECT_EQ(*complete("k", first), TokenCheck::stale);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->fencing_token, out->fencing_token);
  EXPECT_EQ((*got)->lease_owner, "gw-2");
  EXPECT_EQ((*got)->lease_expires_at, clock_->now() + 30s);
  EXPECT_EQ(*complete("k", out->fencing_token), TokenCheck::ok);
}

TEST_P(StoreConformanceTest, ExpiredLeaseIsReportedWhenNotTakenOver) {
  const std::uint64_t first = acquire(request("k", "fp", 30s));
  clock_->advance(31s);
  auto out = claim(request("k", "fp", 30s, 24h, /*take_over=*/false));
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->acquired);
  EXPECT_FALSE(out->took_over);
  ASSERT_TRUE(out->existing.has_value());
  EXPECT_EQ(out->existing->state, RecordState::in_flight);
  EXPECT_EQ(out->existing->fencing_token, first);
  EXPECT_TRUE(out->existing->lease_expired(clock_->now()));
  // Nobody took the record, so the original attempt may still complete it.
  EXPECT_EQ(*complete("k", first), TokenCheck::ok);
}

TEST_P(StoreConformanceTest, LiveLeaseIsNeverTakenOver) {
  const std::uint64_t first = acquire(request("k", "fp", 30s));
  clock_->advance(29s);
  auto out = claim(request("k", "fp", 30s));
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->acquired);
  ASSERT_TRUE(out->existing.has_value());
  EXPECT_EQ(out->existing->fencing_token, first);
}

TEST_P(StoreConformanceTest, ExpiredLeaseWithAnotherFingerprintIsReportedNotTakenOver) {
  // A retry must not run a different request under the old key: the caller needs the
  // existing fingerprint to answer key-reused.
  const std::uint64_t first = acquire(request("k", "fp-a", 30s));
  clock_->advance(31s);
  auto out = claim(request("k", "fp-b", 30s));
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->acquired);
  ASSERT_TRUE(out->existing.has_value());
  EXPECT_EQ(out->existing->fingerprint, fingerprint("fp-a"));
  EXPECT_EQ(out->existing->fencing_token, first);
}

TEST_P(StoreConformanceTest, TtlExpiryHidesACompletedRecord) {
  const std::uint64_t token = acquire(request("k"));
  clock_->advance(10s);
  ASSERT_EQ(*complete("k", token, response(), 60s), TokenCheck::ok);
  auto got = get("k");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->expires_at, clock_->now() + 60s);

  clock_->advance(59s);
  EXPECT_TRUE(get("k")->has_value());
  clock_->advance(1s);
  EXPECT_FALSE(get("k")->has_value());
  EXPECT_FALSE(*erase("k"));
  const std::uint64_t again = acquire(request("k"));
  EXPECT_GT(again, token);
}

TEST_P(StoreConformanceTest, TtlExpiryHidesAnInFlightRecord) {
  const std::uint64_t token = acquire(request("k", "fp", 5s, 60s));
  clock_->advance(60s);
  EXPECT_FALSE(get("k")->has_value());
  EXPECT_EQ(*complete("k", token), TokenCheck::stale);
  auto out = claim(request("k", "fp", 5s, 60s, /*take_over=*/false));
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->acquired);
  EXPECT_FALSE(out->took_over);
}

TEST_P(StoreConformanceTest, CompletionRestartsTheTtl) {
  const std::uint64_t token = acquire(request("k", "fp", 30s, 60s));
  clock_->advance(50s);
  ASSERT_EQ(*complete("k", token, response(), 60s), TokenCheck::ok);
  clock_->advance(30s);  // 80 s after the claim, 30 s after completion
  EXPECT_TRUE(get("k")->has_value());
  clock_->advance(30s);
  EXPECT_FALSE(get("k")->has_value());
}

TEST_P(StoreConformanceTest, RenewExtendsTheLease) {
  const std::uint64_t token = acquire(request("k", "fp", 30s));
  clock_->advance(20s);
  ASSERT_EQ(*renew("k", token, 30s), TokenCheck::ok);
  clock_->advance(20s);  // 40 s after the claim: the first lease alone would be over
  auto out = claim(request("k", "fp", 30s));
  ASSERT_TRUE(out.has_value());
  EXPECT_FALSE(out->acquired);
  ASSERT_TRUE(out->existing.has_value());
  EXPECT_EQ(out->existing->lease_expires_at, clock_->now() + 10s);
  EXPECT_FALSE(out->existing->lease_expired(clock_->now()));
  clock_->advance(10s);
  auto taken = claim(request("k", "fp", 30s));
  ASSERT_TRUE(taken.has_value());
  EXPECT_TRUE(taken->took_over);
}

TEST_P(StoreConformanceTest, RenewKeepsTheRecordAlivePastAShortTtl) {
  const std::uint64_t token = acquire(request("k", "fp", 30s, 30s));
  for (int i = 0; i < 4; ++i) {
    clock_->advance(20s);
    ASSERT_EQ(*renew("k", token, 30s), TokenCheck::ok) << "renewal " << i;
  }
  EXPECT_TRUE(get("k")->has_value());
  EXPECT_EQ(*complete("k", token), TokenCheck::ok);
}

TEST_P(StoreConformanceTest, EraseRemovesARecordInAnyState) {
  const std::uint64_t a = acquire(request("in-flight"));
  const std::uint64_t b = acquire(request("done"));
  ASSERT_EQ(*complete("done", b), TokenCheck::ok);
  EXPECT_TRUE(*erase("in-flight"));
  EXPECT_TRUE(*erase("done"));
  EXPECT_FALSE(*erase("done"));
  EXPECT_FALSE(get("in-flight")->has_value());
  EXPECT_FALSE(get("done")->has_value());
  EXPECT_EQ(*complete("in-flight", a), TokenCheck::stale);
  EXPECT_GT(acquire(request("done")), b);
}

TEST_P(StoreConformanceTest, WatchFiresOnComplete) {
  const std::uint64_t token = acquire(request("k"));
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  EXPECT_GE(calls.wait_for(1), 1);
}

TEST_P(StoreConformanceTest, WatchFiresOnRelease) {
  const std::uint64_t token = acquire(request("k"));
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  ASSERT_EQ(*release("k", token), TokenCheck::ok);
  EXPECT_GE(calls.wait_for(1), 1);
}

TEST_P(StoreConformanceTest, WatchFiresOnErase) {
  const std::uint64_t token = acquire(request("k"));
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  ASSERT_TRUE(*erase("k"));
  EXPECT_GE(calls.wait_for(1), 1);
}

TEST_P(StoreConformanceTest, WatchIgnoresOtherRecords) {
  const std::uint64_t token = acquire(request("other"));
  acquire(request("k"));
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  ASSERT_EQ(*complete("other", token), TokenCheck::ok);
  ASSERT_TRUE(get("other")->has_value());  // a round trip, for stores that call back later
  EXPECT_EQ(calls.calls(), 0);
}

TEST_P(StoreConformanceTest, WatchIsNotCalledAfterItIsDestroyed) {
  const std::uint64_t token = acquire(request("k"));
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  watch.reset();
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  ASSERT_TRUE(get("k")->has_value());
  EXPECT_EQ(calls.calls(), 0);
}

TEST_P(StoreConformanceTest, WatchMayBeDestroyedInsideItsCallback) {
  const std::uint64_t token = acquire(request("k"));
  CallCounter calls;
  std::mutex mutex;
  std::unique_ptr<Watch> watch;
  auto on_change = calls.callback();
  {
    std::lock_guard lock(mutex);
    watch = store_->watch(id("k"), [&] {
      std::unique_ptr<Watch> self;
      {
        std::lock_guard lock(mutex);
        self = std::move(watch);
      }
      self.reset();  // destroys the Watch whose callback this is
      on_change();
    });
  }
  ASSERT_EQ(*complete("k", token), TokenCheck::ok);
  EXPECT_EQ(calls.wait_for(1), 1);
  ASSERT_TRUE(*erase("k"));  // would call it again if it were still registered
  EXPECT_EQ(calls.calls(), 1);
}

// Fencing needs a record's tokens to increase; no token is issued twice, so a token names
// one lease in the whole store (logs and events can be matched by it).
TEST_P(StoreConformanceTest, TokensIncreasePerRecordAndAreNeverIssuedTwice) {
  std::map<std::string, std::uint64_t> last;
  std::set<std::uint64_t> issued;
  for (int i = 0; i < 50; ++i) {
    const std::string key = "key-" + std::to_string(i % 7);
    auto out = claim(request(key, "fp", 1s));
    ASSERT_TRUE(out.has_value());
    if (!out->acquired) {
      clock_->advance(2s);  // let the lease lapse and take it over
      out = claim(request(key, "fp", 1s));
      ASSERT_TRUE(out.has_value());
      ASSERT_TRUE(out->took_over);
    }
    EXPECT_GT(out->fencing_token, last[key]) << key;
    EXPECT_TRUE(issued.insert(out->fencing_token).second) << out->fencing_token;
    last[key] = out->fencing_token;
    if (i % 3 == 0) {
      ASSERT_EQ(*release(key, out->fencing_token), TokenCheck::ok);
    }
  }
}

TEST_P(StoreConformanceTest, StatsCountRecordsAndBytes) {
  const StoreStats empty = store_->stats();
  EXPECT_EQ(empty.records, 0u);
  const std::uint64_t a = acquire(request("a"));
  const std::uint64_t b = acquire(request("b"));
  acquire(request("c"));
  EXPECT_EQ(store_->stats().records, 3u);
  const std::uint64_t before = store_->stats().bytes;
  EXPECT_GT(before, 0u);
  ASSERT_EQ(*complete("a", a, response(200, std::string(1000, 'x'))), TokenCheck::ok);
  EXPECT_GE(store_->stats().bytes, before + 1000);
  ASSERT_EQ(*release("b", b), TokenCheck::ok);
  ASSERT_TRUE(*erase("c"));
  EXPECT_EQ(store_->stats().records, 1u);
  ASSERT_TRUE(*erase("a"));
  EXPECT_EQ(store_->stats().records, 0u);
}

TEST_P(StoreConformanceTest, PingAnswersTrue) {
  auto r = await<bool>([&](auto cb) { store_->ping(cb); });
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_TRUE(**r);
  EXPECT_FALSE(store_->kind().empty());
}

}  // namespace
}  // namespace idem::testing
