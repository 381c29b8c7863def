#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "idem/engine.hpp"
#include "idem/scheduler.hpp"

/// Building blocks shared by the HTTP library adapters (idem/beast.hpp, idem/httplib.hpp),
/// and for embedders who write an adapter for another library. None of them decides
/// anything about idempotency: that is the engine's job.
namespace idem {

/// Blocking forms of Engine::begin, complete and abandon, for thread-per-request servers
/// (cpp-httplib, Beast's synchronous servers): each returns once the store has answered.
/// The memory store answers inline, so these never wait on it; other stores answer on
/// their own threads. Never call them on a thread the store needs in order to answer
/// (e.g. the io_context thread of a Redis store built on the caller's executor).
[[nodiscard]] Decision begin_and_wait(Engine& engine, const RequestView& request);
Result<Completion> complete_and_wait(Engine& engine, Ticket ticket, const Response& response,
                                     bool body_complete = true);
Result<TokenCheck> abandon_and_wait(Engine& engine, Ticket ticket);

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), for the `Date` of
/// replays and problems (the stored `Date` is never replayed). The view stays valid until
/// the next call on the same thread; formatted at most once a second per thread.
std::string_view http_date() noexcept;

/// A peer address as the engine's `ip` scope expects it: IPv4 clients of a dual-stack
/// listener (`::ffff:192.0.2.1`) as plain IPv4, so one client has one scope whatever
/// socket it came through.
std::string_view normalize_peer(std::string_view address) noexcept;

/// Renews the leases of tickets whose handlers are still running, so that a handler slower
/// than the policy's `lease` never lets a duplicate through (contract section 7). One timer
/// serves every held ticket; holding and releasing a ticket costs a lock and a list link.
/// Thread-safe. Must outlive its holds.
class LeaseKeeper {
 public:
  /// `scheduler` runs the renewals; null shares one thread scheduler across the process.
  explicit LeaseKeeper(std::shared_ptr<Engine> engine,
                       std::shared_ptr<Scheduler> scheduler = nullptr);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  struct State;

  /// Keeps one ticket's lease while it lives, or until release(). Not movable: the keeper
  /// links it in place. The ticket must stay where it is until the hold is released.
  class Hold {
   public:
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    ~Hold() { release(); }
    /// Stops renewing; call it before moving the ticket to complete() or abandon().
    void release() noexcept;

   private:
    friend class LeaseKeeper;
    friend struct State;
    Hold(State* state, const Ticket& ticket);

    State* state_;
    const Ticket* ticket_;
    std::chrono::steady_clock::time_point renew_at_;
    Hold* prev_ = nullptr;
    Hold* next_ = nullptr;
  };

  [[nodiscard]] Hold hold(const Ticket& ticket) { return Hold(state_.get(), ticket); }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace idem
