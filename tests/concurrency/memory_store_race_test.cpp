// The memory store under real contention; run under TSan in CI. Expiry plays no part
// here (the clock never moves), so every outcome is decided by the locks alone.

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "idem/memory_store.hpp"

namespace idem {
namespace {

using namespace std::chrono_literals;

RecordId id_of(int n) {
  std::array<std::uint8_t, 32> bytes{};
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<std::uint8_t>(n >> (8 * i));
  bytes[31] = 0x5a;
  return Digest(bytes);
}

ClaimRequest claim_of(int key, std::string owner) {
  ClaimRequest r;
  r.id = id_of(key);
  r.fingerprint = id_of(-1);
  r.owner = std::move(owner);
  r.lease = 30s;
  r.ttl = 1h;
  return r;
}

std::shared_ptr<Store> make_store(std::shared_ptr<ManualClock> clock, std::size_t shards = 8) {
  MemoryStoreOptions options;
  options.clock = std::move(clock);
  options.shards = shards;
  return make_memory_store(options);
}

TEST(MemoryStoreRaceTest, ExactlyOneOf64SimultaneousClaimsAcquires) {
  constexpr int kThreads = 64;
  constexpr int kRounds = 50;
  auto store = make_store(std::make_shared<ManualClock>());

  // What each thread saw in the current round: the token it acquired or the token of the
  // record it was shown. All must name the one winner's token.
  std::vector<std::uint64_t> tokens(kThreads);
  std::vector<int> acquired(kThreads);
  std::atomic<int> errors{0};
  int round = 0;  // touched only by the barrier's completion step
  std::barrier sync(kThreads, [&]() noexcept {
    int winners = 0;
    for (int t = 0; t < kThreads; ++t) winners += acquired[t];
    EXPECT_EQ(winners, 1) << "round " << round;
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_NE(tokens[t], 0u) << "round " << round;
      EXPECT_EQ(tokens[t], tokens[0]) << "round " << round << ", thread " << t;
    }
    ++round;
  });
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int r = 0; r < kRounds; ++r) {
        acquired[t] = 0;
        tokens[t] = 0;
        store->claim(claim_of(r, "t" + std::to_string(t)), [&](Result<ClaimOutcome> out) {
          if (!out) {
            ++errors;
          } else if (out->acquired) {
            acquired[t] = 1;
            tokens[t] = out->fencing_token;
          } else if (out->existing && out->existing->state == RecordState::in_flight) {
            tokens[t] = out->existing->fencing_token;
          }
        });
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(round, kRounds);
  EXPECT_EQ(store->stats().records, static_cast<std::uint64_t>(kRounds));
}

// A Watch that destroys itself from its own callback, or is destroyed by the thread that
// made it, whichever comes first. Taken out under the mutex, destroyed outside it: the
// destructor waits for running callbacks, which may be waiting for the mutex.
struct SelfDestroyingWatch {
  std::mutex mutex;
  std::unique_ptr<Watch> watch;
  void destroy() {
    std::unique_ptr<Watch> w;
    {
      std::lock_guard lock(mutex);
      w = std::move(watch);
    }
  }
};

TEST(MemoryStoreRaceTest, ClaimCompleteReleaseWithWatchesOnOverlappingKeys) {
  constexpr int kThreads = 8;
  constexpr int kOps = 3000;
  constexpr int kKeys = 16;  // few keys: threads collide on records and on watch lists
  auto store = make_store(std::make_shared<ManualClock>(), 4);

  std::atomic<int> completions{0};
  std::atomic<int> double_owners{0};
  std::atomic<int> non_increasing{0};
  std::atomic<int> fired{0};
  std::vector<std::atomic<int>> owners(kKeys);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      std::unique_ptr<Watch> kept;  // replaced now and then, maybe while it is notified
      std::vector<std::uint64_t> my_last_token(kKeys, 0);
      for (int i = 0; i < kOps; ++i) {
        const int key = (i * 7 + t * 3) % kKeys;
        auto self = std::make_shared<SelfDestroyingWatch>();
        if (i % 5 == 0) {
          auto w = store->watch(id_of(key), [self, &fired] {
            ++fired;
            self->destroy();
          });
          std::lock_guard lock(self->mutex);
          self->watch = std::move(w);
        }
        if (i % 3 == 0) kept = store->watch(id_of((key + 1) % kKeys), [&fired] { ++fired; });

        std::uint64_t token = 0;
        store->claim(claim_of(key, "t"), [&](Result<ClaimOutcome> out) {
          if (out && out->acquired) token = out->fencing_token;
        });
        if (token != 0) {
          // A key's tokens only ever grow, whoever held it in between.
          if (token <= my_last_token[key]) ++non_increasing;
          my_last_token[key] = token;
          // The lease is ours until we complete or release: nobody else may hold it.
          if (owners[key].fetch_add(1) != 0) ++double_owners;
          std::this_thread::yield();
          owners[key].fetch_sub(1);
          if (i % 2 == 0) {
            StoredResponse resp;
            resp.status = 200;
            resp.body = "ok";
            store->complete(id_of(key), token, resp, 1h, [&](Result<TokenCheck> r) {
              if (r && *r == TokenCheck::ok) ++completions;
            });
            if (i % 4 == 0) store->erase(id_of(key), [](Result<bool>) {});
          } else {
            store->release(id_of(key), token, [](Result<TokenCheck>) {});
          }
        }
        self->destroy();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(double_owners.load(), 0);
  EXPECT_EQ(non_increasing.load(), 0);
  EXPECT_GT(completions.load(), 0);
  EXPECT_GT(fired.load(), 0);
}

TEST(MemoryStoreRaceTest, WatchDestroyedWhileItsCallbackRunsElsewhere) {
  // The destructor must wait for a callback running on another thread, and the callback
  // must never start after the destructor returned.
  auto clock = std::make_shared<ManualClock>();
  auto store = make_store(clock);
  for (int round = 0; round < 200; ++round) {
    std::atomic<bool> destroyed{false};
    std::atomic<int> late_calls{0};
    auto watch = store->watch(id_of(round), [&] {
      if (destroyed.load()) ++late_calls;
      std::this_thread::yield();
    });
    std::uint64_t token = 0;
    store->claim(claim_of(round, "w"),
                 [&](Result<ClaimOutcome> out) { token = out->fencing_token; });
    std::latch go(2);
    std::thread completer([&] {
      go.arrive_and_wait();
      store->complete(id_of(round), token, StoredResponse{}, 1h, [](Result<TokenCheck>) {});
    });
    go.arrive_and_wait();
    watch.reset();
    destroyed = true;
    completer.join();
    EXPECT_EQ(late_calls.load(), 0) << "round " << round;
  }
}

}  // namespace
}  // namespace idem
