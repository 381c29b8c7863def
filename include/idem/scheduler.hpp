#pragma once

#include <functional>
#include <memory>

#include "idem/clock.hpp"

namespace idem {

/// A pending timer; destroying it cancels it, and the callback is never called after the
/// destructor returns. Destroying it from inside its own callback is allowed.
class Timer {
 public:
  virtual ~Timer() = default;
};

/// Runs callbacks later. The engine uses it only for `concurrency = "wait"` deadlines, so
/// that the core needs no event loop: the gateway supplies one on its Asio loop.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) = 0;
};

/// A scheduler with one thread of its own, for embedders without an event loop.
std::shared_ptr<Scheduler> make_thread_scheduler();

}  // namespace idem
