// The LMDB store under concurrent callers (run under TSan too): one winner per key when
// claims race between the read fast path and the writer, readers beside the writer, and
// watches created and destroyed while the writer fires them.

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb_test_support.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

// Built with append: g++ 12 warns falsely (-Wrestrict) on chains of string operator+.
std::string key_of(int thread, int n) {
  std::string key = "t";
  key.append(std::to_string(thread)).append("-").append(std::to_string(n));
  return key;
}

class LmdbRaceTest : public StoreConformanceTest {
 protected:
  void SetUp() override { open(Durability::process); }
  void TearDown() override { store_.reset(); }
  void open(Durability durability) {
    clock_ = std::make_shared<ManualClock>();
    LmdbStoreOptions o;
    o.path = dir_.path();
    o.clock = clock_;
    o.durability = durability;
    o.sweep_interval = 1ms;  // the sweeper runs alongside, too
    store_ = make_lmdb_store(o);
  }
  void sixty_four_claims_on_one_key();
  void claims_completions_reads_and_watches();
  void duplicates_racing_a_completion();
  TempDir dir_;
};

// Under power, leases that may be taken over are held in memory (core_leases.cpp), and a
// completion hands its record from there to the tables.
class LmdbPowerRaceTest : public LmdbRaceTest {
 protected:
  void SetUp() override { open(Durability::power); }
};

TEST_F(LmdbRaceTest, SixtyFourClaimsOnOneKeyHaveOneWinner) { sixty_four_claims_on_one_key(); }
TEST_F(LmdbPowerRaceTest, SixtyFourClaimsOnOneKeyHaveOneWinner) { sixty_four_claims_on_one_key(); }
TEST_F(LmdbRaceTest, ClaimsCompletionsReadsAndWatchesInterleave) {
  claims_completions_reads_and_watches();
}
TEST_F(LmdbPowerRaceTest, ClaimsCompletionsReadsAndWatchesInterleave) {
  claims_completions_reads_and_watches();
}
TEST_F(LmdbRaceTest, DuplicatesRacingACompletionNeverAcquire) { duplicates_racing_a_completion(); }
TEST_F(LmdbPowerRaceTest, DuplicatesRacingACompletionNeverAcquire) {
  duplicates_racing_a_completion();
}

void LmdbRaceTest::sixty_four_claims_on_one_key() {
  for (int round = 0; round < 10; ++round) {
    const std::string key = key_of(0, round);
    constexpr int kThreads = 64;
    std::barrier start(kThreads);
    std::vector<std::optional<Result<ClaimOutcome>>> results(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        results[t] = await<ClaimOutcome>([&](auto cb) { store_->claim(request(key), cb); });
      });
    }
    for (auto& th : threads) th.join();
    int winners = 0;
    std::uint64_t token = 0;
    for (const auto& r : results) {
      ASSERT_TRUE(r && r->has_value());
      if ((*r)->acquired) {
        ++winners;
        token = (*r)->fencing_token;
      }
    }
    ASSERT_EQ(winners, 1);
    for (const auto& r : results) {
      if (!(*r)->acquired) {
        EXPECT_EQ((*r)->existing->fencing_token, token);
      }
    }
  }
}

void LmdbRaceTest::claims_completions_reads_and_watches() {
  constexpr int kThreads = 8;
  constexpr int kKeys = 100;
  std::atomic<bool> stop{false};
  std::atomic<int> fired{0};
  // Churns watches on the keys the workers complete.
  std::thread watcher([&] {
    int i = 0;
    while (!stop.load()) {
      const std::string key = key_of(i % kThreads, i % kKeys);
      auto w = store_->watch(id(key), [&] { fired.fetch_add(1); });
      if (i % 3 == 0) std::this_thread::yield();
      ++i;
    }
  });
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = key_of(t, k);
        auto out = claim(request(key));
        if (!out || !out->acquired) {
          ++failures;
          continue;
        }
        if (*complete(key, out->fencing_token, response(200, key)) != TokenCheck::ok) ++failures;
        auto replay = claim(request(key));
        if (!replay || replay->acquired || !replay->existing->response ||
            replay->existing->response->body != key) {
          ++failures;
        }
        if (k % 10 == 0 && !*erase(key)) ++failures;
      }
    });
  }
  for (auto& w : workers) w.join();
  stop = true;
  watcher.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store_->stats().records, static_cast<std::uint64_t>(kThreads * (kKeys - kKeys / 10)));
}

// While a key is claimed and completed, duplicates see it in flight or completed: at no
// moment does the record seem absent, which would let one of them execute it again.
void LmdbRaceTest::duplicates_racing_a_completion() {
  constexpr int kDuplicates = 4;
  constexpr int kKeys = 200;
  std::atomic<int> current{-1};
  std::atomic<bool> stop{false};
  std::atomic<int> acquired_twice{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> duplicates;
  for (int d = 0; d < kDuplicates; ++d) {
    duplicates.emplace_back([&] {
      while (!stop.load()) {
        const int k = current.load();
        if (k < 0) continue;
        auto out = claim(request(key_of(99, k)));
        if (!out) {
          ++errors;
        } else if (out->acquired) {
          ++acquired_twice;
        }
      }
    });
  }
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = key_of(99, k);
    auto out = claim(request(key));
    ASSERT_TRUE(out.has_value() && out->acquired) << key;
    current = k;
    ASSERT_EQ(*complete(key, out->fencing_token, response(200, key)), TokenCheck::ok);
  }
  stop = true;
  for (auto& d : duplicates) d.join();
  EXPECT_EQ(acquired_twice.load(), 0);
  EXPECT_EQ(errors.load(), 0);
}

TEST_F(LmdbRaceTest, StoreDestroyedWithOperationsQueued) {
  // Every queued operation is still answered: the writer drains its queue before it stops.
  std::atomic<int> answered{0};
  {
    auto store = store_;
    store_.reset();
    for (int i = 0; i < 500; ++i) {
      store->claim(request(key_of(1, i)),
                   [&](Result<ClaimOutcome> r) { answered.fetch_add(r ? 1 : 0); });
    }
  }
  EXPECT_EQ(answered.load(), 500);
}

}  // namespace
}  // namespace idem::testing
