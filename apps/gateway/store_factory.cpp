#include "store_factory.hpp"

#include <chrono>
#include <future>
#include <stdexcept>

#include "config.hpp"
#include "event_log.hpp"
#include "idem/memory_store.hpp"
#ifdef IDEM_GATEWAY_HAVE_LMDB
#include "idem/lmdb_store.hpp"
#endif
#ifdef IDEM_GATEWAY_HAVE_REDIS
#include "idem/redis_store_asio.hpp"
#endif

namespace idem::gateway {

#ifdef IDEM_GATEWAY_HAVE_REDIS
namespace {

// Keeps `active` (the workers whose caches answer) and says in the log when worker
// `worker`'s cache starts or stops, and why: a cache Redis refuses to track for (an ACL)
// would otherwise only show as retries that cost a round trip. On that worker's loop.
RedisStoreOptions::OnReplayCacheState replay_cache_reporter(
    std::shared_ptr<std::atomic<int>> active, int worker) {
  return [active = std::move(active), worker, on = false](bool now_on,
                                                          const std::string& why) mutable {
    if (now_on != on) active->fetch_add(now_on ? 1 : -1, std::memory_order_relaxed);
    on = now_on;
    if (now_on) {
      log::info("redis replay cache on", LogFields().add("worker", std::int64_t{worker}));
    } else {
      log::warn("redis replay cache off: retries of completed requests cost a round trip",
                LogFields().add("worker", std::int64_t{worker}).add("reason", why));
    }
  };
}

}  // namespace
#endif

std::string default_store_spec() {
#ifdef IDEM_GATEWAY_HAVE_LMDB
  return "lmdb:./idem-data";
#else
  return "memory";
#endif
}

StoreHandle make_store(std::string_view spec, std::string_view origin,
                       const StoreSettings& settings) {
  auto error = [&](std::string_view what) {
    return ConfigError(std::string(origin) + ": " + std::string(what));
  };
  if (spec == "memory") {
    MemoryStoreOptions options;
    options.max_records = settings.memory_max_records;
    options.max_bytes = settings.memory_max_bytes;
    return StoreHandle{make_memory_store(options), nullptr, nullptr, nullptr};
  }

  if (spec.starts_with("lmdb:")) {
    std::string path(spec.substr(5));
    if (path.empty()) throw error("expected lmdb:PATH");
#ifdef IDEM_GATEWAY_HAVE_LMDB
    LmdbStoreOptions options;
    options.path = path;
    options.map_size = settings.lmdb_map_size;
    options.durability = settings.durability_power ? Durability::power : Durability::process;
    try {
      auto store = make_lmdb_store(options);
      return StoreHandle{store, nullptr,
                         [path] {
                           try {
                             return load_or_create_secret(path);
                           } catch (const LmdbStoreError& e) {
                             throw std::runtime_error(e.what());
                           }
                         },
                         nullptr};
    } catch (const LmdbStoreError& e) {
      throw std::runtime_error(std::string(origin) + ": " + e.what());
    }
#else
    throw error("the lmdb store is not available in this build (use --store memory)");
#endif
  }

  if (spec.starts_with("redis://") || spec.starts_with("rediss://")) {
#ifdef IDEM_GATEWAY_HAVE_REDIS
    auto options = parse_redis_url(spec);
    if (!options) throw error(options.error().message);
    options->key_prefix = settings.redis_key_prefix;
    options->replay_cache = settings.redis_replay_cache;
    if (settings.redis_password) {
      options->password = *settings.redis_password;
      options->username = settings.redis_username;
    } else if (!settings.redis_username.empty()) {
      if (options->password.empty()) {
        throw ConfigError("redis_username: needs a password (redis_password, or in the URL)");
      }
      options->username = settings.redis_username;
    }
    // This store serves start-up, the admin API and /readyz, never a retry: no replay cache
    // (and so no connections for one). Each worker's store has its own.
    RedisStoreOptions shared = *options;
    shared.replay_cache = 0;
    auto made = make_redis_store(shared);
    if (!made) throw error(made.error().message);
    std::shared_ptr<RedisStore> store = *made;
    std::string where(origin);
    auto wait = options->connect_timeout + options->command_timeout + std::chrono::seconds(1);
    auto active = options->replay_cache > 0 ? std::make_shared<std::atomic<int>>(0) : nullptr;
    auto workers = std::make_shared<int>(0);
    auto for_loop = [options = *options, active, workers](boost::asio::io_context& loop) mutable {
      if (active) options.on_replay_cache_state = replay_cache_reporter(active, (*workers)++);
      auto made = make_redis_store(options, loop.get_executor());
      if (!made) throw std::runtime_error(made.error().message);  // checked above already
      std::shared_ptr<RedisStore> store = *made;
      std::function<void(const RecordId&)> forget;
      if (options.replay_cache > 0) {
        forget = [weak = std::weak_ptr<RedisStore>(store)](const RecordId& id) {
          if (auto s = weak.lock()) s->forget_cached(id);
        };
      }
      return LoopStore{store, [store] { store->close([] {}); }, std::move(forget)};
    };
    return StoreHandle{
        store, std::move(for_loop),
        [store, where, wait] {
          // Start-up only: block until Redis names the shared secret.
          auto promise = std::make_shared<std::promise<Result<std::string>>>();
          auto future = promise->get_future();
          store->load_or_create_secret(
              [promise](Result<std::string> r) { promise->set_value(std::move(r)); });
          if (future.wait_for(wait) != std::future_status::ready) {
            throw std::runtime_error(where +
                                     ": Redis did not answer; cannot read the "
                                     "shared record secret");
          }
          auto secret = future.get();
          if (!secret) {
            throw std::runtime_error(
                where + ": cannot read the shared record secret: " + secret.error().message);
          }
          return std::move(*secret);
        },
        active};
#else
    throw error("the redis store is not available in this build (use --store memory)");
#endif
  }
  throw error("unknown store '" + std::string(spec) +
              "'; expected memory, lmdb:PATH or redis://HOST:PORT[/DB]");
}

}  // namespace idem::gateway
