// Building blocks of the HTTP library adapters: blocking engine calls, the Date header,
// peer addresses and lease renewal. No HTTP library here, so that every adapter (and an
// embedder's own) shares them through libidem.

#include "idem/adapter_support.hpp"

#include <algorithm>
#include <condition_variable>
#include <ctime>
#include <limits>
#include <mutex>
#include <optional>

namespace idem {

namespace {

/// One value handed from a callback (on any thread, or inline) to a waiting caller. The
/// value is set and signalled under the lock, so the waiter cannot return, and destroy the
/// slot, before the callback is done with it.
template <class T>
class Slot {
 public:
  void set(T value) {
    std::lock_guard lock(mutex_);
    value_.emplace(std::move(value));
    ready_.notify_one();
  }
  T take() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [this] { return value_.has_value(); });
    return std::move(*value_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::optional<T> value_;
};

}  // namespace

Decision begin_and_wait(Engine& engine, const RequestView& request) {
  Slot<Decision> slot;
  // Capturing one pointer keeps std::function's small-buffer: no allocation here.
  engine.begin(request, [&slot](Decision d) { slot.set(std::move(d)); });
  return slot.take();
}

Result<Completion> complete_and_wait(Engine& engine, Ticket ticket, const Response& response,
                                     bool body_complete) {
  Slot<Result<Completion>> slot;
  engine.complete(std::move(ticket), response, body_complete,
                  [&slot](Result<Completion> r) { slot.set(std::move(r)); });
  return slot.take();
}

Result<TokenCheck> abandon_and_wait(Engine& engine, Ticket ticket) {
  Slot<Result<TokenCheck>> slot;
  engine.abandon(std::move(ticket), [&slot](Result<TokenCheck> r) { slot.set(std::move(r)); });
  return slot.take();
}

std::string_view http_date() noexcept {
  static constexpr char kDays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr char kMonths[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local char text[32];
  thread_local std::time_t formatted = -1;
  std::time_t now = std::time(nullptr);
  if (now != formatted) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    auto two = [](char* out, int v) {
      out[0] = static_cast<char>('0' + v / 10);
      out[1] = static_cast<char>('0' + v % 10);
    };
    // "Sun, 06 Nov 1994 08:49:37 GMT": fixed width, so no snprintf on the request path.
    std::copy_n(kDays[tm.tm_wday], 3, text);
    text[3] = ',';
    text[4] = ' ';
    two(text + 5, tm.tm_mday);
    text[7] = ' ';
    std::copy_n(kMonths[tm.tm_mon], 3, text + 8);
    text[11] = ' ';
    int year = tm.tm_year + 1900;
    two(text + 12, year / 100 % 100);
    two(text + 14, year % 100);
    text[16] = ' ';
    two(text + 17, tm.tm_hour);
    text[19] = ':';
    two(text + 20, tm.tm_min);
    text[22] = ':';
    two(text + 23, tm.tm_sec);
    std::copy_n(" GMT", 4, text + 25);
    formatted = now;
  }
  return {text, 29};
}

std::string_view normalize_peer(std::string_view address) noexcept {
  constexpr std::string_view kMapped = "::ffff:";
  if (address.size() > kMapped.size() && address.substr(0, kMapped.size()) == kMapped &&
      address.find('.') != std::string_view::npos) {
    address.remove_prefix(kMapped.size());
  }
  return address;
}

// ---- LeaseKeeper ----

namespace {

using Steady = std::chrono::steady_clock;

std::shared_ptr<Scheduler> shared_scheduler() {
  // One renewal thread for every keeper without a scheduler of its own; it ends with the
  // last keeper that uses it.
  static std::mutex mutex;
  static std::weak_ptr<Scheduler> shared;
  std::lock_guard lock(mutex);
  auto scheduler = shared.lock();
  if (!scheduler) {
    scheduler = make_thread_scheduler();
    shared = scheduler;
  }
  return scheduler;
}

}  // namespace

/// The holds in a list and the one timer that renews them. Timers are never destroyed
/// under `mutex`: a timer's destructor may wait for its running callback, which takes it.
struct LeaseKeeper::State : std::enable_shared_from_this<State> {
  State(std::shared_ptr<Engine> e, std::shared_ptr<Scheduler> s)
      : engine(std::move(e)), scheduler(std::move(s)) {}

  std::shared_ptr<Engine> engine;
  std::shared_ptr<Scheduler> scheduler;
  std::mutex mutex;
  Hold* head = nullptr;
  std::unique_ptr<Timer> timer;
  bool armed = false;
  Steady::time_point armed_at{};
  std::uint64_t generation = 0;  ///< of the armed timer; older timers' ticks are ignored
  bool stopped = false;

  /// Arms the timer for `when`; returns the timer it replaces, to destroy unlocked.
  [[nodiscard]] std::unique_ptr<Timer> arm(Steady::time_point when) {
    ++generation;
    armed = true;
    armed_at = when;
    auto delay = std::chrono::ceil<Duration>(std::max(when - Steady::now(), Steady::duration{}));
    auto next = scheduler->after(delay, [weak = weak_from_this(), generation = generation] {
      if (auto self = weak.lock()) self->tick(generation);
    });
    return std::exchange(timer, std::move(next));
  }

  void tick(std::uint64_t fired) {
    std::unique_ptr<Timer> old;  // destroyed after the lock is released
    std::lock_guard lock(mutex);
    if (stopped || fired != generation) return;
    armed = false;
    auto now = Steady::now();
    auto next = Steady::time_point::max();
    for (Hold* h = head; h != nullptr; h = h->next_) {
      if (now >= h->renew_at_) {
        // A stale answer needs no action here: the completion will report lease_lost and
        // the engine has published the event.
        engine->renew(*h->ticket_, {});
        h->renew_at_ = now + h->ticket_->renew_interval();
      }
      next = std::min(next, h->renew_at_);
    }
    if (head != nullptr) old = arm(next);
  }
};

LeaseKeeper::LeaseKeeper(std::shared_ptr<Engine> engine, std::shared_ptr<Scheduler> scheduler)
    : state_(std::make_shared<State>(std::move(engine),
                                     scheduler ? std::move(scheduler) : shared_scheduler())) {}

LeaseKeeper::~LeaseKeeper() {
  std::unique_ptr<Timer> timer;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopped = true;
    timer = std::move(state_->timer);
  }
}

LeaseKeeper::Hold::Hold(State* state, const Ticket& ticket)
    : state_(state),
      ticket_(&ticket),
      renew_at_(Steady::now() +
                std::chrono::duration_cast<Steady::duration>(ticket.renew_interval())) {
  std::unique_ptr<Timer> old;
  std::lock_guard lock(state_->mutex);
  next_ = state_->head;
  if (next_ != nullptr) next_->prev_ = this;
  state_->head = this;
  if (!state_->armed || renew_at_ < state_->armed_at) old = state_->arm(renew_at_);
}

void LeaseKeeper::Hold::release() noexcept {
  if (state_ == nullptr) return;
  {
    std::lock_guard lock(state_->mutex);
    if (prev_ != nullptr) {
      prev_->next_ = next_;
    } else {
      state_->head = next_;
    }
    if (next_ != nullptr) next_->prev_ = prev_;
  }
  state_ = nullptr;
}

}  // namespace idem
