#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/result.hpp"

namespace idem {

/// Notable events of contract section 8. Never carry a body, a key in clear or an identity.
enum class EventKind {
  mismatch,           ///< key reused with another fingerprint (422)
  conflict,           ///< duplicate while in flight (409)
  lease_lost,         ///< a renewal or completion found a newer fencing token
  store_error,        ///< the store failed
  oversize_response,  ///< response over max_response_bytes; stored without body
  outcome_unknown,    ///< lease expired with on_expired_lease = "fail"
  lease_taken_over,   ///< lease expired with on_expired_lease = "retry"; executing again
  store_recovered,    ///< a completion or release the store had failed is written now
};

std::string_view event_name(EventKind kind) noexcept;

struct Event {
  EventKind kind;
  RecordId record;  ///< the HMAC name, safe to log
  std::string route;
  std::string detail;
  TimePoint at;
  /// store_error: what kind of failure the store reported (full, unreachable, ...).
  std::optional<Errc> store_error;
};

/// Receives events. Implementations must be thread-safe and must not block.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void publish(const Event& event) noexcept = 0;
};

/// Passes on at most one event per (kind, record) per `cooldown`, so a client retrying in a
/// loop cannot flood the log. Memory is bounded: the table is cleared when it grows past
/// `max_tracked` entries.
class RateLimitedSink final : public EventSink {
 public:
  RateLimitedSink(std::shared_ptr<EventSink> next, std::shared_ptr<const Clock> clock,
                  Duration cooldown = std::chrono::seconds(10), std::size_t max_tracked = 65536);
  void publish(const Event& event) noexcept override;
  std::uint64_t suppressed() const noexcept;

 private:
  std::shared_ptr<EventSink> next_;
  std::shared_ptr<const Clock> clock_;
  Duration cooldown_;
  std::size_t max_tracked_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, TimePoint> last_;
  std::uint64_t suppressed_ = 0;
};

}  // namespace idem
