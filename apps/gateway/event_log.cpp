#include "event_log.hpp"

#include <spdlog/async.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace idem::gateway {

LogFields& LogFields::add(std::string_view name, std::string_view value) {
  text_.push_back(',');
  append_json_string(text_, name);
  text_.push_back(':');
  append_json_string(text_, value);
  return *this;
}

LogFields& LogFields::add(std::string_view name, std::int64_t value) {
  text_.push_back(',');
  append_json_string(text_, name);
  text_.push_back(':');
  text_ += std::to_string(value);
  return *this;
}

LogFields& LogFields::add(std::string_view name, bool value) {
  text_.push_back(',');
  append_json_string(text_, name);
  text_ += value ? ":true" : ":false";
  return *this;
}

namespace log {
namespace {

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance;
  return instance;
}

spdlog::level::level_enum to_spdlog(Level level) {
  return static_cast<spdlog::level::level_enum>(static_cast<int>(level));
}

spdlog::level::level_enum parse_level(std::string_view level) {
  if (level == "warn") return spdlog::level::warn;
  return spdlog::level::from_str(std::string(level));
}

}  // namespace

void init(std::string_view level) {
  spdlog::init_thread_pool(8192, 1);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto l = std::make_shared<spdlog::async_logger>("idem", std::move(sink), spdlog::thread_pool(),
                                                  spdlog::async_overflow_policy::overrun_oldest);
  // Every line is one JSON object; %v holds the members after "level", already escaped.
  l->set_formatter(std::make_unique<spdlog::pattern_formatter>(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc));
  l->set_level(parse_level(level));
  l->flush_on(spdlog::level::warn);
  logger() = l;
  spdlog::flush_every(std::chrono::seconds(1));
}

void set_level(std::string_view level) {
  if (auto& l = logger()) l->set_level(parse_level(level));
}

bool enabled(Level level) noexcept {
  auto& l = logger();
  return l && l->should_log(to_spdlog(level));
}

void write(Level level, std::string_view msg, const LogFields& fields) {
  auto& l = logger();
  if (!l || !l->should_log(to_spdlog(level))) return;
  std::string line = "\"msg\":";
  append_json_string(line, msg);
  line += fields.text();
  l->log(to_spdlog(level), std::string_view(line));
}

void shutdown() {
  if (auto& l = logger()) l->flush();
  spdlog::shutdown();
  logger().reset();
}

}  // namespace log

void JsonEventSink::publish(const Event& event) noexcept {
  try {
    LogFields f;
    f.add("event", event_name(event.kind));
    f.add("record", event.record.hex());
    if (!event.route.empty()) f.add("route", event.route);
    if (!event.detail.empty()) f.add("detail", event.detail);
    bool serious = event.kind == EventKind::store_error || event.kind == EventKind::lease_lost ||
                   event.kind == EventKind::outcome_unknown;
    const bool good_news = event.kind == EventKind::store_recovered;
    log::write(serious     ? log::Level::error
               : good_news ? log::Level::info
                           : log::Level::warn,
               "idem event", f);
  } catch (...) {
    // Logging must never take a request down; a lost line is the lesser harm.
  }
}

}  // namespace idem::gateway

namespace idem::gateway {

void StoreErrorCounter::publish(const Event& event) noexcept {
  if (event.kind == EventKind::store_error) {
    const auto index =
        static_cast<std::size_t>(event.store_error.value_or(Errc::store_unavailable));
    if (index < kReasons) counts_[index].fetch_add(1, std::memory_order_relaxed);
  }
  if (next_) next_->publish(event);
}

std::array<std::uint64_t, StoreErrorCounter::kReasons> StoreErrorCounter::counts() const noexcept {
  std::array<std::uint64_t, kReasons> out{};
  for (std::size_t i = 0; i < kReasons; ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

std::string_view StoreErrorCounter::reason(std::size_t index) noexcept {
  static_assert(static_cast<std::size_t>(Errc::store_unavailable) == 0 &&
                static_cast<std::size_t>(Errc::store_full) == 1 &&
                static_cast<std::size_t>(Errc::corrupt_record) == 2 &&
                static_cast<std::size_t>(Errc::invalid_argument) == 3 &&
                static_cast<std::size_t>(Errc::timeout) == 4);
  constexpr std::array<std::string_view, kReasons> names{"unavailable", "full", "corrupt",
                                                         "invalid", "timeout"};
  return index < kReasons ? names[index] : "other";
}

}  // namespace idem::gateway
