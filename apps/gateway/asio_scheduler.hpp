#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "idem/scheduler.hpp"

namespace idem::gateway {

/// idem::Scheduler on Asio timers. A timer runs on the event loop of the thread that asks
/// for it (each worker registers its loop with `ThreadLoop`), so the engine's wait
/// deadlines fire where the waiting request lives; other threads use `fallback`.
class AsioScheduler final : public Scheduler {
 public:
  explicit AsioScheduler(boost::asio::io_context& fallback) : fallback_(fallback) {}
  std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) override;

 private:
  boost::asio::io_context& fallback_;
};

/// Marks the calling thread as the one running `loop`, for as long as the object lives.
class ThreadLoop {
 public:
  explicit ThreadLoop(boost::asio::io_context& loop);
  ~ThreadLoop();
  ThreadLoop(const ThreadLoop&) = delete;
  ThreadLoop& operator=(const ThreadLoop&) = delete;
  /// The loop of the calling thread, or null.
  static boost::asio::io_context* current() noexcept;

 private:
  boost::asio::io_context* previous_;
};

}  // namespace idem::gateway
