// Two Redis store instances (two gateways) under real contention from many threads; run
// under TSan. One Redis decides every race; the client's threads must not race each other.

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "idem/redis_store.hpp"
#include "redis/redis_test_support.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

ClaimRequest claim_of(const std::string& key) {
  ClaimRequest r;
  r.id = digest_of(key, 0x1d);
  r.fingerprint = digest_of("fp", 0xf9);
  r.owner = "race";
  r.lease = 30s;
  r.ttl = 1h;
  return r;
}

// Correctness, not timing, is under test here: a sanitizer build on a loaded machine may
// take longer than the suite's short command timeout, and a timeout is no race.
std::shared_ptr<RedisStore> race_store(const std::string& prefix,
                                       std::shared_ptr<ManualClock> clock) {
  auto options = redis_options(shared_redis().port(), prefix, std::move(clock));
  options.command_timeout = 10s;
  return redis_store(options);
}

TEST(RedisStoreRaceTest, OneOwnerPerKeyAcrossTwoInstancesAndManyThreads) {
  const std::string prefix = fresh_prefix();
  auto clock = std::make_shared<ManualClock>();
  auto a = race_store(prefix, clock);
  auto b = race_store(prefix, clock);
  ASSERT_TRUE(a && b);
  constexpr int kThreads = 8;
  constexpr int kOps = 300;
  constexpr int kKeys = 8;
  std::vector<std::atomic<int>> owners(kKeys);
  std::atomic<int> double_owners{0}, acquired{0}, errors{0};
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store& store = t % 2 ? static_cast<Store&>(*a) : static_cast<Store&>(*b);
      start.arrive_and_wait();
      for (int i = 0; i < kOps; ++i) {
        const int key = (i * 5 + t) % kKeys;
        const std::string name = "k" + std::to_string(key);
        auto out = await<ClaimOutcome>([&](auto cb) { store.claim(claim_of(name), cb); }, 5s);
        if (!out || !out->has_value()) {
          ++errors;
          continue;
        }
        if (!(*out)->acquired) continue;
        ++acquired;
        if (owners[key].fetch_add(1) != 0) ++double_owners;
        std::this_thread::yield();
        owners[key].fetch_sub(1);
        const std::uint64_t token = (*out)->fencing_token;
        auto done = await<TokenCheck>(
            [&](auto cb) { store.release(digest_of(name, 0x1d), token, cb); }, 5s);
        if (!done || !done->has_value() || **done != TokenCheck::ok) ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(double_owners.load(), 0);
  EXPECT_GT(acquired.load(), kKeys);
}

TEST(RedisStoreRaceTest, WatchesChurnWhileOtherInstancesComplete) {
  const std::string prefix = fresh_prefix();
  auto clock = std::make_shared<ManualClock>();
  auto a = race_store(prefix, clock);
  auto b = race_store(prefix, clock);
  ASSERT_TRUE(a && b);
  constexpr int kKeys = 16;
  std::atomic<bool> stop{false};
  std::atomic<int> fired{0}, late{0};

  // Watchers on instance B: watches made and dropped in a loop, some dropped from inside
  // their own callback, none called after its destructor returned.
  std::vector<std::thread> watchers;
  for (int t = 0; t < 4; ++t) {
    watchers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        auto gone = std::make_shared<std::atomic<bool>>(false);
        auto holder = std::make_shared<std::pair<std::mutex, std::unique_ptr<Watch>>>();
        auto w = b->watch(digest_of("k" + std::to_string((i + t) % kKeys), 0x1d),
                          [gone, holder, &fired, &late] {
                            if (gone->load()) ++late;
                            ++fired;
                            std::unique_ptr<Watch> self;
                            {
                              std::lock_guard lock(holder->first);
                              self = std::move(holder->second);
                            }
                          });
        {
          std::lock_guard lock(holder->first);
          holder->second = std::move(w);
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        std::unique_ptr<Watch> mine;
        {
          std::lock_guard lock(holder->first);
          mine = std::move(holder->second);
        }
        mine.reset();
        gone->store(true);
      }
    });
  }
  // Completions on instance A.
  std::thread writer([&] {
    for (int i = 0; i < 400; ++i) {
      const std::string name = "k" + std::to_string(i % kKeys);
      auto out = await<ClaimOutcome>([&](auto cb) { a->claim(claim_of(name), cb); }, 5s);
      ASSERT_TRUE(out && out->has_value());
      if ((*out)->acquired) {
        auto done = await<TokenCheck>(
            [&](auto cb) {
              a->complete(digest_of(name, 0x1d), (*out)->fencing_token, StoredResponse{}, 1h, cb);
            },
            5s);
        ASSERT_TRUE(done && done->has_value());
      }
      auto erased = await<bool>([&](auto cb) { a->erase(digest_of(name, 0x1d), cb); }, 5s);
      ASSERT_TRUE(erased && erased->has_value());
    }
  });
  writer.join();
  stop = true;
  for (auto& th : watchers) th.join();
  EXPECT_EQ(late.load(), 0);
  EXPECT_GT(fired.load(), 0);
}

}  // namespace
}  // namespace idem::testing
