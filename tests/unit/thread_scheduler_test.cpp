#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "idem/scheduler.hpp"

namespace idem {
namespace {

using namespace std::chrono_literals;

TEST(ThreadScheduler, FiresInDeadlineOrder) {
  auto scheduler = make_thread_scheduler();
  std::mutex mutex;
  std::vector<int> order;
  std::promise<void> done;
  auto a = scheduler->after(30ms, [&] {
    std::lock_guard lock(mutex);
    order.push_back(2);
    done.set_value();
  });
  auto b = scheduler->after(1ms, [&] {
    std::lock_guard lock(mutex);
    order.push_back(1);
  });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  std::lock_guard lock(mutex);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(ThreadScheduler, DestroyedTimerNeverFires) {
  auto scheduler = make_thread_scheduler();
  std::atomic<bool> fired{false};
  scheduler->after(5ms, [&] { fired = true; }).reset();
  std::promise<void> later;
  auto sentinel = scheduler->after(20ms, [&] { later.set_value(); });
  ASSERT_EQ(later.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(fired);
}

TEST(ThreadScheduler, CallbackMayDestroyItsTimerAndTheLastSchedulerReference) {
  std::promise<void> done;
  {
    auto scheduler = make_thread_scheduler();
    auto holder = std::make_shared<std::unique_ptr<Timer>>();
    auto owner = std::make_shared<std::shared_ptr<Scheduler>>(scheduler);
    // The timer may fire before after() has returned: the callback waits until its handle
    // is stored, or both threads would write *holder at once.
    std::promise<void> stored;
    std::shared_future<void> handle_stored = stored.get_future().share();
    *holder = scheduler->after(1ms, [holder, owner, handle_stored, &done]() mutable {
      handle_stored.wait();
      holder->reset();  // its own timer
      owner->reset();   // the last reference to the scheduler, from its own thread
      done.set_value();
    });
    stored.set_value();
    scheduler.reset();
  }
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
}

}  // namespace
}  // namespace idem
