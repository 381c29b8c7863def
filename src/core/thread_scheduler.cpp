#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "idem/scheduler.hpp"

namespace idem {

namespace {

// One thread and a deadline-ordered map. Cancellation removes the entry, or, when its
// callback is already running on the scheduler thread, waits for it to finish, unless the
// cancelling call comes from that callback itself.
class ThreadScheduler final : public Scheduler,
                              public std::enable_shared_from_this<ThreadScheduler> {
 public:
  using Steady = std::chrono::steady_clock;
  using Key = std::pair<Steady::time_point, std::uint64_t>;

  ThreadScheduler() : thread_([this] { run(); }) {}

  ~ThreadScheduler() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    // The last owner may be a callback running on the scheduler thread itself.
    if (std::this_thread::get_id() == thread_.get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) override;

  void cancel(const Key& key) {
    std::unique_lock lock(mutex_);
    if (queue_.erase(key) > 0) return;
    if (running_ == key.second && std::this_thread::get_id() != thread_.get_id()) {
      done_cv_.wait(lock, [&] { return running_ != key.second; });
    }
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto first = queue_.begin();
      if (Steady::now() < first->first.first) {
        cv_.wait_until(lock, first->first.first);
        continue;
      }
      auto fire = std::move(first->second);
      running_ = first->first.second;
      queue_.erase(first);
      lock.unlock();
      fire();
      lock.lock();
      running_ = 0;
      done_cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::map<Key, std::function<void()>> queue_;
  std::uint64_t next_id_ = 1;
  std::uint64_t running_ = 0;
  bool stopping_ = false;
  std::thread thread_;

  friend class ThreadTimer;
};

class ThreadTimer final : public Timer {
 public:
  ThreadTimer(std::weak_ptr<ThreadScheduler> owner, ThreadScheduler::Key key)
      : owner_(std::move(owner)), key_(key) {}
  ~ThreadTimer() override {
    if (auto owner = owner_.lock()) owner->cancel(key_);
  }

 private:
  std::weak_ptr<ThreadScheduler> owner_;
  ThreadScheduler::Key key_;
};

std::unique_ptr<Timer> ThreadScheduler::after(Duration delay, std::function<void()> fire) {
  Key key;
  {
    std::lock_guard lock(mutex_);
    key = {Steady::now() + delay, next_id_++};
    queue_.emplace(key, std::move(fire));
  }
  cv_.notify_all();
  return std::make_unique<ThreadTimer>(weak_from_this(), key);
}

}  // namespace

std::shared_ptr<Scheduler> make_thread_scheduler() { return std::make_shared<ThreadScheduler>(); }

}  // namespace idem
