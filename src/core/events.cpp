#include "idem/events.hpp"

namespace idem {

std::string_view event_name(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::mismatch:
      return "mismatch";
    case EventKind::conflict:
      return "conflict";
    case EventKind::lease_lost:
      return "lease_lost";
    case EventKind::store_error:
      return "store_error";
    case EventKind::oversize_response:
      return "oversize_response";
    case EventKind::outcome_unknown:
      return "outcome_unknown";
    case EventKind::lease_taken_over:
      return "lease_taken_over";
    case EventKind::store_recovered:
      return "store_recovered";
  }
  return "unknown";
}

RateLimitedSink::RateLimitedSink(std::shared_ptr<EventSink> next,
                                 std::shared_ptr<const Clock> clock, Duration cooldown,
                                 std::size_t max_tracked)
    : next_(std::move(next)),
      clock_(std::move(clock)),
      cooldown_(cooldown),
      max_tracked_(max_tracked) {}

void RateLimitedSink::publish(const Event& event) noexcept {
  try {
    std::string slot;
    slot.reserve(1 + event.record.size());
    slot.push_back(static_cast<char>(event.kind));
    auto bytes = event.record.bytes();
    slot.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    TimePoint now = clock_->now();
    {
      std::lock_guard lock(mutex_);
      auto it = last_.find(slot);
      if (it != last_.end() && now - it->second < cooldown_) {
        ++suppressed_;
        return;
      }
      // Clearing everything is crude, but bounded and O(1) amortised; losing the table
      // only lets one extra line per record through.
      if (it == last_.end() && last_.size() >= max_tracked_) last_.clear();
      last_[std::move(slot)] = now;
    }
    next_->publish(event);
  } catch (...) {
    // An event sink must never take a request down with it.
  }
}

std::uint64_t RateLimitedSink::suppressed() const noexcept {
  std::lock_guard lock(mutex_);
  return suppressed_;
}

}  // namespace idem
