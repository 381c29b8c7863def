#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"
#include "idem/result.hpp"

namespace idem {

template <class T>
using Callback = std::function<void(Result<T>)>;

struct ClaimRequest {
  RecordId id;
  Digest fingerprint;
  std::string owner;  ///< who holds the lease (gateway instance id), for operators
  Duration lease;
  Duration ttl;  ///< the in-flight record's lifetime; completion restarts it
  /// When the record is in flight with an expired lease: true takes it over with a new
  /// fencing token (`on_expired_lease = "retry"`), false leaves it as it is.
  bool take_over_expired = true;
};

struct ClaimOutcome {
  bool acquired = false;
  bool took_over = false;           ///< acquired by taking over an expired lease
  std::uint64_t fencing_token = 0;  ///< when acquired
  std::optional<Record> existing;   ///< when not acquired: the record as it is
};

/// Outcome of an operation guarded by a fencing token.
enum class TokenCheck { ok, stale };

struct StoreStats {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;
};

/// A registration for a record's change (completion or removal). Destroying it
/// unregisters; the callback is never called after the destructor returns.
class Watch {
 public:
  virtual ~Watch() = default;
};

/// Where records live. Every operation is atomic per record and completes through its
/// callback, possibly on another thread and possibly before the call returns (the memory
/// store calls back inline). Callbacks must not block. Implementations are thread-safe.
/// Expired records are invisible to every operation, whether or not they were swept yet.
class Store {
 public:
  virtual ~Store() = default;

  /// Atomic claim-or-get: creates an in-flight record with a new fencing token, or
  /// reports the existing one. Fails with store_full when the store is at its limits.
  virtual void claim(ClaimRequest request, Callback<ClaimOutcome> done) = 0;

  /// Completes an in-flight record if `token` is still its fencing token; the record then
  /// expires `ttl` after now.
  virtual void complete(const RecordId& id, std::uint64_t token, StoredResponse response,
                        Duration ttl, Callback<TokenCheck> done) = 0;

  /// Removes an in-flight record if `token` is still its fencing token.
  virtual void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) = 0;

  /// Extends the lease of an in-flight record if `token` is still its fencing token.
  virtual void renew(const RecordId& id, std::uint64_t token, Duration lease,
                     Callback<TokenCheck> done) = 0;

  virtual void get(const RecordId& id, Callback<std::optional<Record>> done) = 0;

  /// Removes a record whatever its state (operators' flush). True when one was removed.
  virtual void erase(const RecordId& id, Callback<bool> done) = 0;

  /// Calls `changed` (on any thread) when the record completes or is removed. Best effort:
  /// callers still bound their wait with a timer. Destroying the Watch from inside its own
  /// callback is allowed.
  virtual std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) = 0;

  /// Reachability, for readiness probes.
  virtual void ping(Callback<bool> done) = 0;

  virtual StoreStats stats() const = 0;
  virtual std::string_view kind() const noexcept = 0;
};

}  // namespace idem
