#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "idem/engine.hpp"
#include "idem/memory_store.hpp"
#include "unit/engine_test_support.hpp"

namespace idem {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<Engine> make_engine(Concurrency concurrency) {
  EngineOptions o;
  o.policies.defaults.concurrency = concurrency;
  o.policies.defaults.wait_timeout = 20s;
  o.store = make_memory_store();
  o.secret = std::string(32, 'r');
  o.scheduler = make_thread_scheduler();
  return Engine::create(std::move(o));
}

testing::TestRequest charge(const std::string& key) {
  testing::TestRequest r;
  r.key(key).json(R"({"amount":1})");
  return r;
}

TEST(EngineRace, SixtyFourThreadsOneKeyExactlyOneProceeds) {
  auto engine = make_engine(Concurrency::reject);
  constexpr int kThreads = 64;
  for (int round = 0; round < 5; ++round) {
    std::string key = "race-" + std::to_string(round);
    std::atomic<int> proceeded{0}, conflicts{0};
    std::barrier start(kThreads);
    std::vector<std::optional<Ticket>> tickets(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto d = testing::decide(*engine, charge(key));
        ASSERT_TRUE(d.has_value());
        if (d->action == Decision::Action::proceed) {
          ++proceeded;
          tickets[i] = std::move(d->ticket);
        } else if (d->response.status == 409) {
          ++conflicts;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(proceeded.load(), 1);
    EXPECT_EQ(conflicts.load(), kThreads - 1);
  }
}

TEST(EngineRace, WaitersOnManyThreadsAllGetTheReplay) {
  auto engine = make_engine(Concurrency::wait);
  auto first = testing::decide(*engine, charge("w"));
  ASSERT_EQ(first->action, Decision::Action::proceed);

  constexpr int kWaiters = 32;
  std::mutex mutex;
  std::condition_variable cv;
  int answered = 0, replayed = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] {
      charge("w").visit([&](const RequestView& v) {
        engine->begin(v, [&](Decision d) {
          std::lock_guard lock(mutex);
          ++answered;
          replayed += d.outcome == Outcome::replayed ? 1 : 0;
          cv.notify_all();
        });
      });
    });
  }
  for (auto& t : threads) t.join();
  std::this_thread::sleep_for(10ms);  // let some waiters reach their fallback timers
  Response r;
  r.status = 201;
  r.body = "done";
  std::thread completer([&] { engine->complete(std::move(*first->ticket), r, true, {}); });
  completer.join();
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return answered == kWaiters; }));
  EXPECT_EQ(replayed, kWaiters);
}

TEST(EngineRace, DistinctKeysFromManyThreadsEachProceedOnce) {
  auto engine = make_engine(Concurrency::reject);
  constexpr int kThreads = 8, kKeys = 200;
  std::atomic<int> proceeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < kKeys; ++k) {
        auto d = testing::decide(*engine, charge("k" + std::to_string(k)));
        if (d->action == Decision::Action::proceed) {
          ++proceeded;
          Response r;
          r.status = 200;
          engine->complete(std::move(*d->ticket), r, true, {});
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(proceeded.load(), kKeys);
}

TEST(EngineRace, CompletionsTheStoreFailedAreAllWrittenAgain) {
  // Sixteen threads complete 320 requests while the store fails the first 200 writes; the
  // retries run on the scheduler's thread while the requests go on.
  EngineOptions o;
  auto flaky = std::make_shared<testing::FlakyStore>(make_memory_store());
  flaky->fail_writes = 200;
  o.store = flaky;
  o.secret = std::string(32, 'r');
  o.scheduler = make_thread_scheduler();
  auto engine = Engine::create(std::move(o));
  constexpr int kThreads = 16;
  constexpr int kKeys = 20;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kKeys; ++k) {
        auto d = testing::decide(*engine, charge("settle-" + std::to_string(i * kKeys + k)));
        ASSERT_TRUE(d && d->action == Decision::Action::proceed);
        Response r;
        r.status = 201;
        r.body = std::to_string(i * kKeys + k);
        engine->complete(std::move(*d->ticket), r, true, {});
      }
    });
  }
  for (auto& t : threads) t.join();
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (engine->settling() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(engine->settling(), 0u);
  for (int n = 0; n < kThreads * kKeys; ++n) {
    auto d = testing::decide(*engine, charge("settle-" + std::to_string(n)));
    ASSERT_TRUE(d);
    EXPECT_EQ(d->outcome, Outcome::replayed) << n;
    EXPECT_EQ(d->response.body, std::to_string(n));
  }
}

}  // namespace
}  // namespace idem
