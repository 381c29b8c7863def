#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "idem/clock.hpp"
#include "idem/result.hpp"
#include "idem/store.hpp"

namespace idem {

/// Settings of the Redis store. Start from parse_redis_url() or fill the fields directly.
struct RedisStoreOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int db = 0;
  std::string username;  ///< ACL user; empty: AUTH with the password alone (Redis < 6 style)
  std::string password;  ///< empty: no AUTH
  /// Prepended to every key and channel, so that several deployments can share a Redis.
  std::string key_prefix = "idem:";
  Duration connect_timeout = std::chrono::seconds(2);
  /// A command not answered in time fails with Errc::timeout and resets its connection.
  Duration command_timeout = std::chrono::seconds(1);
  /// Connections for commands; each pipelines many commands. One more connection is used
  /// for pub/sub (watch()).
  std::size_t pool_size = 2;
  /// Reconnect backoff: doubles from min to max after each failed attempt.
  Duration reconnect_min = std::chrono::milliseconds(50);
  Duration reconnect_max = std::chrono::seconds(1);
  /// Redis's own TTL is only the garbage collector: records expire logically at expires_at
  /// by `clock`, and Redis drops them `expiry_slack` later. See docs/redis-store.md.
  Duration expiry_slack = std::chrono::minutes(1);
  /// Completed records kept in this process, so that retries of a completed request are
  /// answered without a round trip; Redis tells the store when any of them is removed
  /// (client-side caching, see docs/redis-store.md). Two more connections when not 0.
  std::size_t replay_cache = 10'000;
  /// ... and at most this many bytes of them; a response over an eighth of it is not kept.
  std::size_t replay_cache_bytes = std::size_t{64} << 20;
  /// Told, on the store's executor, each time the replay cache starts answering
  /// (`true`, "") and each time it stops or cannot start (`false`, why): a connection lost,
  /// or Redis refusing CLIENT TRACKING or the SUBSCRIBE its invalidations need (an ACL).
  /// Retries are still answered while it is off, each with a round trip. Must not block.
  using OnReplayCacheState = std::function<void(bool active, const std::string& why)>;
  OnReplayCacheState on_replay_cache_state;
  /// make_redis_store() waits up to connect_timeout for the first connection, so that the
  /// first requests do not fail while it is being set up. It returns either way. (Not on
  /// an external executor: see redis_store_asio.hpp.)
  bool wait_for_connection = true;
  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>();
};

/// Parses `redis://[[user]:password@]host[:port][/db]` into `base` (which keeps its other
/// fields). `rediss://` (TLS) is refused with a message saying so: the packaged hiredis has
/// no TLS support. Fails with Errc::invalid_argument naming what is wrong.
Result<RedisStoreOptions> parse_redis_url(std::string_view url, RedisStoreOptions base = {});

/// The Redis store: many gateway instances share one Redis and see one truth. Every
/// operation is one atomic Lua script (one round trip), pipelined over a small pool of
/// connections on the store's own I/O thread (or an executor of the caller's, see
/// redis_store_asio.hpp), where all callbacks run, except those of claims answered from
/// the replay cache: those run before claim() returns. While Redis is
/// unreachable, operations fail at once with Errc::store_unavailable, and a command that is
/// not answered within command_timeout fails with Errc::timeout; the store reconnects by
/// itself with capped exponential backoff. Thread-safe.
class RedisStore : public Store {
 public:
  /// The HMAC secret for record names, shared by every instance: SET NX of 32 fresh random
  /// bytes, then GET, so the first instance's secret wins and the others read it.
  virtual void load_or_create_secret(Callback<std::string> done) = 0;

  /// Stops taking operations: from now on every call fails at once with
  /// Errc::store_unavailable (and watch() returns a watch that is never called). The
  /// operations called before are answered first (or time out after command_timeout); then
  /// the connections close and `done` runs on the store's executor. On an external
  /// executor this leaves its io_context with nothing pending, so that a loop that should
  /// end when it runs out of work does end. Idempotent; later calls never call `done`.
  virtual void close(std::function<void()> done) = 0;

  /// Drops record `id` from this store's replay cache, if it is kept there. For a removal
  /// made through another store of the same process (a gateway's admin API beside its
  /// workers' stores): Redis tells this store too, but that arrives on this store's loop in
  /// its turn, which can be after the next request. Any thread; no round trip.
  virtual void forget_cached(const RecordId& id) = 0;
};

/// Fails only on invalid options (Errc::invalid_argument); an unreachable Redis is not an
/// error here: the store keeps trying, and ping() says false until it is reached.
Result<std::shared_ptr<RedisStore>> make_redis_store(RedisStoreOptions options);

}  // namespace idem
