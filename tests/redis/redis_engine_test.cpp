// Two engines (two gateways) on one Redis, end to end through the engine: they name records
// alike with the shared secret, and a duplicate waiting on one is woken by the other's
// completion through pub/sub, well before the engine's fallback re-check.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "idem/engine.hpp"
#include "idem/redis_store.hpp"
#include "idem/scheduler.hpp"
#include "redis/redis_test_support.hpp"
#include "unit/engine_test_support.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// A scheduler with one thread, for the engine's wait deadlines. Not make_thread_scheduler():
// its run loop waits on a reference to the time point inside its queue node, which a
// concurrent cancel frees (ASan: heap-use-after-free in thread_scheduler.cpp); reported.
class TestScheduler final : public Scheduler, public std::enable_shared_from_this<TestScheduler> {
 public:
  TestScheduler() : thread_([this] { run(); }) {}
  ~TestScheduler() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) override {
    std::uint64_t id = 0;
    {
      std::lock_guard lock(mutex_);
      id = next_++;
      queue_.emplace(Key{Steady::now() + delay, id}, std::move(fire));
    }
    cv_.notify_all();
    return std::make_unique<Handle>(weak_from_this(), id);
  }

 private:
  using Key = std::pair<Steady::time_point, std::uint64_t>;
  struct Handle final : Timer {
    Handle(std::weak_ptr<TestScheduler> s, std::uint64_t id) : s_(std::move(s)), id_(id) {}
    ~Handle() override {
      if (auto s = s_.lock()) s->cancel(id_);
    }
    std::weak_ptr<TestScheduler> s_;
    std::uint64_t id_;
  };
  void cancel(std::uint64_t id) {
    std::unique_lock lock(mutex_);
    std::erase_if(queue_, [&](const auto& e) { return e.first.second == id; });
    if (std::this_thread::get_id() != thread_.get_id()) {
      done_.wait(lock, [&] { return running_ != id; });
    }
  }
  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const Steady::time_point when = queue_.begin()->first.first;  // a copy, not a reference
      if (Steady::now() < when) {
        cv_.wait_until(lock, when);
        continue;
      }
      auto fire = std::move(queue_.begin()->second);
      running_ = queue_.begin()->first.second;
      queue_.erase(queue_.begin());
      lock.unlock();
      fire();
      lock.lock();
      running_ = 0;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_, done_;
  std::map<Key, std::function<void()>> queue_;
  std::uint64_t next_ = 1, running_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

struct Gateway {
  std::shared_ptr<RedisStore> store;
  std::shared_ptr<Engine> engine;
};

Gateway gateway(const std::string& prefix, const std::string& name) {
  Gateway g;
  g.store = redis_store(redis_options(shared_redis().port(), prefix));
  if (!g.store) return g;
  auto secret = await<std::string>([&](auto cb) { g.store->load_or_create_secret(cb); });
  if (!secret || !secret->has_value()) {
    ADD_FAILURE() << "no secret";
    return g;
  }
  EngineOptions o;
  o.store = g.store;
  o.secret = **secret;
  o.policies.defaults.concurrency = Concurrency::wait;
  o.scheduler = std::make_shared<TestScheduler>();
  o.instance_id = name;
  g.engine = Engine::create(std::move(o));
  return g;
}

std::future<Decision> begin(Engine& engine, const TestRequest& request) {
  auto promise = std::make_shared<std::promise<Decision>>();
  request.visit([&](const RequestView& v) {
    engine.begin(v, [promise](Decision d) { promise->set_value(std::move(d)); });
  });
  return promise->get_future();
}

TEST(RedisEngineTest, ADuplicateWaitingOnOneGatewayIsWokenByTheOther) {
  const std::string prefix = fresh_prefix();
  Gateway a = gateway(prefix, "gw-a");
  Gateway b = gateway(prefix, "gw-b");
  ASSERT_TRUE(a.engine && b.engine);
  EXPECT_EQ(a.engine->record_id("Bearer t", "pay-1"), b.engine->record_id("Bearer t", "pay-1"));

  TestRequest request;
  request.key("pay-1").with("Authorization", "Bearer t").json(R"({"amount":1000})");
  auto first = begin(*a.engine, request);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  Decision original = first.get();
  ASSERT_EQ(original.action, Decision::Action::proceed);

  const auto waiting_since = Steady::now();
  auto duplicate = begin(*b.engine, request);
  EXPECT_EQ(duplicate.wait_for(150ms), std::future_status::timeout) << "did not wait";

  Response response;
  response.status = 201;
  response.headers = {{"Content-Type", "application/json"}};
  response.body = R"({"id":"pay_1"})";
  std::promise<Result<Completion>> stored;
  a.engine->complete(std::move(*original.ticket), response, true,
                     [&](Result<Completion> c) { stored.set_value(std::move(c)); });
  auto completion = stored.get_future().get();
  ASSERT_TRUE(completion.has_value());
  ASSERT_EQ(*completion, Completion::stored);

  ASSERT_EQ(duplicate.wait_for(5s), std::future_status::ready);
  const auto waited = Steady::now() - waiting_since;
  Decision replay = duplicate.get();
  EXPECT_EQ(replay.outcome, Outcome::replayed);
  EXPECT_EQ(replay.response.status, 201);
  EXPECT_EQ(replay.response.body, response.body);
  EXPECT_EQ(header_of(replay.response, "Idempotent-Replayed"), "true");
  // The engine re-checks by itself every second; a wake-up by pub/sub is much sooner.
  EXPECT_LT(waited, 800ms);
}

}  // namespace
}  // namespace idem::testing
