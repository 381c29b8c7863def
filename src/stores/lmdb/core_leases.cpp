// Durability "power": leases held in memory. A claim that may take over an expired lease
// (on_expired_lease = "retry", the default) makes an in-flight record that a power cut
// takes back anyway (the cut ends every lease). Most such requests complete within a few
// milliseconds, so the lease is first held here, not written: the claim is answered on the
// caller's thread with no transaction, and when the completion comes within
// lease_write_delay (10 ms), the completion is the only write (no claim in the
// transaction, the log or the next checkpoint's pages). A lease still held by then is
// written as it stands and leaves memory, so that a slow request's lease outlives the
// process as before: after a kill -9 a retry waits for it to run out (contract section 7),
// except for a request claimed in the last lease_write_delay before the kill, whose retry
// executes at once.
// Claims under "fail" are always written first: losing one would let a retry execute
// that must be refused with outcome-unknown.
//
// The completion of such a lease is logged (the redo log makes it durable) but not written
// to the tables: the completed record stays held here, answering retries, until the fold
// before the next checkpoint writes it (core_folds.cpp). Random record ids put each
// completion on a B-tree page of its own, so a transaction of a few completions copies two
// pages for each; a fold of a second's completions copies each leaf once for all the
// records it gets.
//
// The writer is the directory's only writer under power (env.hpp), so memory and the
// tables cannot disagree: a lease is made only when the tables hold no live record for
// its id, and every write the writer makes for an id first looks here.

#include <algorithm>
#include <iterator>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "stores/lmdb/core.hpp"

namespace idem::lmdb {
namespace {

// A claim of an id whose lease is held here: the record as it stands, or a take-over
// (never of a lease being written, by its completion or as it stands).
ClaimOutcome claim_held(Record& held, bool being_written, const ClaimRequest& request,
                        TimePoint now, std::atomic<std::uint64_t>& tokens) {
  ClaimOutcome out;
  if (!being_written && takes_over(held, request, now)) {
    take_over(held, request, now, tokens.fetch_add(1) + 1);
    out.acquired = true;
    out.took_over = true;
    out.fencing_token = held.fencing_token;
  } else {
    out.existing = held;
  }
  return out;
}

}  // namespace

std::optional<Result<ClaimOutcome>> Core::claim_in_memory(const ClaimRequest& request,
                                                          TimePoint now) {
  bool first_queued = false;
  auto out = [&] {
    std::lock_guard lock(leases_mutex_);
    const bool was_empty = new_leases_.empty();
    auto answer = claim_locked(request, now);
    first_queued = was_empty && !new_leases_.empty();
    return answer;
  }();
  if (first_queued) {
    // The writer may be asleep until its next sweep: it writes this lease if it is still
    // held lease_write_delay from now. Under load the queue is rarely empty, so this is rare.
    { std::lock_guard lock(mutex_); }
    wake_.notify_one();
  }
  return out;
}

std::optional<Result<ClaimOutcome>> Core::claim_locked(const ClaimRequest& request, TimePoint now) {
  if (auto it = leases_.find(request.id); it != leases_.end()) {
    Lease& held = it->second;
    if (now < held.record.expires_at && held.completed) {
      // Logged, but the log write may not have returned: the writer answers after it.
      if (unflushed(request.id)) return std::nullopt;
      count_read_answer();
      ClaimOutcome out;
      out.existing = held.record;
      return out;
    }
    if (now < held.record.expires_at) {
      // Being written: a take-over is the writer's, once the tables hold the lease.
      if (held.writing && held.record.lease_expired(now)) return std::nullopt;
      ClaimOutcome out =
          claim_held(held.record, held.completing || held.writing, request, now, tokens_);
      if (out.took_over) {
        new_leases_.push_back({request.id, out.fencing_token, std::chrono::steady_clock::now()});
      }
      return out;
    }
    drop_lease(it);
  }
  // Checked under the lock: a completion's lease goes only after its commit is marked.
  if (unflushed(request.id)) return std::nullopt;
  ClaimOutcome out;
  if (auto read = read_live(request.id, now, out.existing); !read) return read.error();
  if (out.existing) {
    const Record& rec = *out.existing;
    // A written in-flight record (claimed under "fail") is taken over by the writer.
    if (takes_over(rec, request, now)) return std::nullopt;
    count_read_answer();
    return out;
  }
  if (!claims_allowed_.load(std::memory_order_relaxed)) {
    store_full_.fetch_add(1, std::memory_order_relaxed);
    return Error{Errc::store_full, full_error_};
  }
  Record rec = new_in_flight(request, now, tokens_.fetch_add(1) + 1);
  out.acquired = true;
  out.fencing_token = rec.fencing_token;
  hold_lease(request.id, std::move(rec));
  new_leases_.push_back({request.id, out.fencing_token, std::chrono::steady_clock::now()});
  return out;
}

std::optional<TokenCheck> Core::release_in_memory(const RecordId& id, std::uint64_t token,
                                                  TimePoint now) {
  {
    std::lock_guard lock(leases_mutex_);
    auto it = leases_.find(id);
    if (it == leases_.end()) return std::nullopt;
    const Lease& held = it->second;
    if (held.writing) return std::nullopt;  // the tables will hold it: the writer answers
    if (now >= held.record.expires_at || held.completing || held.completed ||
        held.record.fencing_token != token) {
      return TokenCheck::stale;
    }
    drop_lease(it);
  }
  notify(id);
  return TokenCheck::ok;
}

std::optional<TokenCheck> Core::renew_in_memory(const RecordId& id, std::uint64_t token,
                                                Duration lease, TimePoint now) {
  std::lock_guard lock(leases_mutex_);
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.writing) return std::nullopt;
  Record& held = it->second.record;
  if (now >= held.expires_at || it->second.completed || held.fencing_token != token) {
    return TokenCheck::stale;
  }
  held.lease_expires_at = now + lease;
  held.expires_at = std::max(held.expires_at, held.lease_expires_at);
  return TokenCheck::ok;
}

std::optional<Record> Core::leased(const RecordId& id, TimePoint now) {
  std::lock_guard lock(leases_mutex_);
  auto it = leases_.find(id);
  if (it == leases_.end() || now >= it->second.record.expires_at) return std::nullopt;
  return it->second.record;
}

void Core::resolve_leases(std::span<Op> ops, TimePoint now) {
  // A completion is held only when nothing else in the batch is about its id: the others
  // apply to the tables in order, and would not see a record that is not there.
  std::unordered_map<RecordId, unsigned, DigestHash> ops_per_id;
  if (ops.size() > 1) {
    for (const Op& op : ops) ++ops_per_id[op_id(op)];
  }
  std::lock_guard lock(leases_mutex_);
  for (Op& op : ops) {
    auto it = leases_.find(op_id(op));
    if (it == leases_.end()) continue;
    Lease& held = it->second;
    if (now >= held.record.expires_at) {
      drop_lease(it);
      continue;
    }
    if (auto* claim = std::get_if<ClaimOp>(&op)) {
      claim->pending.result =
          claim_held(held.record, held.completing || held.writing, claim->request, now, tokens_);
      claim->pending.settled = true;
    } else if (auto* complete = std::get_if<CompleteOp>(&op)) {
      if (held.completing || held.completed || held.record.fencing_token != complete->token) {
        complete->pending.result = TokenCheck::stale;
        complete->pending.settled = true;
        continue;
      }
      held.completing = true;
      complete->leased = held.record;
      complete->held = ops.size() == 1 || ops_per_id[complete->id] == 1;
    } else if (auto* erase = std::get_if<EraseOp>(&op)) {
      if (held.completed) {
        erase->held_index = expiry_key(held.record.expires_at, erase->id);
        erase->lease_erased = true;
        drop_lease(it);
        continue;
      }
      erase->lease_erased = !held.completing;
      if (!held.completing) {
        drop_lease(it);
      }
    } else {
      // Releases and renewals of a lease held here are answered in memory; one that
      // reaches the writer found no lease then, so its token is not this lease's.
      std::visit(
          [](auto& o) {
            if constexpr (std::is_same_v<decltype(o.pending), Pending<TokenCheck>>) {
              o.pending.result = TokenCheck::stale;
              o.pending.settled = true;
            }
          },
          op);
    }
  }
  // Leases made a while ago and still held are written as they stand, unless this batch
  // completes them.
  const auto due = std::chrono::steady_clock::now() - options_.lease_write_delay;
  while (!new_leases_.empty() && new_leases_.front().made <= due) {
    const NewLease made = std::move(new_leases_.front());
    new_leases_.pop_front();
    auto it = leases_.find(made.id);
    if (it == leases_.end()) continue;
    Lease& held = it->second;
    if (held.record.fencing_token != made.token || held.completing || held.writing ||
        held.completed || now >= held.record.expires_at) {
      continue;
    }
    const bool completed_now = std::any_of(ops.begin(), ops.end(), [&](const Op& op) {
      return std::holds_alternative<CompleteOp>(op) && op_id(op) == made.id;
    });
    if (completed_now) continue;
    held.writing = true;
    leases_to_write_.emplace_back(made.id, held.record);
  }
}

std::optional<std::chrono::steady_clock::time_point> Core::next_lease_write() {
  std::lock_guard lock(leases_mutex_);
  if (new_leases_.empty()) return std::nullopt;
  return new_leases_.front().made + options_.lease_write_delay;
}

int Core::write_held_leases(Tables& tables) {
  for (const auto& [id, record] : leases_to_write_) {
    Found found;  // at most an expired record, which put() replaces
    if (int rc = tables.find(id, found)) return rc;
    if (int rc = tables.put(id, record, found)) return rc;
  }
  return 0;
}

void Core::settle_leases(std::span<Op> ops, bool leases_written) {
  std::lock_guard lock(leases_mutex_);
  for (const auto& [id, record] : leases_to_write_) {
    auto it = leases_.find(id);
    if (it == leases_.end() || !it->second.writing) continue;
    if (leases_written) {
      leases_written_.fetch_add(1, std::memory_order_relaxed);
      drop_lease(it);  // the tables hold it now
    } else {
      it->second.writing = false;
    }
  }
  leases_to_write_.clear();
  for (Op& op : ops) {
    auto* complete = std::get_if<CompleteOp>(&op);
    if (!complete || !complete->leased) continue;
    auto it = leases_.find(complete->id);
    if (it == leases_.end() || it->second.record.fencing_token != complete->token) continue;
    const bool written = complete->pending.result && complete->pending.result->has_value();
    Lease& held = it->second;
    if (!written) {
      held.completing = false;
    } else if (!complete->held) {
      drop_lease(it);
    } else {
      held.record.state = RecordState::completed;
      held.record.expires_at = complete->held_expires_at;
      held.record.response = std::move(complete->response);
      held.completing = false;
      held.completed = true;
      const std::size_t bytes = complete->id.size() + complete->held_encoded->size();
      leases_bytes_.fetch_add(bytes, std::memory_order_relaxed);
      leases_bytes_.fetch_sub(held.bytes, std::memory_order_relaxed);
      held.bytes = bytes;
      held.encoded = std::move(complete->held_encoded);
      completions_held_.fetch_add(1, std::memory_order_relaxed);
      ++completed_since_fold_;
    }
  }
}

void Core::log_held_completion(CompleteOp& op, TimePoint now) {
  Record completed = *op.leased;
  completed.state = RecordState::completed;
  completed.expires_at = now + op.ttl;
  // Borrowed and given back, as apply() does: the op may be applied again.
  completed.response = std::move(op.response);
  op.held_encoded = std::make_shared<const std::string>(encode_record(completed));
  op.response = std::move(*completed.response);
  redo_batch_.put(RedoTable::records, id_bytes(op.id), *op.held_encoded);
  redo_batch_.put(RedoTable::expiry, expiry_key(completed.expires_at, op.id), {});
  op.held_expires_at = completed.expires_at;
  op.pending.result = TokenCheck::ok;
  op.pending.notify = true;
}

void Core::sweep_leases(TimePoint now) {
  std::lock_guard lock(leases_mutex_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (now >= it->second.record.expires_at) drop_lease(it);
    it = next;
  }
}

void Core::hold_lease(const RecordId& id, Record record) {
  // About what the record would take in the tables, without its response.
  const std::size_t bytes =
      id.size() + record.fingerprint.size() + record.lease_owner.size() + 4 * sizeof(std::int64_t);
  leases_.emplace(id, Lease{std::move(record), bytes});
  leases_made_.fetch_add(1, std::memory_order_relaxed);
  leases_count_.fetch_add(1, std::memory_order_relaxed);
  leases_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void Core::drop_lease(Leases::iterator it) {
  leases_count_.fetch_sub(1, std::memory_order_relaxed);
  leases_bytes_.fetch_sub(it->second.bytes, std::memory_order_relaxed);
  leases_.erase(it);
}

}  // namespace idem::lmdb
