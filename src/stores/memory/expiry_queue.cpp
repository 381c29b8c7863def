#include "stores/memory/expiry_queue.hpp"

#include <algorithm>

namespace idem::detail {

ExpiryQueue::Ref ExpiryQueue::push(Duration lifetime, TimePoint at, std::uint64_t generation,
                                   const RecordId& id, std::uint32_t slot) {
  Ref ref = nullptr;
  if (std::deque<Item>* fifo = fifo_for(lifetime); fifo != nullptr) {
    ref = &fifo->emplace_back(Item{at, generation, id, slot});
  } else {
    heap_.push_back(Item{at, generation, id, slot});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  next_ = std::min(next_, at);
  ++size_;
  return ref;
}

void ExpiryQueue::remove(Ref ref) {
  if (ref == nullptr) return;
  for (Fifo& f : fifos_) {
    if (f.items.empty() || &f.items.back() != ref) continue;
    // Tombstones left behind it go too: each item is popped once, so this stays O(1)
    // amortised.
    do {
      f.items.pop_back();
      --size_;
    } while (!f.items.empty() && f.items.back().generation == kRemoved);
    if (f.items.empty()) recompute_next();
    return;
  }
  ref->generation = kRemoved;
}

ExpiryQueue::Item ExpiryQueue::pop() {
  std::deque<Item>* from = nullptr;
  TimePoint best = TimePoint::max();
  for (Fifo& f : fifos_) {
    if (!f.items.empty() && f.items.front().at <= best) {
      best = f.items.front().at;
      from = &f.items;
    }
  }
  Item item;
  if (!heap_.empty() && (from == nullptr || heap_.front().at < best)) {
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    item = heap_.back();
    heap_.pop_back();
  } else {
    item = from->front();
    from->pop_front();
  }
  --size_;
  recompute_next();
  return item;
}

std::deque<ExpiryQueue::Item>* ExpiryQueue::fifo_for(Duration lifetime) {
  Fifo* idle = nullptr;
  for (Fifo& f : fifos_) {
    if (f.lifetime == lifetime) return &f.items;
    if (idle == nullptr && f.items.empty()) idle = &f;
  }
  if (fifos_.size() < kMaxFifos) return &fifos_.emplace_back(Fifo{lifetime, {}}).items;
  if (idle != nullptr) {
    idle->lifetime = lifetime;  // an unused duration gives its FIFO to a new one
    return &idle->items;
  }
  return nullptr;
}

void ExpiryQueue::recompute_next() noexcept {
  next_ = heap_.empty() ? TimePoint::max() : heap_.front().at;
  for (const Fifo& f : fifos_) {
    if (!f.items.empty()) next_ = std::min(next_, f.items.front().at);
  }
}

}  // namespace idem::detail
