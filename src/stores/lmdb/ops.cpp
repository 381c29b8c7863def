// The writer's operations, applied inside its write transaction. Same semantics as the
// memory store (see memory_store.cpp): an expired record is absent, a stale token writes
// nothing, an expired lease is taken over only with the same fingerprint.

#include "stores/lmdb/ops.hpp"

#include <algorithm>
#include <utility>

namespace idem::lmdb {
namespace {

Error corrupt(const RecordId& id, const Found& found) {
  return Error{Errc::corrupt_record,
               "lmdb record " + id.hex() + ": " + found.record->error().message};
}

bool corrupt_record(const Found& found) { return found.record && !found.record->has_value(); }

// The record `op` may act on with `token`, or null (and the op's result set) when none.
template <class T>
Record* owned(Found& found, const RecordId& id, std::uint64_t token, TimePoint now,
              Pending<T>& pending, T stale) {
  if (corrupt_record(found)) {
    pending.result = corrupt(id, found);
    return nullptr;
  }
  if (!found.live(now) || (*found.record)->state != RecordState::in_flight ||
      (*found.record)->fencing_token != token) {
    pending.result = std::move(stale);
    return nullptr;
  }
  return &found.record->value();
}

int apply_claim(Tables& t, ClaimOp& op, const ApplyContext& ctx) {
  const ClaimRequest& req = op.request;
  Found found;
  if (int rc = t.find(req.id, found)) return rc;
  if (corrupt_record(found)) {
    op.pending.result = corrupt(req.id, found);
    return 0;
  }
  ClaimOutcome out;
  if (found.live(ctx.now)) {
    Record rec = **found.record;
    if (takes_over(rec, req, ctx.now)) {
      take_over(rec, req, ctx.now, t.issue_token());
      if (int rc = t.put(req.id, rec, found)) return rc;
      out.acquired = true;
      out.took_over = true;
      out.fencing_token = rec.fencing_token;
    } else {
      out.existing = std::move(rec);
    }
    op.pending.result = std::move(out);
    return 0;
  }
  if (!ctx.claims_allowed) {
    op.pending.result = Error{Errc::store_full, ctx.full_error};
    return 0;
  }
  const Record rec = new_in_flight(req, ctx.now, t.issue_token());
  // `found` may hold an expired record: put() drops its index entry.
  if (int rc = t.put(req.id, rec, found)) return rc;
  out.acquired = true;
  out.fencing_token = rec.fencing_token;
  op.pending.result = std::move(out);
  return 0;
}

int apply_complete(Tables& t, CompleteOp& op, const ApplyContext& ctx) {
  Found found;
  if (int rc = t.find(op.id, found)) return rc;
  // A lease held in memory: the tables hold nothing live for the id (at most an expired
  // record, which put() replaces).
  Record* rec = op.leased ? &*op.leased
                          : owned(found, op.id, op.token, ctx.now, op.pending, TokenCheck::stale);
  if (!rec) return 0;
  Record updated = *rec;
  updated.state = RecordState::completed;
  updated.expires_at = ctx.now + op.ttl;
  // Borrowed, not copied (bodies reach megabytes), and given back whatever happens, so
  // that the op can be applied again.
  updated.response = std::move(op.response);
  const int rc = t.put(op.id, updated, found);
  op.response = std::move(*updated.response);
  if (rc != 0) return rc;
  op.pending.result = TokenCheck::ok;
  op.pending.notify = true;
  return 0;
}

int apply_release(Tables& t, ReleaseOp& op, const ApplyContext& ctx) {
  Found found;
  if (int rc = t.find(op.id, found)) return rc;
  if (!owned(found, op.id, op.token, ctx.now, op.pending, TokenCheck::stale)) return 0;
  if (int rc = t.remove(op.id, found)) return rc;
  op.pending.result = TokenCheck::ok;
  op.pending.notify = true;
  return 0;
}

int apply_renew(Tables& t, RenewOp& op, const ApplyContext& ctx) {
  Found found;
  if (int rc = t.find(op.id, found)) return rc;
  Record* rec = owned(found, op.id, op.token, ctx.now, op.pending, TokenCheck::stale);
  if (!rec) return 0;
  Record updated = *rec;
  updated.lease_expires_at = ctx.now + op.lease;
  updated.expires_at = std::max(updated.expires_at, updated.lease_expires_at);
  if (int rc = t.put(op.id, updated, found)) return rc;
  op.pending.result = TokenCheck::ok;
  return 0;
}

int apply_erase(Tables& t, EraseOp& op, const ApplyContext& ctx) {
  Found found;
  if (int rc = t.find(op.id, found)) return rc;
  // An operator's flush removes a record that does not decode too: that is how one gets
  // rid of it. An expired record is already gone as far as anyone can tell.
  if (!found.present() || (!corrupt_record(found) && !found.live(ctx.now))) {
    op.pending.result = op.lease_erased;
    op.pending.notify = op.lease_erased;
    return 0;
  }
  if (int rc = t.remove(op.id, found)) return rc;
  op.pending.result = true;
  op.pending.notify = true;
  return 0;
}

}  // namespace

int apply(Tables& tables, Op& op, const ApplyContext& ctx) {
  return std::visit(
      [&](auto& o) -> int {
        using T = std::decay_t<decltype(o)>;
        if (o.pending.settled) return 0;
        o.pending.result.reset();
        o.pending.notify = false;
        if constexpr (std::is_same_v<T, ClaimOp>) return apply_claim(tables, o, ctx);
        if constexpr (std::is_same_v<T, CompleteOp>) return apply_complete(tables, o, ctx);
        if constexpr (std::is_same_v<T, ReleaseOp>) return apply_release(tables, o, ctx);
        if constexpr (std::is_same_v<T, RenewOp>) return apply_renew(tables, o, ctx);
        if constexpr (std::is_same_v<T, EraseOp>) return apply_erase(tables, o, ctx);
      },
      op);
}

bool takes_over(const Record& rec, const ClaimRequest& request, TimePoint now) {
  return request.take_over_expired && rec.lease_expired(now) &&
         rec.fingerprint == request.fingerprint;
}

void take_over(Record& rec, const ClaimRequest& request, TimePoint now, std::uint64_t token) {
  rec.fencing_token = token;
  rec.lease_owner = request.owner;
  rec.lease_expires_at = now + request.lease;
  rec.expires_at = now + std::max(request.ttl, request.lease);
}

Record new_in_flight(const ClaimRequest& request, TimePoint now, std::uint64_t token) {
  Record rec;
  rec.state = RecordState::in_flight;
  rec.fingerprint = request.fingerprint;
  rec.fencing_token = token;
  rec.lease_owner = request.owner;
  rec.created_at = now;
  rec.lease_expires_at = now + request.lease;
  // The record outlives its lease even with a short ttl, so a renewed lease stays valid.
  rec.expires_at = now + std::max(request.ttl, request.lease);
  return rec;
}

const RecordId& op_id(const Op& op) {
  return std::visit(
      [](const auto& o) -> const RecordId& {
        if constexpr (std::is_same_v<std::decay_t<decltype(o)>, ClaimOp>)
          return o.request.id;
        else
          return o.id;
      },
      op);
}

}  // namespace idem::lmdb
