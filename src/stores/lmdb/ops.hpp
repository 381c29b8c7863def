#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "idem/store.hpp"
#include "stores/lmdb/tables.hpp"

namespace idem::lmdb {

/// What the writer hands back once an operation's transaction is committed.
template <class T>
struct Pending {
  Pending(Callback<T> callback) : done(std::move(callback)) {}  // NOLINT: implicit on purpose

  Callback<T> done;
  std::optional<Result<T>> result;
  bool notify = false;  ///< the record completed or went away: wake its watchers
  /// Answered before the transaction, from a lease held in memory (core_leases.cpp): the
  /// transaction leaves the op alone.
  bool settled = false;
};

struct ClaimOp {
  ClaimRequest request;
  Pending<ClaimOutcome> pending;
};
struct CompleteOp {
  RecordId id;
  std::uint64_t token;
  StoredResponse response;
  Duration ttl;
  Pending<TokenCheck> pending;
  /// The in-flight record when its lease is held in memory (core_leases.cpp), marked as
  /// being completed: the completion writes it, whatever the tables hold for the id.
  std::optional<Record> leased;
  /// Set with `leased` when no other operation of the batch is about the id: the
  /// completion is logged but not written to the tables, and the completed record stays
  /// held in memory until the next fold (core_folds.cpp).
  bool held = false;
  TimePoint held_expires_at{};                      ///< the completed record's, once logged
  std::shared_ptr<const std::string> held_encoded;  ///< as logged, for the fold
};
struct ReleaseOp {
  RecordId id;
  std::uint64_t token;
  Pending<TokenCheck> pending;
};
struct RenewOp {
  RecordId id;
  std::uint64_t token;
  Duration lease;
  Pending<TokenCheck> pending;
};
struct EraseOp {
  RecordId id;
  Pending<bool> pending;
  bool lease_erased = false;  ///< a live lease held in memory went with it
  /// A completed record held in memory went with it: its expiry index key, so that the
  /// log records the removal of what it recorded the completion of.
  std::string held_index;
};

/// One queued write. Applying it never consumes its inputs, so a batch that failed as a
/// whole can be applied again one operation at a time.
using Op = std::variant<ClaimOp, CompleteOp, ReleaseOp, RenewOp, EraseOp>;

/// What every operation of one transaction shares.
struct ApplyContext {
  TimePoint now;
  /// False when the map is nearly full: new records are refused with `full_error`, so the
  /// room left stays for completions, renewals and removals.
  bool claims_allowed = true;
  std::string full_error;
};

/// Applies `op` inside `tables`' transaction and records its result in the op. Returns 0,
/// or an LMDB error code after which the transaction must be aborted (the op's result is
/// then meaningless).
int apply(Tables& tables, Op& op, const ApplyContext& ctx);

/// The record an operation is about.
const RecordId& op_id(const Op& op);

/// Whether `request` takes `rec` over: it may, the lease ran out, and the payload is the
/// same.
bool takes_over(const Record& rec, const ClaimRequest& request, TimePoint now);
/// Hands `rec` to `request`'s caller under `token`.
void take_over(Record& rec, const ClaimRequest& request, TimePoint now, std::uint64_t token);
/// A new in-flight record for `request` under `token`.
Record new_in_flight(const ClaimRequest& request, TimePoint now, std::uint64_t token);

}  // namespace idem::lmdb
