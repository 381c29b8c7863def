#include "stores/memory/watch_state.hpp"

#include <algorithm>

namespace idem::detail {

void WatchState::fire() {
  const auto me = std::this_thread::get_id();
  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return;
    running_.push_back(me);
  }
  // Leaves running_ even if the callback throws, or cancel() would wait forever.
  struct Done {
    WatchState* self;
    std::thread::id me;
    ~Done() {
      std::lock_guard lock(self->mutex_);
      self->running_.erase(std::find(self->running_.begin(), self->running_.end(), me));
      self->idle_.notify_all();
    }
  } done{this, me};
  changed_();
}

void WatchState::cancel() {
  const auto me = std::this_thread::get_id();
  std::unique_lock lock(mutex_);
  cancelled_ = true;
  idle_.wait(lock, [&] {
    return std::all_of(running_.begin(), running_.end(), [&](auto id) { return id == me; });
  });
}

}  // namespace idem::detail
