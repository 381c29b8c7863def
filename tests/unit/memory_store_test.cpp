#include "idem/memory_store.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

INSTANTIATE_TEST_SUITE_P(Memory, StoreConformanceTest,
                         ::testing::Values(StoreFactory{"memory",
                                                        [](std::shared_ptr<ManualClock> clock) {
                                                          MemoryStoreOptions options;
                                                          options.clock = std::move(clock);
                                                          return make_memory_store(options);
                                                        }},
                                           StoreFactory{"memory_one_shard",
                                                        [](std::shared_ptr<ManualClock> clock) {
                                                          MemoryStoreOptions options;
                                                          options.shards = 1;
                                                          options.clock = std::move(clock);
                                                          return make_memory_store(options);
                                                        }}),
                         StoreFactory::name_of);

// The memory store's own limits and eviction rules, on top of the shared suite.
class MemoryStoreTest : public StoreConformanceTest {
 protected:
  void make(std::size_t max_records, std::size_t max_bytes, std::size_t shards = 4) {
    MemoryStoreOptions options;
    options.max_records = max_records;
    options.max_bytes = max_bytes;
    options.shards = shards;
    options.clock = clock_;
    store_ = make_memory_store(options);
  }
  void SetUp() override { clock_ = std::make_shared<ManualClock>(); }
};

TEST_F(MemoryStoreTest, ClaimFailsWithStoreFullAtMaxRecords) {
  make(3, 1 << 20);
  for (int i = 0; i < 3; ++i) acquire(request("k" + std::to_string(i)));
  auto out = claim(request("k3"));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, Errc::store_full);
  EXPECT_NE(out.error().message.find("max_records 3"), std::string::npos) << out.error().message;
  EXPECT_EQ(store_->stats().records, 3u);

  // An existing record is still reported when full: only new records need room.
  auto existing = claim(request("k0"));
  ASSERT_TRUE(existing.has_value());
  EXPECT_FALSE(existing->acquired);
}

TEST_F(MemoryStoreTest, ClaimFailsWithStoreFullAtMaxBytes) {
  make(1000, 2000);
  const std::uint64_t token = acquire(request("big"));
  ASSERT_EQ(*complete("big", token, response(200, std::string(1800, 'x'))), TokenCheck::ok);
  // The completion itself is never refused, even past max_bytes: losing it would re-execute.
  ASSERT_EQ(*complete("big", token), TokenCheck::stale);
  // 68 bytes a claim (id, fingerprint, owner), 43 of headers: 1911 + 68 still fits.
  acquire(request("small"));
  auto out = claim(request("more"));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, Errc::store_full);
  EXPECT_NE(out.error().message.find("max_bytes 2000"), std::string::npos) << out.error().message;
}

// With limits this large each shard takes room a chunk at a time and keeps some spare:
// the limit must still hold exactly, the last records fitting even though their shard has
// no spare room and other shards do.
TEST_F(MemoryStoreTest, LimitsHoldExactlyWhileShardsKeepSpareRoom) {
  constexpr std::size_t kMaxRecords = 64 * 64 * 4;  // a chunk of 4 records per shard
  make(kMaxRecords, std::size_t{1} << 30, 64);
  for (std::size_t i = 0; i < kMaxRecords; ++i) acquire(request("k" + std::to_string(i)));
  EXPECT_EQ(store_->stats().records, kMaxRecords);
  auto out = claim(request("one-more"));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, Errc::store_full);
  ASSERT_TRUE(*erase("k0"));
  acquire(request("one-more"));
  EXPECT_FALSE(claim(request("two-more")).has_value());

  // Bytes the same way: 68 bytes a claim, chunks of 1000 bytes.
  make(1'000'000, 64 * 64 * 1000, 64);
  clock_->advance(1s);
  std::size_t fitted = 0;
  while (claim(request("b" + std::to_string(fitted))).has_value()) ++fitted;
  EXPECT_EQ(fitted, 64 * 64 * 1000 / 68);
  EXPECT_EQ(store_->stats().bytes, fitted * 68);
}

TEST_F(MemoryStoreTest, ExpiredRecordsAreReclaimedToMakeRoom) {
  // Many shards, so the expired records are mostly not in the new claim's shard.
  make(100, 1 << 20, 64);
  for (int i = 0; i < 100; ++i) {
    const std::string key = "old-" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(), 10s), TokenCheck::ok);
  }
  ASSERT_FALSE(claim(request("new")).has_value());
  clock_->advance(10s);
  acquire(request("new"));
  EXPECT_EQ(store_->stats().records, 1u);
}

TEST_F(MemoryStoreTest, InFlightRecordsAreNeverEvicted) {
  make(2, 1 << 20);
  const std::uint64_t a = acquire(request("a", "fp", 1s, 1h));
  const std::uint64_t b = acquire(request("b", "fp", 1s, 1h));
  clock_->advance(10min);  // leases long over, records still within their ttl
  auto out = claim(request("c"));
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().code, Errc::store_full);
  EXPECT_EQ(*complete("a", a), TokenCheck::ok);
  EXPECT_EQ(*complete("b", b), TokenCheck::ok);
}

TEST_F(MemoryStoreTest, CompletedRecordsAreNeverEvictedBeforeTheirTtl) {
  make(2, 1 << 20);
  ASSERT_EQ(*complete("a", acquire(request("a")), response(), 1h), TokenCheck::ok);
  ASSERT_EQ(*complete("b", acquire(request("b")), response(), 2h), TokenCheck::ok);
  clock_->advance(59min);
  EXPECT_FALSE(claim(request("c")).has_value());
  EXPECT_TRUE(get("a")->has_value());
  clock_->advance(1min);
  acquire(request("c"));  // a expired and made room; b is kept
  EXPECT_FALSE(get("a")->has_value());
  EXPECT_TRUE(get("b")->has_value());
}

TEST_F(MemoryStoreTest, ExpiredRecordsAreSweptWithoutBeingTouched) {
  make(1'000'000, std::size_t{1} << 30, 1);
  for (int i = 0; i < 200; ++i) acquire(request("old-" + std::to_string(i), "fp", 1s, 10s));
  EXPECT_EQ(store_->stats().records, 200u);
  clock_->advance(11s);
  // Each operation pops a few due records; enough operations on other keys empty it.
  for (int i = 0; i < 200; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 0u);
  EXPECT_EQ(store_->stats().bytes, 0u);
}

TEST_F(MemoryStoreTest, ManyDistinctLifetimesAreAllSweptInOrder) {
  // More lifetimes than the expiry queue keeps FIFOs for: the rest go to its heap.
  make(1'000'000, std::size_t{1} << 30, 1);
  for (int i = 0; i < 40; ++i) {
    const std::string key = "k" + std::to_string(i);
    const auto ttl = std::chrono::seconds(100 - i);
    ASSERT_EQ(*complete(key, acquire(request(key, "fp", 1s, ttl)), response(), ttl),
              TokenCheck::ok);
  }
  clock_->advance(70s);  // the 10 with ttl 61..70 s are due, in both FIFOs and heap
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 30u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(get("k" + std::to_string(i))->has_value(), 100 - i > 70) << i;
  }
  clock_->advance(30s);
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 0u);
}

TEST_F(MemoryStoreTest, ARecordCompletedLongAfterItsClaimIsSweptAtItsNewExpiryOnly) {
  make(1'000'000, std::size_t{1} << 30, 1);
  const std::uint64_t a = acquire(request("a", "fp", 30s, 30s));
  acquire(request("b", "fp", 30s, 30s));  // queued behind a: a's claim item is not the last
  clock_->advance(20s);
  ASSERT_EQ(*complete("a", a, response(), 60s), TokenCheck::ok);  // now due at 80 s
  clock_->advance(11s);  // a's claim item and b (never completed) are due
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 1u);
  EXPECT_TRUE(get("a")->has_value());
  clock_->advance(48s);
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_TRUE(get("a")->has_value());
  clock_->advance(1s);
  EXPECT_FALSE(get("a")->has_value());
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 0u);
  EXPECT_EQ(store_->stats().bytes, 0u);
}

TEST_F(MemoryStoreTest, EveryRecordIsSweptHoweverItsExpiryMoved) {
  make(1'000'000, std::size_t{1} << 30, 1);
  std::uint64_t token[8];
  for (int i = 0; i < 8; ++i) {
    token[i] = acquire(request("k" + std::to_string(i), "fp", 10s, 20s));
  }
  ASSERT_EQ(*complete("k0", token[0], response(), 5s), TokenCheck::ok);   // earlier
  ASSERT_EQ(*complete("k7", token[7], response(), 40s), TokenCheck::ok);  // later, last queued
  ASSERT_EQ(*complete("k3", token[3], response(), 40s), TokenCheck::ok);  // later, mid-queue
  ASSERT_EQ(*release("k1", token[1]), TokenCheck::ok);
  ASSERT_TRUE(*erase("k2"));
  ASSERT_EQ(*renew("k4", token[4], 30s), TokenCheck::ok);
  clock_->advance(15s);
  const std::uint64_t taken = acquire(request("k5", "fp", 10s, 20s));  // lease expired
  ASSERT_EQ(*complete("k5", taken, response(), 50s), TokenCheck::ok);
  acquire(request("k1", "fp", 10s, 20s));  // a released id, claimed again
  // k6 is abandoned in flight. Past every expiry, the sweep alone removes all of them.
  clock_->advance(66s);
  for (int i = 0; i < 20; ++i) (void)get("other");
  EXPECT_EQ(store_->stats().records, 0u);
  EXPECT_EQ(store_->stats().bytes, 0u);
}

TEST_F(MemoryStoreTest, ARecycledRecordKeepsNothingOfTheLastOne) {
  make(100, 1 << 20, 1);  // one shard: the next insert reuses the removed record's node
  ClaimRequest first = request("old", "fp-old", 5s, 1h);
  first.owner = "gw-old";
  ASSERT_EQ(*complete("old", acquire(first), response(200, "old body")), TokenCheck::ok);
  ASSERT_TRUE(*erase("old"));
  clock_->advance(1s);
  ClaimRequest second = request("new", "fp-new", 30s, 2h);
  second.owner = "gw-new";
  const std::uint64_t token = acquire(second);
  auto got = get("new");
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->state, RecordState::in_flight);
  EXPECT_EQ((*got)->fingerprint, fingerprint("fp-new"));
  EXPECT_EQ((*got)->fencing_token, token);
  EXPECT_EQ((*got)->lease_owner, "gw-new");
  EXPECT_EQ((*got)->created_at, clock_->now());
  EXPECT_EQ((*got)->lease_expires_at, clock_->now() + 30s);
  EXPECT_EQ((*got)->expires_at, clock_->now() + 2h);
  EXPECT_FALSE((*got)->response.has_value());
  EXPECT_EQ(store_->stats().bytes, 32u + 32u + 6u);
}

TEST_F(MemoryStoreTest, BytesFollowTheRecords) {
  make(100, 1 << 20);
  ClaimRequest r = request("k");
  r.owner = "owner-123";
  const std::uint64_t token = acquire(r);
  EXPECT_EQ(store_->stats().bytes, 32u + 32u + 9u);
  StoredResponse resp;
  resp.status = 200;
  resp.headers = {{"A", "bc"}};
  resp.body = "hello";
  ASSERT_EQ(*complete("k", token, resp), TokenCheck::ok);
  EXPECT_EQ(store_->stats().bytes, 32u + 32u + 9u + 3u + 5u);
  ASSERT_TRUE(*erase("k"));
  EXPECT_EQ(store_->stats().bytes, 0u);
}

TEST_F(MemoryStoreTest, WatchMayOutliveTheStore) {
  make(10, 1 << 20);
  CallCounter calls;
  auto watch = store_->watch(id("k"), calls.callback());
  store_.reset();
  watch.reset();
  EXPECT_EQ(calls.calls(), 0);
}

TEST_F(MemoryStoreTest, CallbacksMayCallTheStoreAgain) {
  make(10, 1 << 20);
  bool nested = false;
  store_->claim(request("k"), [&](Result<ClaimOutcome> out) {
    ASSERT_TRUE(out && out->acquired);
    store_->complete(id("k"), out->fencing_token, response(), 1h,
                     [&](Result<TokenCheck> r) { nested = r && *r == TokenCheck::ok; });
  });
  EXPECT_TRUE(nested);
}

}  // namespace
}  // namespace idem::testing
