#pragma once

// Shared by the Redis store's tests: stores on a test server, each with its own key prefix
// so that tests in one process never see each other's records.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "idem/redis_store.hpp"
#include "redis/redis_server.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {

inline std::string fresh_prefix() {
  static std::atomic<int> n{0};
  return "t" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1)) + ":";
}

inline RedisStoreOptions redis_options(std::uint16_t port, std::string prefix,
                                       std::shared_ptr<const Clock> clock = nullptr) {
  RedisStoreOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.key_prefix = std::move(prefix);
  o.command_timeout = std::chrono::milliseconds(500);
  o.connect_timeout = std::chrono::milliseconds(500);
  if (clock) o.clock = std::move(clock);
  return o;
}

inline std::shared_ptr<RedisStore> redis_store(const RedisStoreOptions& o) {
  auto store = make_redis_store(o);
  if (!store) {
    ADD_FAILURE() << store.error().message;
    return nullptr;
  }
  return std::move(*store);
}

/// A store on the process's test server under a key prefix of its own; make() makes more
/// instances that share it, as gateways share one Redis.
class RedisStoreTest : public StoreConformanceTest {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    prefix_ = fresh_prefix();
    store_ = make();
    ASSERT_NE(store_, nullptr);
  }
  std::shared_ptr<RedisStore> make(std::uint16_t port = 0,
                                   std::size_t replay_cache = RedisStoreOptions{}.replay_cache) {
    RedisStoreOptions o = redis_options(port ? port : shared_redis().port(), prefix_, clock_);
    o.replay_cache = replay_cache;
    return redis_store(o);
  }
  std::string key_of(std::string_view name) const { return prefix_ + "{" + id(name).hex() + "}"; }

  std::string prefix_;
};

}  // namespace idem::testing
