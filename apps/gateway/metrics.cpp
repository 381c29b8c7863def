#include "metrics.hpp"

#include <cstdio>

namespace idem::gateway {

namespace {

constexpr double kStoreBounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                   0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0};
constexpr double kUpstreamBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0};

constexpr std::string_view kCompletionNames[] = {"stored", "not_stored", "released", "lease_lost"};
constexpr std::string_view kUpstreamErrorNames[] = {"connect", "timeout", "protocol", "reset"};

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void number(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  out += buf;
}

template <class F>
std::uint64_t sum(const MetricsContext& c, F&& f) {
  std::uint64_t total = 0;
  for (const auto* w : c.workers) total += f(*w);
  return total;
}

void histogram(std::string& out, const MetricsContext& c, std::string_view name,
               std::string_view help, const Histogram WorkerMetrics::*member) {
  header(out, name, "histogram", help);
  const auto bounds = (c.workers.front()->*member).bounds();
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += sum(c, [&](const WorkerMetrics& w) { return (w.*member).bucket(i); });
    out += name;
    out += "_bucket{le=\"";
    if (i == bounds.size()) {
      out += "+Inf";
    } else {
      number(out, bounds[i]);
    }
    out += "\"} ";
    out += std::to_string(cumulative);
    out += '\n';
  }
  double total = 0;
  for (const auto* w : c.workers) total += (w->*member).sum_seconds();
  out += name;
  out += "_sum ";
  number(out, total);
  out += '\n';
  out += name;
  out += "_count ";
  out += std::to_string(cumulative);
  out += '\n';
}

void counter(std::string& out, const MetricsContext& c, std::string_view name,
             std::string_view help, const Counter WorkerMetrics::*member) {
  header(out, name, "counter", help);
  out += name;
  out += ' ';
  out += std::to_string(sum(c, [&](const WorkerMetrics& w) { return (w.*member).get(); }));
  out += '\n';
}

void gauge_line(std::string& out, std::string_view name, std::string_view help,
                std::string_view type, double value) {
  header(out, name, type, help);
  out += name;
  out += ' ';
  number(out, value);
  out += '\n';
}

}  // namespace

void Histogram::observe(std::chrono::nanoseconds d) noexcept {
  double seconds = static_cast<double>(d.count()) * 1e-9;
  std::size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].add();
  count_.add();
  sum_ns_.add(static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count()));
}

WorkerMetrics::WorkerMetrics() : store_latency(kStoreBounds), upstream_latency(kUpstreamBounds) {
  static_assert(std::size(kStoreBounds) <= Histogram::kMaxBuckets);
  static_assert(std::size(kUpstreamBounds) <= Histogram::kMaxBuckets);
}

std::string render_metrics(const MetricsContext& c) {
  std::string out;
  out.reserve(8192);

  header(out, "idem_requests_total", "counter", "Requests by idempotency outcome.");
  for (std::size_t i = 0; i < kOutcomeCount; ++i) {
    out += "idem_requests_total{outcome=\"";
    out += outcome_name(static_cast<Outcome>(i));
    out += "\"} ";
    out += std::to_string(sum(c, [&](const WorkerMetrics& w) { return w.outcomes[i].get(); }));
    out += '\n';
  }

  header(out, "idem_completions_total", "counter",
         "What happened to the records of forwarded keyed requests.");
  for (std::size_t i = 0; i < kCompletionCount; ++i) {
    out += "idem_completions_total{result=\"";
    out += kCompletionNames[i];
    out += "\"} ";
    out += std::to_string(sum(c, [&](const WorkerMetrics& w) { return w.completions[i].get(); }));
    out += '\n';
  }

  header(out, "idem_upstream_errors_total", "counter",
         "Requests answered 502/504 by the gateway because of the upstream.");
  for (std::size_t i = 0; i < kUpstreamErrorCount; ++i) {
    out += "idem_upstream_errors_total{reason=\"";
    out += kUpstreamErrorNames[i];
    out += "\"} ";
    out +=
        std::to_string(sum(c, [&](const WorkerMetrics& w) { return w.upstream_errors[i].get(); }));
    out += '\n';
  }

  histogram(out, c, "idem_store_latency_seconds",
            "Time from a keyed request's arrival to the store's decision, and of completions.",
            &WorkerMetrics::store_latency);
  histogram(out, c, "idem_upstream_latency_seconds",
            "Time from forwarding a request to the end of the upstream's response.",
            &WorkerMetrics::upstream_latency);

  std::int64_t in_flight = 0, connections = 0;
  for (const auto* w : c.workers) {
    in_flight += w->in_flight.get();
    connections += w->connections.get();
  }
  gauge_line(out, "idem_requests_in_flight", "Requests being handled.", "gauge",
             static_cast<double>(in_flight));
  gauge_line(out, "idem_client_connections", "Open client connections.", "gauge",
             static_cast<double>(connections));

  counter(out, c, "idem_client_connections_total", "Client connections accepted.",
          &WorkerMetrics::connections_accepted);
  counter(out, c, "idem_upstream_connects_total", "New connections opened to the upstream.",
          &WorkerMetrics::upstream_connects);
  counter(out, c, "idem_upstream_retries_total",
          "Requests resent on a fresh connection after a reused one was found closed.",
          &WorkerMetrics::upstream_retries);
  counter(out, c, "idem_client_aborts_total",
          "Clients gone before their response was written (the upstream exchange went on).",
          &WorkerMetrics::client_aborts);
  counter(out, c, "idem_lease_lost_total",
          "Lease renewals or completions that found a newer fencing token.",
          &WorkerMetrics::lease_lost);
  counter(out, c, "idem_bad_requests_total",
          "Malformed requests, oversized headers and client timeouts.",
          &WorkerMetrics::bad_requests);

  {
    const StoreStats& stats = c.store;
    gauge_line(out, "idem_stored_records", "Records in the store.", "gauge",
               static_cast<double>(stats.records));
    gauge_line(out, "idem_stored_bytes", "Bytes held by the store's records.", "gauge",
               static_cast<double>(stats.bytes));
  }
  out +=
      "# HELP idem_store_errors_total Store operations that failed, by what the store said "
      "(full: a record or size limit; unavailable: unreachable or failing).\n"
      "# TYPE idem_store_errors_total counter\n";
  for (std::size_t i = 0; i < c.store_errors.size(); ++i) {
    out += "idem_store_errors_total{reason=\"";
    out += c.store_error_reason(i);
    out += "\"} " + std::to_string(c.store_errors[i]) + "\n";
  }
  gauge_line(out, "idem_events_suppressed_total",
             "Event log lines dropped by the per-record rate limit.", "counter",
             static_cast<double>(c.events_suppressed));
  if (c.replay_caches_active) {
    gauge_line(out, "idem_redis_replay_cache_active",
               "Workers whose Redis replay cache answers retries now (the log says why not).",
               "gauge", *c.replay_caches_active);
  }
  gauge_line(out, "idem_gateway_threads", "Event loops.", "gauge", c.threads);
  gauge_line(out, "idem_gateway_draining", "1 while draining after SIGTERM.", "gauge",
             c.draining ? 1 : 0);
  gauge_line(out, "idem_gateway_uptime_seconds", "Seconds since start.", "gauge", c.uptime_seconds);
  return out;
}

}  // namespace idem::gateway
