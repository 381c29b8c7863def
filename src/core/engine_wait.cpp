#include "core/engine_wait.hpp"

#include <algorithm>
#include <mutex>

namespace idem {

namespace {
constexpr Duration kRecheckInterval = std::chrono::seconds(1);
}  // namespace

struct Waiter : std::enable_shared_from_this<Waiter> {
  Waiter(std::shared_ptr<Engine> e, PendingClaim p, Engine::DecisionCallback d, TimePoint dl)
      : engine(std::move(e)), pending(std::move(p)), done(std::move(d)), deadline(dl) {}

  std::shared_ptr<Engine> engine;
  PendingClaim pending;
  Engine::DecisionCallback done;
  TimePoint deadline;

  std::mutex mutex;
  bool finished = false;
  bool claiming = false;
  bool poked_while_claiming = false;
  std::unique_ptr<Watch> watch;
  std::unique_ptr<Timer> timer;

  Engine::Impl& impl() { return *engine->impl_; }

  static void start(std::shared_ptr<Engine> engine, PendingClaim pending,
                    Engine::DecisionCallback done);

  void arm() {
    Duration left = std::chrono::duration_cast<Duration>(deadline - impl().options.clock->now());
    Duration delay = std::clamp(left, Duration(1), kRecheckInterval);
    // The timer keeps the waiter alive: the deadline always fires, and finish() drops it.
    auto next =
        impl().options.scheduler->after(delay, [self = shared_from_this()] { self->poke(); });
    std::unique_ptr<Timer> old;
    {
      std::lock_guard lock(mutex);
      if (finished) return;  // `next` is cancelled on scope exit
      old = std::exchange(timer, std::move(next));
    }
    // `old` is destroyed here, outside the lock: a timer's destructor may wait for its
    // callback, which takes the lock.
  }

  void poke() {
    {
      std::lock_guard lock(mutex);
      if (finished) return;
      if (claiming) {
        poked_while_claiming = true;
        return;
      }
      claiming = true;
    }
    ClaimRequest request = pending.claim;
    impl().options.store->claim(std::move(request),
                                [self = shared_from_this()](Result<ClaimOutcome> result) {
                                  self->on_claim(std::move(result));
                                });
  }

  void on_claim(Result<ClaimOutcome> result) {
    bool over = impl().options.clock->now() >= deadline;
    auto verdict = engine->decide(pending, std::move(result), over);
    if (verdict) return finish(std::move(*verdict));
    bool again = false;
    {
      std::lock_guard lock(mutex);
      claiming = false;
      again = std::exchange(poked_while_claiming, false);
    }
    if (again) return poke();
    arm();
  }

  void finish(Decision decision) {
    std::unique_ptr<Watch> w;
    std::unique_ptr<Timer> t;
    {
      std::lock_guard lock(mutex);
      if (finished) return;
      finished = true;
      w = std::move(watch);
      t = std::move(timer);
    }
    w.reset();
    t.reset();
    auto callback = std::move(done);
    callback(std::move(decision));
  }
};

void Waiter::start(std::shared_ptr<Engine> engine, PendingClaim pending,
                   Engine::DecisionCallback done) {
  TimePoint deadline = engine->impl_->options.clock->now() + pending.plan->policy->wait_timeout;
  auto waiter = std::make_shared<Waiter>(engine, std::move(pending), std::move(done), deadline);
  auto watch = engine->impl_->options.store->watch(waiter->pending.claim.id,
                                                   [weak = std::weak_ptr<Waiter>(waiter)] {
                                                     if (auto self = weak.lock()) self->poke();
                                                   });
  {
    std::lock_guard lock(waiter->mutex);
    waiter->watch = std::move(watch);
  }
  // The record may have completed between the first claim and the watch: look again now.
  waiter->poke();
}

void start_wait(std::shared_ptr<Engine> engine, PendingClaim pending,
                Engine::DecisionCallback done) {
  Waiter::start(std::move(engine), std::move(pending), std::move(done));
}

}  // namespace idem
