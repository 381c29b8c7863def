#include "asio_scheduler.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>

namespace idem::gateway {

namespace {

thread_local boost::asio::io_context* t_loop = nullptr;

// Shared by the Timer handle and the pending wait. The recursive mutex gives the
// guarantee of idem::Timer: once ~AsioTimer returns, `fire` is not running and never
// will (a destructor on another thread waits for a running callback), while a callback
// may still destroy its own timer (same thread, re-entrant lock).
struct TimerState {
  explicit TimerState(boost::asio::io_context& loop) : timer(loop) {}
  std::recursive_mutex mutex;
  bool cancelled = false;
  std::function<void()> fire;
  boost::asio::steady_timer timer;
};

class AsioTimer final : public Timer {
 public:
  explicit AsioTimer(std::shared_ptr<TimerState> state) : state_(std::move(state)) {}
  ~AsioTimer() override {
    std::lock_guard lock(state_->mutex);
    state_->cancelled = true;
    // What the callback holds goes now, not when the loop gets to the cancelled wait (or
    // is destroyed): it may hold an engine and, through it, a store that must end before
    // its loop does.
    state_->fire = nullptr;
    // The timer object belongs to its loop's thread; cancel it there so that the loop is
    // not kept busy until a long deadline passes.
    auto& loop = static_cast<boost::asio::io_context&>(state_->timer.get_executor().context());
    if (t_loop == &loop) {
      state_->timer.cancel();
    } else {
      boost::asio::post(loop, [s = state_] { s->timer.cancel(); });
    }
  }

 private:
  std::shared_ptr<TimerState> state_;
};

}  // namespace

std::unique_ptr<Timer> AsioScheduler::after(Duration delay, std::function<void()> fire) {
  auto& loop = t_loop ? *t_loop : fallback_;
  auto state = std::make_shared<TimerState>(loop);
  state->fire = std::move(fire);
  state->timer.expires_after(delay);
  state->timer.async_wait([state](const boost::system::error_code&) {
    std::lock_guard lock(state->mutex);
    if (state->cancelled) return;
    state->cancelled = true;  // fires once
    auto fire = std::move(state->fire);
    fire();
  });
  return std::make_unique<AsioTimer>(std::move(state));
}

ThreadLoop::ThreadLoop(boost::asio::io_context& loop) : previous_(t_loop) { t_loop = &loop; }
ThreadLoop::~ThreadLoop() { t_loop = previous_; }
boost::asio::io_context* ThreadLoop::current() noexcept { return t_loop; }

}  // namespace idem::gateway
