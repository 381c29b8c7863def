#pragma once

#include <atomic>
#include <chrono>

namespace idem {

/// Wall-clock time, because records outlive the process in durable stores.
using TimePoint = std::chrono::system_clock::time_point;
using Duration = std::chrono::milliseconds;

/// Time source injected into the engine and the stores, so that expiry is testable
/// without sleeping. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const noexcept = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const noexcept override { return std::chrono::system_clock::now(); }
};

/// A clock that moves only when told to; for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{std::chrono::hours(24 * 365 * 50)})
      : now_(start.time_since_epoch().count()) {}
  TimePoint now() const noexcept override {
    return TimePoint{TimePoint::duration{now_.load(std::memory_order_acquire)}};
  }
  void advance(Duration d) noexcept {
    now_.fetch_add(std::chrono::duration_cast<TimePoint::duration>(d).count(),
                   std::memory_order_acq_rel);
  }

 private:
  std::atomic<TimePoint::rep> now_;
};

}  // namespace idem
