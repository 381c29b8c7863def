#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "idem/engine.hpp"
#include "idem/events.hpp"
#include "idem/scheduler.hpp"
#include "idem/store.hpp"

namespace idem::testing {

/// A scheduler whose timers fire only when the test says so.
class ManualScheduler final : public Scheduler {
 public:
  std::unique_ptr<Timer> after(Duration delay, std::function<void()> fire) override {
    std::lock_guard lock(mutex_);
    delays_.push_back(delay);
    auto id = next_++;
    pending_[id] = std::move(fire);
    return std::make_unique<ManualTimer>(this, id);
  }
  /// Fires every timer pending now (not the ones their callbacks arm).
  void fire_all() {
    std::map<std::uint64_t, std::function<void()>> due;
    {
      std::lock_guard lock(mutex_);
      due.swap(pending_);
    }
    for (auto& [id, fn] : due) fn();
  }
  std::size_t pending() {
    std::lock_guard lock(mutex_);
    return pending_.size();
  }
  /// The delay of every timer asked for so far, in order.
  std::vector<Duration> delays() {
    std::lock_guard lock(mutex_);
    return delays_;
  }

 private:
  struct ManualTimer final : Timer {
    ManualTimer(ManualScheduler* s, std::uint64_t id) : s_(s), id_(id) {}
    ~ManualTimer() override {
      std::lock_guard lock(s_->mutex_);
      s_->pending_.erase(id_);
    }
    ManualScheduler* s_;
    std::uint64_t id_;
  };
  std::mutex mutex_;
  std::map<std::uint64_t, std::function<void()>> pending_;
  std::vector<Duration> delays_;
  std::uint64_t next_ = 1;
};

/// A store like `inner`, except that the next `fail_writes` completions and releases, and
/// the next `fail_claims` claims, fail with `error` (a Redis that went away, a full map).
class FlakyStore final : public Store {
 public:
  explicit FlakyStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}
  std::atomic<int> fail_writes{0};
  std::atomic<int> fail_claims{0};
  Errc error = Errc::store_unavailable;
  bool carried_out = false;    ///< a failed write took effect anyway (a timed-out command)
  std::atomic<int> writes{0};  ///< completions and releases asked for, failed or not

  void claim(ClaimRequest r, Callback<ClaimOutcome> done) override {
    if (take(fail_claims)) {
      if (carried_out) inner_->claim(std::move(r), [](Result<ClaimOutcome>) {});
      return done(Error{error, "no reply"});
    }
    inner_->claim(std::move(r), std::move(done));
  }
  void complete(const RecordId& id, std::uint64_t token, StoredResponse r, Duration ttl,
                Callback<TokenCheck> done) override {
    if (fails()) {
      if (carried_out) inner_->complete(id, token, std::move(r), ttl, [](Result<TokenCheck>) {});
      return done(Error{error, "connection reset"});
    }
    inner_->complete(id, token, std::move(r), ttl, std::move(done));
  }
  void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) override {
    if (fails()) return done(Error{error, "connection reset"});
    inner_->release(id, token, std::move(done));
  }
  void renew(const RecordId& id, std::uint64_t token, Duration lease,
             Callback<TokenCheck> done) override {
    inner_->renew(id, token, lease, std::move(done));
  }
  void get(const RecordId& id, Callback<std::optional<Record>> done) override {
    inner_->get(id, std::move(done));
  }
  void erase(const RecordId& id, Callback<bool> done) override {
    inner_->erase(id, std::move(done));
  }
  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) override {
    return inner_->watch(id, std::move(changed));
  }
  void ping(Callback<bool> done) override { inner_->ping(std::move(done)); }
  StoreStats stats() const override { return inner_->stats(); }
  std::string_view kind() const noexcept override { return "flaky"; }

 private:
  bool fails() {
    ++writes;
    return take(fail_writes);
  }
  static bool take(std::atomic<int>& count) {
    int left = count.load();
    while (left > 0 && !count.compare_exchange_weak(left, left - 1)) {
    }
    return left > 0;
  }
  std::shared_ptr<Store> inner_;
};

class RecordingSink final : public EventSink {
 public:
  void publish(const Event& e) noexcept override {
    std::lock_guard lock(mutex_);
    events.push_back(e);
  }
  std::size_t count(EventKind kind) {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& e : events) n += e.kind == kind ? 1 : 0;
    return n;
  }
  std::mutex mutex_;
  std::vector<Event> events;
};

/// An owned request that hands out a RequestView.
struct TestRequest {
  std::string method = "POST";
  std::string target = "/payments";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string peer = "127.0.0.1";

  TestRequest& with(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  TestRequest& key(std::string k) { return with("Idempotency-Key", std::move(k)); }
  TestRequest& json(std::string b) {
    body = std::move(b);
    return with("Content-Type", "application/json");
  }

  template <class F>
  auto visit(F&& f) const {
    std::vector<HeaderField> fields;
    for (const auto& [n, v] : headers) fields.push_back({n, v});
    RequestView view{method, target, fields, body, peer};
    return f(view);
  }
};

/// Runs begin() and returns its decision; fails the test if the callback has not run
/// (every test store answers inline).
inline std::optional<Decision> decide(Engine& engine, const TestRequest& request) {
  std::optional<Decision> out;
  request.visit(
      [&](const RequestView& v) { engine.begin(v, [&](Decision d) { out = std::move(d); }); });
  return out;
}

inline std::string header_of(const Response& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (iequals(n, name)) return v;
  }
  return {};
}

}  // namespace idem::testing
