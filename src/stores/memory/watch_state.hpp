#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace idem::detail {

/// The shared half of a Watch: the callback and what it takes to cancel it safely while
/// it may be running. Notifiers hold a shared_ptr while they call it, so the callback
/// outlives a Watch destroyed from inside it.
class WatchState {
 public:
  explicit WatchState(std::function<void()> changed) : changed_(std::move(changed)) {}

  /// Calls the callback unless cancelled. Never called with a store lock held.
  void fire();

  /// After this returns the callback is not running on any other thread and never starts
  /// again. Called from inside the callback itself, it does not wait for that call (which
  /// would deadlock); the Watch is gone but the running call finishes normally.
  void cancel();

 private:
  std::function<void()> changed_;
  std::mutex mutex_;
  std::condition_variable idle_;
  bool cancelled_ = false;
  /// Threads inside changed_ now; one entry per call, so nested calls count twice.
  std::vector<std::thread::id> running_;
};

}  // namespace idem::detail
