#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "idem/events.hpp"
#include "idem/json_text.hpp"

namespace idem::gateway {

using ::idem::append_json_string;

/// The members of one JSON log line after "ts", "level" and "msg". Never put a body, a key
/// in clear or an identity value in here.
class LogFields {
 public:
  LogFields& add(std::string_view name, std::string_view value);
  LogFields& add(std::string_view name, const char* value) {
    return add(name, std::string_view(value));
  }
  LogFields& add(std::string_view name, std::int64_t value);
  LogFields& add(std::string_view name, bool value);
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
};

/// One JSON object per line on stderr, written by a background thread so that a slow
/// stderr never blocks an event loop (lines are dropped instead, oldest first).
namespace log {
enum class Level { trace, debug, info, warn, error, critical, off };
/// `level` is one of trace, debug, info, warn, error, critical, off (already validated).
void init(std::string_view level);
void set_level(std::string_view level);
bool enabled(Level level) noexcept;
void write(Level level, std::string_view msg, const LogFields& fields = {});
inline void info(std::string_view msg, const LogFields& f = {}) { write(Level::info, msg, f); }
inline void warn(std::string_view msg, const LogFields& f = {}) { write(Level::warn, msg, f); }
inline void error(std::string_view msg, const LogFields& f = {}) { write(Level::error, msg, f); }
inline void debug(std::string_view msg, const LogFields& f = {}) { write(Level::debug, msg, f); }
/// Flushes and stops the background thread (exit paths).
void shutdown();
}  // namespace log

/// The engine's events as JSON log lines: `{"msg":"idem event","event":"mismatch",
/// "record":"<hmac hex>","route":"/x","detail":"..."}`. Thread-safe, never blocks. Wrap it
/// in a RateLimitedSink.
class JsonEventSink final : public EventSink {
 public:
  void publish(const Event& event) noexcept override;
};

/// Counts the store errors among the events by what the store said (full, unreachable,
/// ...) for /metrics, then passes every event on. In front of the rate limit, so that the
/// counts are exact while the log says why once per record.
class StoreErrorCounter final : public EventSink {
 public:
  static constexpr std::size_t kReasons = 5;  ///< one per Errc
  explicit StoreErrorCounter(std::shared_ptr<EventSink> next) : next_(std::move(next)) {}
  void publish(const Event& event) noexcept override;
  std::array<std::uint64_t, kReasons> counts() const noexcept;
  /// The metric label of an Errc: "unavailable", "full", "corrupt", "invalid", "timeout".
  static std::string_view reason(std::size_t index) noexcept;

 private:
  std::shared_ptr<EventSink> next_;
  std::array<std::atomic<std::uint64_t>, kReasons> counts_{};
};

}  // namespace idem::gateway
