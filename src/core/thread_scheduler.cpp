#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "idem/scheduler.hpp"

namespace idem {

namespace {

using Steady = std::chrono::steady_clock;
using TimerKey = std::pair<Steady::time_point, std::uint64_t>;

// The queue lives apart from the scheduler object and the thread owns a reference to it:
// a callback may drop the last reference to the scheduler, and the loop must still be able
// to finish the iteration it is in.
struct SchedulerState {
  std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable callback_done;
  std::map<TimerKey, std::function<void()>> queue;
  std::uint64_t next_id = 1;
  std::uint64_t running = 0;  ///< id of the callback running now, 0 for none
  bool stopping = false;
  std::thread::id thread_id;

  // Removes a pending timer or, when its callback is running on the scheduler thread,
  // waits for it to return, unless the cancelling call comes from that callback itself.
  void cancel(const TimerKey& key) {
    std::unique_lock lock(mutex);
    if (queue.erase(key) > 0) return;
    if (running == key.second && std::this_thread::get_id() != thread_id) {
      callback_done.wait(lock, [&] { return running != key.second; });
    }
  }

  static void run(std::shared_ptr<SchedulerState> self) {
    std::unique_lock lock(self->mutex);
    while (!self->stopping) {
      if (self->queue.empty()) {
        self->wake.wait(lock);
        continue;
      }
      auto first = self->queue.begin();
      // A copy: the entry may be cancelled, and freed, while this thread waits.
      const Steady::time_point deadline = first->first.first;
      if (Steady::now() < deadline) {
        self->wake.wait_until(lock, deadline);
        continue;
      }
      auto fire = std::move(first->second);
      self->running = first->first.second;
      self->queue.erase(first);
      lock.unlock();
      fire();
      // Destroy the callback before taking the lock: its captures may own timers whose
      // destructors cancel, which takes the lock.
      fire = nullptr;
      lock.lock();
      self->running = 0;
      self->callback_done.notify_all();
    }
  }
};

class ThreadTimer final : public Timer {
 public:
  ThreadTimer(std::weak_ptr<SchedulerState> state, TimerKey key)
      : state_(std::move(state)), key_(key) {}
  ~ThreadTimer() override {
    if (auto state = state_.lock()) state->cancel(key_);
  }

 private:
  std::weak_ptr<SchedulerState> state_;
  TimerKey key_;
};

class ThreadScheduler final : public Scheduler {
 public:
  ThreadScheduler() : state_(std::make_shared<SchedulerState>()) {
    std::lock_guard lock(state_->mutex);
    thread_ = std::thread(&SchedulerState::run, state_);
    state_->thread_id = thread_.get_id();
  }

  ~ThreadScheduler() override {
    {
      std::lock_guard lock(state_->mutex);
      state_->stopping = true;
    }
    state_->wake.notify_all();
    // The last owner may be a callback running on the scheduler thread itself; the thread
    // keeps the state alive and ends after that callback.
    if (std::this_thread::get_id() == thread_.get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) override {
    TimerKey key;
    {
      std::lock_guard lock(state_->mutex);
      key = {Steady::now() + delay, state_->next_id++};
      state_->queue.emplace(key, std::move(fire));
    }
    state_->wake.notify_all();
    return std::make_unique<ThreadTimer>(state_, key);
  }

 private:
  std::shared_ptr<SchedulerState> state_;
  std::thread thread_;
};

}  // namespace

std::shared_ptr<Scheduler> make_thread_scheduler() { return std::make_shared<ThreadScheduler>(); }

}  // namespace idem
