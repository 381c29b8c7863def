#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "idem/clock.hpp"
#include "idem/events.hpp"
#include "idem/policy.hpp"
#include "idem/problem.hpp"
#include "idem/record.hpp"
#include "idem/request.hpp"
#include "idem/scheduler.hpp"
#include "idem/store.hpp"

namespace idem {

/// The outcomes counted by `idem_requests_total{outcome=...}`.
enum class Outcome {
  original,
  replayed,
  mismatch,
  conflict,
  duplicate,
  missing_key,
  invalid_key,
  passthrough,
  store_error,
  not_stored,
  too_large,
};
std::string_view outcome_name(Outcome outcome) noexcept;

class Engine;
struct PendingClaim;
struct Waiter;

/// The right to execute one keyed request: the record's name, its fencing token and its
/// policy. Move-only. A ticket that is destroyed before complete() or abandon() releases
/// its record, so no path leaves a record in flight until its lease runs out.
class Ticket {
 public:
  Ticket(Ticket&&) noexcept;
  Ticket& operator=(Ticket&&) noexcept;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  ~Ticket();

  const RecordId& record() const noexcept { return id_; }
  std::uint64_t fencing_token() const noexcept { return token_; }
  const Policy& policy() const noexcept { return *policy_; }
  std::string_view route() const noexcept { return route_; }
  /// How often to call Engine::renew while the upstream works: a third of the lease.
  Duration renew_interval() const noexcept;
  bool active() const noexcept { return engine_ != nullptr; }

 private:
  friend class Engine;
  Ticket(std::shared_ptr<Engine> engine, RecordId id, std::uint64_t token, const Policy* policy,
         std::string_view route);

  std::shared_ptr<Engine> engine_;
  RecordId id_;
  std::uint64_t token_ = 0;
  const Policy* policy_ = nullptr;
  std::string_view route_;
};

/// What to do with a request.
struct Decision {
  enum class Action {
    pass_through,  ///< forward it; nothing is stored
    proceed,       ///< forward it under `ticket`, then call complete() or abandon()
    respond,       ///< send `response` (a replay or a problem); do not forward
  };
  Action action = Action::pass_through;
  Outcome outcome = Outcome::passthrough;
  std::optional<Ticket> ticket;
  Response response;
};

/// What happened to a completed request's record.
enum class Completion {
  stored,      ///< the response is stored and will be replayed
  not_stored,  ///< over max_response_bytes: stored without body, replays answer 502
  released,    ///< status not in store_status: record removed, a retry executes afresh
  lease_lost,  ///< the fencing token was no longer current; nothing written
};

struct EngineOptions {
  PolicySet policies;
  std::shared_ptr<Store> store;
  /// HMAC secret for record names, raw bytes (at least 16).
  std::string secret;
  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>();
  std::shared_ptr<EventSink> events;     ///< may be null
  std::shared_ptr<Scheduler> scheduler;  ///< required when any policy waits
  std::string instance_id = "idem";      ///< lease owner shown to operators
};

/// The protocol engine: decides for each request whether it passes through, is rejected,
/// is replayed, or proceeds under a lease. Independent of any HTTP library. Thread-safe;
/// immutable once created except for the store it drives.
class Engine : public std::enable_shared_from_this<Engine> {
 public:
  /// Throws std::invalid_argument for an inconsistent configuration (start-up only).
  static std::shared_ptr<Engine> create(EngineOptions options);
  ~Engine();

  using DecisionCallback = std::function<void(Decision)>;

  /// Decides what to do with `request`. Everything the request points to is read before
  /// begin() returns; `done` may run before begin() returns or later on a store thread.
  /// A claim that times out may still be carried out by the store: an engine with a
  /// scheduler looks for its record once the store answers again, and releases it if it
  /// is in flight under that claim's lease owner (one per attempt).
  void begin(const RequestView& request, DecisionCallback done);

  /// Hands the upstream's response to the engine. `body_complete` is false when the body
  /// was not captured whole (over `max_response_bytes`). `done` runs once the store has
  /// the outcome, or with the store's error. After an error that may pass (the store
  /// unreachable, timed out or full), an engine with a scheduler writes the outcome again
  /// in the background, backing off, until the store takes it or the lease has run out:
  /// otherwise the record would stay in flight and the retry would execute again.
  void complete(Ticket ticket, const Response& response, bool body_complete,
                Callback<Completion> done);

  /// The request will not be answered by the upstream (unreachable, timed out, the client
  /// went away before its body arrived): removes the record so that a retry executes.
  /// Retried in the background as complete() is.
  void abandon(Ticket ticket, Callback<TokenCheck> done = {});

  /// Completions and releases that the store failed and that the engine still retries.
  /// The retries end with the engine: keep it while this is not zero.
  std::size_t settling() const noexcept;
  /// Drops those retries; their records then follow `on_expired_lease`. Call before the
  /// event loops that run the scheduler's timers go away.
  void stop_retries();

  /// Extends the ticket's lease; reports `stale` when another attempt took the record.
  void renew(const Ticket& ticket, Callback<TokenCheck> done);

  /// Names the record of `key` in the scope given by `scope_value` (the admin API's
  /// `?scope=`), under the policy of the route matching (method, path).
  RecordId record_id(std::string_view scope_value, std::string_view key,
                     std::string_view method = "POST", std::string_view path = "/") const;

  /// The record of a key, for inspection; and its removal (flush).
  void lookup(const RecordId& id, Callback<std::optional<Record>> done);
  void flush(const RecordId& id, Callback<bool> done);

  /// Conveniences over record_id + lookup / flush, as the seed packages' `has(key, scope)`
  /// and `flush(key, scope)`: whether the key has a live record (in flight or completed),
  /// and its removal (true when one was removed). `scope_value` as for record_id. Defined in
  /// engine_admin.cpp.
  void has(std::string_view scope_value, std::string_view key, Callback<bool> done,
           std::string_view method = "POST", std::string_view path = "/");
  void flush(std::string_view scope_value, std::string_view key, Callback<bool> done,
             std::string_view method = "POST", std::string_view path = "/");

  const PolicySet& policies() const noexcept;
  Store& store() noexcept;

 private:
  friend class Ticket;
  friend struct Waiter;
  struct Impl;
  struct Settlement;
  explicit Engine(std::unique_ptr<Impl> impl);

  /// Releases an attempt's record, retrying in the background if the store fails it.
  void release_attempt(const RecordId& id, std::uint64_t token, std::string route,
                       TimePoint lease_end, Callback<TokenCheck> done);
  /// Background retries of completions and releases (engine_settle.cpp).
  void settle_later(Settlement settlement, const Error& error);
  void schedule_settlement(Settlement settlement);
  void settle_again(Settlement settlement);
  void settled(Settlement settlement, Result<TokenCheck> result);
  void report_stale_completion(Settlement settlement);
  void found_lost_claim(Settlement settlement, Result<std::optional<Record>> found);

  void claim(PendingClaim pending, DecisionCallback done);
  /// The decision for a claim's answer; nullopt means "wait" (concurrency = "wait" and the
  /// record is still in flight), unless `waiting_over`.
  std::optional<Decision> decide(const PendingClaim& pending, Result<ClaimOutcome> result,
                                 bool waiting_over = false);

  std::unique_ptr<Impl> impl_;
};

}  // namespace idem
