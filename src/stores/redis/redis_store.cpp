// The Redis store: each Store operation is one Lua script (scripts.cpp) run by EVALSHA
// through the pipelined client (client.hpp). This file turns requests into script arguments
// and replies into results, owns the I/O thread, and keeps the approximate stats.
// docs/redis-store.md has the design, the key layout and the failure behaviour.

#include "idem/redis_store.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <future>
#include <optional>
#include <thread>
#include <utility>

#include "idem/record.hpp"
#include "idem/record_name.hpp"
#include "idem/redis_store_asio.hpp"
#include "stores/redis/client.hpp"

namespace idem {
namespace {

namespace asio = boost::asio;
using redis::as_string;
using redis::Client;
using redis::Command;
using redis::Reply;
using redis::Script;

// encode_record() of a completed record with an empty fingerprint and owner puts the
// response's bytes from here on: the codec's fixed header is 43 bytes then. The complete
// script appends exactly these bytes to the stored record's header.
constexpr std::size_t kResponseOffset = 43;

std::int64_t to_ms(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string token_bytes(std::uint64_t token) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((token >> (8 * i)) & 0xFF);
  return out;
}

/// The codec's bytes of a completed record whose response starts at kResponseOffset.
std::string encode_response_record(StoredResponse response) {
  Record r;
  r.state = RecordState::completed;
  r.response = std::move(response);
  return encode_record(r);
}

Error reply_error(const redisReply& r) {
  const std::string_view text = as_string(r);
  if (text.starts_with(redis::kCorruptReply)) {
    return Error{Errc::corrupt_record, "redis: " + std::string(text)};
  }
  return redis::error_of(r);
}

Error malformed(std::string_view what) {
  return Error{Errc::store_unavailable, "redis: unexpected reply to " + std::string(what)};
}

bool is_int(const redisReply* r) { return r && r->type == REDIS_REPLY_INTEGER; }

/// Checks a reply for the {code, dbytes, drecords} shape of the mutating scripts.
const redisReply* triple(const redisReply& r) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 3) return nullptr;
  for (std::size_t i = 0; i < 3; ++i) {
    if (!is_int(r.element[i])) return nullptr;
  }
  return &r;
}

/// What this instance's scripts added and removed (see docs/redis-store.md on stats). Shared
/// with reply handlers, which may run after the store is gone.
struct Counters {
  std::atomic<std::int64_t> records{0};
  std::atomic<std::int64_t> bytes{0};

  /// Adds the {dbytes, drecords} pair at `first` of a script's reply.
  void add(const redisReply& r, std::size_t first) {
    bytes.fetch_add(r.element[first]->integer, std::memory_order_relaxed);
    records.fetch_add(r.element[first + 1]->integer, std::memory_order_relaxed);
  }
};

// Key layout (docs/redis-store.md): the hash tag {id} keeps a record's key and channel in
// one Cluster slot. Channels are server-wide, so the database number keeps databases apart.
std::string record_key(const std::string& prefix, const RecordId& id) {
  return prefix + "{" + id.hex() + "}";
}
std::string channel_name(const std::string& prefix, int db, const RecordId& id) {
  return record_key(prefix, id) + ":done:" + std::to_string(db);
}

/// Owns the io_context and its thread when the store is not given an executor.
struct Runtime {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
};

class RedisStoreImpl final : public RedisStore {
 public:
  /// Without `executor`, the store runs its own io_context on its own thread.
  RedisStoreImpl(RedisStoreOptions options, std::optional<asio::any_io_executor> executor)
      : options_(std::move(options)),
        clock_(options_.clock ? options_.clock : std::make_shared<SystemClock>()),
        runtime_(executor ? nullptr : std::make_unique<Runtime>()) {
    redis::ClientOptions c;
    c.endpoint = {options_.host, options_.port, options_.connect_timeout, options_.command_timeout};
    if (!options_.password.empty()) {
      c.handshake.push_back(options_.username.empty()
                                ? Command{"AUTH", options_.password}.take()
                                : Command{"AUTH", options_.username, options_.password}.take());
    }
    if (options_.db != 0)
      c.handshake.push_back(Command{"SELECT", std::to_string(options_.db)}.take());
    c.pool_size = std::clamp<std::size_t>(options_.pool_size, 1, 64);
    c.backoff_min = options_.reconnect_min;
    c.backoff_max = std::max(options_.reconnect_max, options_.reconnect_min);
    c.channel_of = [prefix = options_.key_prefix, db = options_.db](const RecordId& id) {
      return channel_name(prefix, db, id);
    };
    if (options_.replay_cache > 0) {
      cache_ =
          std::make_shared<redis::ReplayCache>(options_.replay_cache, options_.replay_cache_bytes);
      c.replay_cache = cache_;
      c.on_replay_cache_state = options_.on_replay_cache_state;
    }
    client_ =
        std::make_shared<Client>(executor ? *executor : runtime_->io.get_executor(), std::move(c));
    if (runtime_) runtime_->thread = std::thread([rt = runtime_.get()] { rt->io.run(); });
    client_->start();
    // Never on an external executor: the caller's thread may be the one that has to run it.
    if (options_.wait_for_connection && runtime_) {
      (void)client_->wait_up(options_.connect_timeout);
    }
  }

  ~RedisStoreImpl() override;

  void claim(ClaimRequest request, Callback<ClaimOutcome> done) override;
  void complete(const RecordId& id, std::uint64_t token, StoredResponse response, Duration ttl,
                Callback<TokenCheck> done) override;
  void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) override;
  void renew(const RecordId& id, std::uint64_t token, Duration lease,
             Callback<TokenCheck> done) override;
  void get(const RecordId& id, Callback<std::optional<Record>> done) override;
  void erase(const RecordId& id, Callback<bool> done) override;
  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) override {
    if (closed_.load(std::memory_order_acquire)) return std::make_unique<Watch>();
    return client_->watch(id, std::move(changed));
  }
  void ping(Callback<bool> done) override;
  StoreStats stats() const override {
    return {static_cast<std::uint64_t>(std::max<std::int64_t>(counters_->records.load(), 0)),
            static_cast<std::uint64_t>(std::max<std::int64_t>(counters_->bytes.load(), 0))};
  }
  std::string_view kind() const noexcept override { return "redis"; }
  void load_or_create_secret(Callback<std::string> done) override;
  void close(std::function<void()> done) override {
    if (closed_.exchange(true)) return;
    client_->close_when_idle(closed_error(), std::move(done));
  }
  void forget_cached(const RecordId& id) override {
    if (cache_) cache_->invalidate(key_of(id));
  }

 private:
  static Error closed_error() { return Error{Errc::store_unavailable, "redis store closed"}; }
  /// After close(): fails `done` at once, without touching the client.
  template <class T>
  bool refused(Callback<T>& done) {
    if (!closed_.load(std::memory_order_acquire)) return false;
    done(closed_error());
    return true;
  }

  std::string key_of(const RecordId& id) const { return record_key(options_.key_prefix, id); }
  std::string channel_of(const RecordId& id) const {
    return channel_name(options_.key_prefix, options_.db, id);
  }
  /// EVALSHA header: the script, its keys, then now and slack; the caller adds the rest.
  Command evalsha(Script s, std::initializer_list<std::string_view> keys, std::size_t argc,
                  TimePoint now, std::size_t reserve = 256) const;
  void token_check(Script s, const RecordId& id, Command cmd, Callback<TokenCheck> done);

  RedisStoreOptions options_;
  std::shared_ptr<const Clock> clock_;
  std::unique_ptr<Runtime> runtime_;
  std::shared_ptr<Client> client_;
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
  std::shared_ptr<redis::ReplayCache> cache_;  ///< none when options_.replay_cache is 0
  std::atomic<bool> closed_{false};
};

// Pending callbacks fail with store_unavailable, then the thread stops. When the last
// reference goes on the I/O thread itself (inside a callback), that thread cannot be joined
// from here: a helper thread joins it once the callback returned.
// On an external executor the store cannot wait: it asks the client to stop and leaves; the
// client's handlers keep what they use alive and touch nothing of this object.
RedisStoreImpl::~RedisStoreImpl() {
  Runtime* rt = runtime_.get();
  auto client = std::move(client_);
  if (!rt) {
    // After close() the client stops by itself, and its executor may be gone already.
    if (!closed_) client->stop(Error{Errc::store_unavailable, "redis store shut down"}, [] {});
    return;
  }
  if (rt->thread.get_id() == std::this_thread::get_id()) {
    client->stop(Error{Errc::store_unavailable, "redis store shut down"}, [] {});
    std::thread([rt = std::move(runtime_), client = std::move(client)]() mutable {
      rt->work.reset();
      rt->thread.join();
      client.reset();
      rt.reset();
    }).detach();
    return;
  }
  std::promise<void> stopped;
  client->stop(Error{Errc::store_unavailable, "redis store shut down"},
               [&stopped] { stopped.set_value(); });
  stopped.get_future().wait();
  rt->work.reset();
  rt->io.stop();
  rt->thread.join();
}

Command RedisStoreImpl::evalsha(Script s, std::initializer_list<std::string_view> keys,
                                std::size_t argc, TimePoint now, std::size_t reserve) const {
  Command cmd;
  cmd.reserve(reserve);
  cmd.begin(3 + keys.size() + 2 + argc);
  cmd.arg("EVALSHA");
  cmd.arg(redis::script(s).sha);
  cmd.arg(static_cast<std::int64_t>(keys.size()));
  for (auto k : keys) cmd.arg(k);
  cmd.arg(to_ms(now));
  cmd.arg(static_cast<std::int64_t>(options_.expiry_slack.count()));
  return cmd;
}

void RedisStoreImpl::claim(ClaimRequest req, Callback<ClaimOutcome> done) {
  if (refused(done)) return;
  const TimePoint now = clock_->now();
  std::string key = key_of(req.id);
  if (cache_) {
    if (std::optional<Record> kept = cache_->find(key, now)) {
      ClaimOutcome out;
      out.existing = std::move(kept);
      return done(std::move(out));
    }
  }
  Record fresh;
  fresh.state = RecordState::in_flight;
  fresh.fingerprint = req.fingerprint;
  fresh.lease_owner = std::move(req.owner);
  fresh.created_at = now;
  fresh.lease_expires_at = now + req.lease;
  // The record outlives its lease even with a short ttl, so a renewed lease stays valid.
  fresh.expires_at = now + std::max(req.ttl, req.lease);
  // The token counter's seed: see the claim script.
  const std::int64_t seed = std::max<std::int64_t>(to_ms(now), 0) * 1000;
  const std::string encoded = encode_record(fresh);
  // The token's offset, 1-based as Lua counts: after magic, version, state, the
  // fingerprint's length byte and the fingerprint. Checked against the bytes, as for
  // complete: the script splices the token in there without parsing the record.
  const std::size_t fingerprint_size = fresh.fingerprint.bytes().size();
  if (encoded.size() < 7 + fingerprint_size + 8 ||
      static_cast<unsigned char>(encoded[5]) != fingerprint_size) {
    return done(Error{Errc::invalid_argument, "redis store: record codec layout changed"});
  }
  Command cmd =
      evalsha(Script::claim, {key, options_.key_prefix + "token"}, 5, now, encoded.size() + 256);
  cmd.arg(encoded);
  cmd.arg(req.take_over_expired ? "1" : "0");
  cmd.arg(seed);
  cmd.arg(static_cast<std::int64_t>(7 + fingerprint_size));
  cmd.arg(to_ms(fresh.expires_at));
  client_->eval(
      Script::claim, req.id, std::move(cmd).take(),
      [counters = counters_, client = cache_ ? client_ : nullptr, key = std::move(key),
       done = std::move(done)](Result<Reply> r) mutable {
        if (!r) return done(r.error());
        const redisReply& reply = **r;
        if (redis::is_error(reply)) return done(reply_error(reply));
        if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 2 || !is_int(reply.element[0])) {
          return done(malformed("claim"));
        }
        ClaimOutcome out;
        if (reply.element[0]->integer == 0) {
          if (reply.element[1]->type != REDIS_REPLY_STRING) return done(malformed("claim"));
          auto rec = decode_record(as_string(*reply.element[1]));
          if (!rec) return done(rec.error());
          // Retried once: likely again. The next retries are answered here.
          if (client && rec->state == RecordState::completed) client->cache(std::move(key));
          out.existing = std::move(*rec);
          return done(std::move(out));
        }
        if (reply.elements < 4 || !is_int(reply.element[1]) || !is_int(reply.element[2]) ||
            !is_int(reply.element[3])) {
          return done(malformed("claim"));
        }
        counters->add(reply, 2);
        out.acquired = true;
        out.took_over = reply.element[0]->integer == 2;
        out.fencing_token = static_cast<std::uint64_t>(reply.element[1]->integer);
        done(std::move(out));
      });
}

void RedisStoreImpl::token_check(Script s, const RecordId& id, Command cmd,
                                 Callback<TokenCheck> done) {
  client_->eval(s, id, std::move(cmd).take(),
                [counters = counters_, s, done = std::move(done)](Result<Reply> r) {
                  if (!r) return done(r.error());
                  if (redis::is_error(**r)) return done(reply_error(**r));
                  const redisReply* t = triple(**r);
                  if (!t) return done(malformed(redis::script(s).name));
                  counters->add(*t, 1);
                  done(t->element[0]->integer == 1 ? TokenCheck::ok : TokenCheck::stale);
                });
}

void RedisStoreImpl::complete(const RecordId& id, std::uint64_t token, StoredResponse response,
                              Duration ttl, Callback<TokenCheck> done) {
  if (refused(done)) return;
  const TimePoint now = clock_->now();
  const std::string encoded = encode_response_record(std::move(response));
  // Checked, not assumed: a codec whose layout moved must not have its bytes spliced.
  if (encoded.size() <= kResponseOffset || encoded[kResponseOffset - 1] != 1) {
    return done(Error{Errc::invalid_argument, "redis store: record codec layout changed"});
  }
  // Reserved up front: one allocation for a large body.
  Command cmd = evalsha(Script::complete, {key_of(id)}, 4, now, encoded.size() + 512);
  cmd.arg(token_bytes(token));
  cmd.arg(std::string_view(encoded).substr(kResponseOffset));
  cmd.arg(to_ms(now + ttl));
  cmd.arg(channel_of(id));
  token_check(Script::complete, id, std::move(cmd), std::move(done));
}

void RedisStoreImpl::release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) {
  if (refused(done)) return;
  Command cmd = evalsha(Script::release, {key_of(id)}, 2, clock_->now());
  cmd.arg(token_bytes(token));
  cmd.arg(channel_of(id));
  token_check(Script::release, id, std::move(cmd), std::move(done));
}

void RedisStoreImpl::renew(const RecordId& id, std::uint64_t token, Duration lease,
                           Callback<TokenCheck> done) {
  if (refused(done)) return;
  Command cmd = evalsha(Script::renew, {key_of(id)}, 2, clock_->now());
  cmd.arg(token_bytes(token));
  cmd.arg(static_cast<std::int64_t>(lease.count()));
  token_check(Script::renew, id, std::move(cmd), std::move(done));
}

void RedisStoreImpl::get(const RecordId& id, Callback<std::optional<Record>> done) {
  if (refused(done)) return;
  Command cmd = evalsha(Script::get, {key_of(id)}, 0, clock_->now());
  client_->eval(Script::get, id, std::move(cmd).take(), [done = std::move(done)](Result<Reply> r) {
    if (!r) return done(r.error());
    const redisReply& reply = **r;
    if (redis::is_error(reply)) return done(reply_error(reply));
    if (reply.type == REDIS_REPLY_NIL) return done(std::optional<Record>{});
    if (reply.type != REDIS_REPLY_STRING) return done(malformed("get"));
    auto rec = decode_record(as_string(reply));
    if (!rec) return done(rec.error());
    done(std::optional<Record>(std::move(*rec)));
  });
}

void RedisStoreImpl::erase(const RecordId& id, Callback<bool> done) {
  if (refused(done)) return;
  const std::string key = key_of(id);
  // Redis tells the other instances; this one must not wait for that.
  if (cache_) cache_->invalidate(key);
  Command cmd = evalsha(Script::erase, {key}, 1, clock_->now());
  cmd.arg(channel_of(id));
  client_->eval(Script::erase, id, std::move(cmd).take(),
                [counters = counters_, done = std::move(done)](Result<Reply> r) {
                  if (!r) return done(r.error());
                  if (redis::is_error(**r)) return done(reply_error(**r));
                  const redisReply* t = triple(**r);
                  if (!t) return done(malformed("erase"));
                  counters->add(*t, 1);
                  done(t->element[0]->integer == 1);
                });
}

void RedisStoreImpl::ping(Callback<bool> done) {
  if (refused(done)) return;
  client_->send({Command{"PING"}.take()}, [done = std::move(done)](Result<Reply> r) {
    done(r && (*r)->type == REDIS_REPLY_STATUS && as_string(**r) == "PONG");
  });
}

void RedisStoreImpl::load_or_create_secret(Callback<std::string> done) {
  if (refused(done)) return;
  const std::string key = options_.key_prefix + "secret";
  // One connection, in order: the GET sees our SET or the one that won before it.
  client_->send({Command{"SET", key, RecordNamer::generate_secret(), "NX"}.take(),
                 Command{"GET", key}.take()},
                [done = std::move(done)](Result<Reply> r) {
                  if (!r) return done(r.error());
                  const redisReply& reply = **r;
                  if (redis::is_error(reply)) return done(redis::error_of(reply));
                  if (reply.type != REDIS_REPLY_STRING || reply.len < 16) {
                    return done(Error{Errc::store_unavailable,
                                      "redis: no usable secret (SET NX refused? read-only "
                                      "replica?)"});
                  }
                  done(std::string(as_string(reply)));
                });
}

}  // namespace

namespace {

Result<std::shared_ptr<RedisStore>> make(RedisStoreOptions options,
                                         std::optional<asio::any_io_executor> executor) {
  auto bad = [](std::string what) {
    return Error{Errc::invalid_argument, "redis store: " + std::move(what)};
  };
  if (options.host.empty()) return bad("host is empty");
  if (options.port == 0) return bad("port is 0");
  if (options.db < 0) return bad("database must be >= 0");
  if (options.connect_timeout <= Duration::zero()) return bad("connect_timeout must be > 0");
  if (options.command_timeout <= Duration::zero()) return bad("command_timeout must be > 0");
  if (options.reconnect_min <= Duration::zero()) return bad("reconnect_min must be > 0");
  if (options.expiry_slack < Duration::zero()) return bad("expiry_slack must be >= 0");
  // A brace would become the Cluster hash tag and put every record in one slot.
  if (options.key_prefix.find_first_of("{}") != std::string::npos) {
    return bad("key_prefix must not contain '{' or '}'");
  }
  return std::shared_ptr<RedisStore>(
      std::make_shared<RedisStoreImpl>(std::move(options), std::move(executor)));
}

}  // namespace

Result<std::shared_ptr<RedisStore>> make_redis_store(RedisStoreOptions options) {
  return make(std::move(options), std::nullopt);
}

Result<std::shared_ptr<RedisStore>> make_redis_store(RedisStoreOptions options,
                                                     boost::asio::any_io_executor executor) {
  return make(std::move(options), std::move(executor));
}

}  // namespace idem
