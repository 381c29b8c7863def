#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "idem/engine.hpp"
#include "idem/store.hpp"

namespace idem::gateway {

/// A counter written by one thread (its worker) and read by the admin thread: a relaxed
/// load and store instead of a locked read-modify-write keeps the hot path cheap.
class Counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::int64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

/// A Prometheus histogram of durations, single writer.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds_seconds) : bounds_(bounds_seconds) {}
  void observe(std::chrono::nanoseconds d) noexcept;
  std::span<const double> bounds() const noexcept { return bounds_; }
  /// Count in bucket i (not cumulative); i == bounds().size() is +Inf.
  std::uint64_t bucket(std::size_t i) const noexcept { return buckets_[i].get(); }
  std::uint64_t count() const noexcept { return count_.get(); }
  double sum_seconds() const noexcept { return static_cast<double>(sum_ns_.get()) * 1e-9; }

  static constexpr std::size_t kMaxBuckets = 20;

 private:
  std::span<const double> bounds_;
  std::array<Counter, kMaxBuckets + 1> buckets_{};
  Counter count_;
  Counter sum_ns_;
};

inline constexpr std::size_t kOutcomeCount = static_cast<std::size_t>(Outcome::too_large) + 1;
inline constexpr std::size_t kCompletionCount =
    static_cast<std::size_t>(Completion::lease_lost) + 1;

/// Why the gateway answered on the upstream's behalf.
enum class UpstreamError { connect, timeout, protocol, reset };
inline constexpr std::size_t kUpstreamErrorCount = 4;

/// One worker's metrics; the admin thread sums the workers'. Cache-line aligned so that
/// workers never share a line.
struct alignas(64) WorkerMetrics {
  WorkerMetrics();
  std::array<Counter, kOutcomeCount> outcomes;
  std::array<Counter, kCompletionCount> completions;
  std::array<Counter, kUpstreamErrorCount> upstream_errors;
  Gauge in_flight;
  Gauge connections;
  Counter connections_accepted;
  Counter upstream_connects;
  Counter upstream_retries;
  Counter client_aborts;  ///< client gone before its response was written
  Counter lease_lost;
  Counter bad_requests;  ///< malformed, header too large, timeouts
  Histogram store_latency;
  Histogram upstream_latency;
};

/// What /metrics shows besides the workers' counters.
struct MetricsContext {
  std::span<const WorkerMetrics* const> workers;
  StoreStats store;
  std::uint64_t events_suppressed;
  /// Store errors by what the store said, indexed like Errc, with their label values.
  std::span<const std::uint64_t> store_errors;
  std::string_view (*store_error_reason)(std::size_t index);
  double uptime_seconds;
  unsigned threads;
  bool draining;
  /// Redis with a replay cache: workers whose cache answers retries now.
  std::optional<int> replay_caches_active = std::nullopt;
};

/// Prometheus text exposition format 0.0.4.
std::string render_metrics(const MetricsContext& context);

}  // namespace idem::gateway
