#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifdef IDEM_TEST_LMDB
#include <stdlib.h>

#include <filesystem>

#include "idem/lmdb_store.hpp"
#endif

#include "idem/engine.hpp"
#include "idem/memory_store.hpp"
#include "idem/store.hpp"

namespace idem::testing {

/// A store that answers every operation on a thread of its own, as the LMDB and Redis
/// stores do, around a memory store: so the adapters' waits and hand-overs between threads
/// are exercised without a server.
class ThreadedStore final : public Store {
 public:
  explicit ThreadedStore(std::shared_ptr<Store> inner)
      : inner_(std::move(inner)), queue_(std::make_shared<Queue>()) {
    thread_ = std::thread([queue = queue_] { queue->run(); });
  }
  // The last reference may go on the store's own thread (a callback held the engine, and
  // the engine the store): that thread cannot join itself, so it is left to finish the
  // queue, which it keeps alive.
  ~ThreadedStore() override {
    queue_->stop();
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

  void claim(ClaimRequest request, Callback<ClaimOutcome> done) override {
    queue_->post([inner = inner_, request = std::move(request), done = std::move(done)]() mutable {
      inner->claim(std::move(request), std::move(done));
    });
  }
  void complete(const RecordId& id, std::uint64_t token, StoredResponse response, Duration ttl,
                Callback<TokenCheck> done) override {
    queue_->post(
        [=, inner = inner_, response = std::move(response), done = std::move(done)]() mutable {
          inner->complete(id, token, std::move(response), ttl, std::move(done));
        });
  }
  void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) override {
    queue_->post([=, inner = inner_, done = std::move(done)]() mutable {
      inner->release(id, token, std::move(done));
    });
  }
  void renew(const RecordId& id, std::uint64_t token, Duration lease,
             Callback<TokenCheck> done) override {
    queue_->post([=, inner = inner_, done = std::move(done)]() mutable {
      inner->renew(id, token, lease, std::move(done));
    });
  }
  void get(const RecordId& id, Callback<std::optional<Record>> done) override {
    queue_->post(
        [=, inner = inner_, done = std::move(done)]() mutable { inner->get(id, std::move(done)); });
  }
  void erase(const RecordId& id, Callback<bool> done) override {
    queue_->post([=, inner = inner_, done = std::move(done)]() mutable {
      inner->erase(id, std::move(done));
    });
  }
  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) override {
    return inner_->watch(id, std::move(changed));
  }
  void ping(Callback<bool> done) override { inner_->ping(std::move(done)); }
  StoreStats stats() const override { return inner_->stats(); }
  std::string_view kind() const noexcept override { return "threaded"; }

 private:
  struct Queue {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;

    void post(std::function<void()> job) {
      {
        std::lock_guard lock(mutex);
        jobs.push_back(std::move(job));
      }
      ready.notify_one();
    }
    void stop() {
      {
        std::lock_guard lock(mutex);
        stopping = true;
      }
      ready.notify_all();
    }
    /// Runs jobs until stopped and empty.
    void run() {
      std::unique_lock lock(mutex);
      for (;;) {
        ready.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (jobs.empty()) return;
        auto job = std::move(jobs.front());
        jobs.pop_front();
        lock.unlock();
        job();
        job = nullptr;  // what it held goes now, before the lock is taken again
        lock.lock();
      }
    }
  };

  std::shared_ptr<Store> inner_;
  std::shared_ptr<Queue> queue_;
  std::thread thread_;
};

/// The stores the adapter tests run against: the memory store (answers inline), the same
/// behind a thread (answers later, elsewhere), and where it is built the LMDB store (reads
/// inline, writes on its writer thread).
enum class StoreKind { inline_memory, threaded, lmdb };

inline std::string store_kind_name(StoreKind kind) {
  switch (kind) {
    case StoreKind::inline_memory:
      return "InlineMemory";
    case StoreKind::threaded:
      return "Threaded";
    case StoreKind::lmdb:
      return "Lmdb";
  }
  return "Unknown";
}

inline std::vector<StoreKind> store_kinds() {
#ifdef IDEM_TEST_LMDB
  return {StoreKind::inline_memory, StoreKind::threaded, StoreKind::lmdb};
#else
  return {StoreKind::inline_memory, StoreKind::threaded};
#endif
}

inline std::shared_ptr<Store> make_store(StoreKind kind) {
#ifdef IDEM_TEST_LMDB
  if (kind == StoreKind::lmdb) {
    std::string dir = (std::filesystem::temp_directory_path() / "idem-adapter-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    LmdbStoreOptions options;
    options.path = dir;
    options.map_size = std::size_t{64} << 20;
    std::shared_ptr<Store> store = make_lmdb_store(std::move(options));
    // The directory goes once the store is closed.
    return std::shared_ptr<Store>(store.get(), [store, dir](Store*) mutable {
      store.reset();
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
  }
#endif
  auto memory = make_memory_store();
  if (kind == StoreKind::inline_memory) return memory;
  return std::make_shared<ThreadedStore>(std::move(memory));
}

inline std::shared_ptr<Engine> make_engine(std::shared_ptr<Store> store, PolicySet policies = {}) {
  EngineOptions options;
  options.policies = std::move(policies);
  options.store = std::move(store);
  options.secret = std::string(32, 'a');
  return Engine::create(std::move(options));
}

/// Engine::has, waited for.
inline bool has_record(Engine& engine, std::string_view scope, std::string_view key) {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<bool> out;
  engine.has(scope, key, [&](Result<bool> r) {
    std::lock_guard lock(mutex);
    out = r && *r;
    cv.notify_one();
  });
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return out.has_value(); });
  return *out;
}

}  // namespace idem::testing
