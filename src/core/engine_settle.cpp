// Completions and releases that the store failed, written again in the background.
//
// A completion the store did not take leaves the record in flight: once its lease runs
// out, the client's retry executes the request again (on_expired_lease = "retry") or is
// answered outcome-unknown ("fail"). When the failure may pass (a Redis connection that
// comes back, a command that timed out, room that a checkpoint or a sweep frees), writing
// the completion again before the lease runs out keeps the request executed once. The
// caller has already been told of the first failure, so that its client is not kept
// waiting on the store. Releases are written again the same way, and a claim that timed
// out is looked for, in case the store carried it out after all (found_lost_claim).

#include <algorithm>
#include <chrono>
#include <string>

#include "core/engine_impl.hpp"

namespace idem {
namespace {

constexpr Duration kFirstRetry = std::chrono::milliseconds(50);
constexpr Duration kLongestWait = std::chrono::seconds(1);

bool may_pass(const Error& error) noexcept {
  return error.code == Errc::store_unavailable || error.code == Errc::timeout ||
         error.code == Errc::store_full;
}

}  // namespace

void Engine::settle_later(Settlement settlement, const Error& error) {
  if (!may_pass(error) || !impl_->options.scheduler) return;
  impl_->settling.fetch_add(1, std::memory_order_relaxed);
  settlement.delay = kFirstRetry;
  schedule_settlement(std::move(settlement));
}

void Engine::schedule_settlement(Settlement settlement) {
  Impl& impl = *impl_;
  std::lock_guard lock(impl.settle_mutex);
  if (impl.settle_stopped) {
    impl.settling.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  const std::uint64_t id = impl.next_settle++;
  const Duration delay = settlement.delay;
  // Weak: the engine owns its timers and, through its options, the scheduler, so a strong
  // reference here would be a cycle. Retries end with the engine.
  impl.settle_timers[id] = impl.options.scheduler->after(
      delay, [weak = weak_from_this(), id, settlement = std::move(settlement)]() mutable {
        auto self = weak.lock();
        if (!self) return;
        std::unique_ptr<Timer> own;  // ends after the callback: a timer may end in its own
        {
          std::lock_guard lock(self->impl_->settle_mutex);
          auto it = self->impl_->settle_timers.find(id);
          if (it == self->impl_->settle_timers.end()) return;  // stop_retries took it
          own = std::move(it->second);
          self->impl_->settle_timers.erase(it);
        }
        self->settle_again(std::move(settlement));
      });
}

void Engine::settle_again(Settlement settlement) {
  ++settlement.attempts;
  if (!settlement.claim_owner.empty()) {
    const RecordId id = settlement.id;
    impl_->options.store->get(id, [self = shared_from_this(), settlement = std::move(settlement)](
                                      Result<std::optional<Record>> found) mutable {
      self->found_lost_claim(std::move(settlement), std::move(found));
    });
    return;
  }
  std::optional<StoredResponse> response = settlement.stored;  // the original stays for later
  const RecordId id = settlement.id;
  const std::uint64_t token = settlement.token;
  const Duration ttl = settlement.ttl;
  auto answered = [self = shared_from_this(),
                   settlement = std::move(settlement)](Result<TokenCheck> result) mutable {
    self->settled(std::move(settlement), std::move(result));
  };
  if (response) {
    impl_->options.store->complete(id, token, std::move(*response), ttl, std::move(answered));
  } else {
    impl_->options.store->release(id, token, std::move(answered));
  }
}

// A claim that timed out holds the record only if it was carried out after all: the
// record is then in flight under the claim's own lease owner, and its fencing token
// releases exactly that attempt.
void Engine::found_lost_claim(Settlement settlement, Result<std::optional<Record>> found) {
  if (!found) return settled(std::move(settlement), found.error());
  const std::optional<Record>& record = *found;
  if (!record || record->state != RecordState::in_flight ||
      record->lease_owner != settlement.claim_owner) {
    impl_->settling.fetch_sub(1, std::memory_order_relaxed);  // it was not carried out
    return;
  }
  settlement.token = record->fencing_token;
  const RecordId id = settlement.id;
  const std::uint64_t token = settlement.token;
  impl_->options.store->release(
      id, token,
      [self = shared_from_this(), settlement = std::move(settlement)](
          Result<TokenCheck> r) mutable { self->settled(std::move(settlement), std::move(r)); });
}

void Engine::settled(Settlement settlement, Result<TokenCheck> result) {
  Impl& impl = *impl_;
  const std::string what(settlement.what());
  const std::string attempt = " on attempt " + std::to_string(settlement.attempts);
  if (result) {
    impl.settling.fetch_sub(1, std::memory_order_relaxed);
    if (*result == TokenCheck::ok) {
      impl.publish(EventKind::store_recovered, settlement.id, settlement.route,
                   what + " written" + attempt);
    } else if (settlement.stored) {
      report_stale_completion(std::move(settlement));
    }
    return;
  }
  if (may_pass(result.error()) &&
      impl.options.clock->now() + settlement.delay < settlement.give_up_at) {
    settlement.delay = std::min(settlement.delay * 2, kLongestWait);
    return schedule_settlement(std::move(settlement));
  }
  impl.settling.fetch_sub(1, std::memory_order_relaxed);
  impl.publish_store_error(
      settlement.id, settlement.route,
      Error{result.error().code, what + " given up" + attempt + ": " + result.error().message});
}

// A retried completion found the record no longer in flight under its token. Either an
// attempt that timed out was carried out after all (a command Redis received before the
// connection was reset), or the lease ran out and another attempt holds the record, which
// the fencing token protects.
void Engine::report_stale_completion(Settlement settlement) {
  const RecordId id = settlement.id;
  impl_->options.store->get(id, [self = shared_from_this(), settlement = std::move(settlement)](
                                    Result<std::optional<Record>> found) {
    const std::string attempt = " on attempt " + std::to_string(settlement.attempts);
    const bool ours = found && *found && (*found)->state == RecordState::completed &&
                      (*found)->fencing_token == settlement.token;
    if (ours) {
      self->impl_->publish(EventKind::store_recovered, settlement.id, settlement.route,
                           "completion found written by an earlier attempt" + attempt);
    } else {
      self->impl_->publish(EventKind::lease_lost, settlement.id, settlement.route,
                           "completion found the record no longer held" + attempt);
    }
  });
}

std::size_t Engine::settling() const noexcept {
  return impl_->settling.load(std::memory_order_relaxed);
}

void Engine::stop_retries() {
  std::unordered_map<std::uint64_t, std::unique_ptr<Timer>> dropped;
  {
    std::lock_guard lock(impl_->settle_mutex);
    impl_->settle_stopped = true;
    dropped.swap(impl_->settle_timers);
    impl_->settling.fetch_sub(dropped.size(), std::memory_order_relaxed);
  }
  // Destroyed unlocked: a timer's destructor may wait for its running callback, which
  // takes the lock.
  dropped.clear();
}

}  // namespace idem
