// The LMDB store's public face: reads on the caller's thread, writes queued for the writer
// thread (core.cpp). A claim first looks in a read transaction: when the record is there
// and the claim cannot take it (completed, or in flight under a live lease, or the caller
// does not take over), the answer needs no write and is given at once. That is every
// replay. Only creating or taking over a record goes to the writer, which checks again
// inside its write transaction, so two claims racing for one key still get one winner.
// With durability power, a record written by a commit that is not on the disk yet is not
// read here either: the writer answers that claim once the commit's log write is done. And
// under power a claim that may take over an expired lease is held in memory, not written
// (core_leases.cpp): it, its renewals and its release are answered here.

#include "idem/lmdb_store.hpp"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>
#include <utility>

#include "stores/lmdb/core.hpp"

namespace idem {
namespace {

using lmdb::Core;

class LmdbWatch final : public Watch {
 public:
  LmdbWatch(std::weak_ptr<Core> core, RecordId id, std::shared_ptr<detail::WatchState> state)
      : core_(std::move(core)), id_(id), state_(std::move(state)) {}
  ~LmdbWatch() override {
    if (auto core = core_.lock()) core->remove_watch(id_, state_.get());
    state_->cancel();
  }

 private:
  std::weak_ptr<Core> core_;
  RecordId id_;
  std::shared_ptr<detail::WatchState> state_;
};

// The writer and the syncer ask the kernel not to preempt the thread that woke them.
// Otherwise, on a busy core, each operation the event loop queues switches to the writer
// at once, which commits it alone and switches back: a context switch or two per
// operation. Waiting until the loop has run out of work makes one commit carry what the
// loop queued meanwhile (docs/durable-store.md, "Threads"). Best effort: a refusal only
// costs that.
void batch_scheduling() {
  sched_param param{};
  ::sched_setscheduler(0, SCHED_BATCH, &param);
}

// The checkpointer's flush of data.mdb writes a second or two of copied pages at once,
// and the redo log's writes, which answers wait for, queued behind it. In the idle I/O
// class (honoured by the mq-deadline and BFQ schedulers, which still serve it within
// seconds), the log's writes go first: the 99th percentile of fresh keys under durability
// power was 32-36 ms with it against 41-43 ms without (1 s checkpoints). Best effort,
// like batch_scheduling().
void idle_io_priority() {
  constexpr int kWhoThread = 1;  // IOPRIO_WHO_PROCESS: with id 0, the calling thread
  constexpr int kClassIdle = 3;  // IOPRIO_CLASS_IDLE
  constexpr int kClassShift = 13;
  ::syscall(SYS_ioprio_set, kWhoThread, 0, kClassIdle << kClassShift);
}

class LmdbStoreImpl final : public LmdbStore {
 public:
  explicit LmdbStoreImpl(std::shared_ptr<Core> core)
      : core_(std::move(core)),
        writer_([core = core_] {
          batch_scheduling();
          core->run();
        }),
        syncer_([core = core_] {
          batch_scheduling();
          core->run_syncer();
        }),
        checkpointer_([core = core_] {
          batch_scheduling();
          idle_io_priority();
          core->run_checkpointer();
        }) {}

  ~LmdbStoreImpl() override {
    core_->request_stop();
    // Dropped from a callback on the writer or the syncer thread: a thread cannot join
    // itself, and the writer must not wait for the syncer, which stops only once the
    // writer has (and the checkpointer once the syncer has). All three then finish their
    // queues and release the Core (and the environment) alone.
    const auto self = std::this_thread::get_id();
    if (writer_.get_id() == self || syncer_.get_id() == self) {
      writer_.detach();
      syncer_.detach();
      checkpointer_.detach();
    } else {
      writer_.join();
      syncer_.join();
      checkpointer_.join();
    }
  }

  void claim(ClaimRequest request, Callback<ClaimOutcome> done) override {
    if (core_->holds_leases() && request.take_over_expired) {
      if (auto answered = core_->claim_in_memory(request, core_->options().clock->now())) {
        done(std::move(*answered));
      } else {
        core_->submit(lmdb::ClaimOp{std::move(request), {std::move(done)}});
      }
      return;
    }
    if (core_->unflushed(request.id)) {
      core_->submit(lmdb::ClaimOp{std::move(request), {std::move(done)}});
      return;
    }
    const TimePoint now = core_->options().clock->now();
    ClaimOutcome out;
    if (auto read = core_->read_live(request.id, now, out.existing); !read) {
      done(read.error());
      return;
    }
    if (out.existing) {
      if (!lmdb::takes_over(*out.existing, request, now)) {
        core_->count_read_answer();
        done(std::move(out));
        return;
      }
    }
    core_->submit(lmdb::ClaimOp{std::move(request), {std::move(done)}});
  }

  void complete(const RecordId& id, std::uint64_t token, StoredResponse response, Duration ttl,
                Callback<TokenCheck> done) override {
    core_->submit(lmdb::CompleteOp{
        id, token, std::move(response), ttl, {std::move(done)}, std::nullopt, false, {}, nullptr});
  }

  void release(const RecordId& id, std::uint64_t token, Callback<TokenCheck> done) override {
    if (core_->holds_leases()) {
      if (auto answered = core_->release_in_memory(id, token, core_->options().clock->now())) {
        return done(*answered);
      }
    }
    core_->submit(lmdb::ReleaseOp{id, token, {std::move(done)}});
  }

  void renew(const RecordId& id, std::uint64_t token, Duration lease,
             Callback<TokenCheck> done) override {
    if (core_->holds_leases()) {
      const TimePoint now = core_->options().clock->now();
      if (auto answered = core_->renew_in_memory(id, token, lease, now)) return done(*answered);
    }
    core_->submit(lmdb::RenewOp{id, token, lease, {std::move(done)}});
  }

  void get(const RecordId& id, Callback<std::optional<Record>> done) override {
    if (core_->holds_leases()) {
      if (auto held = core_->leased(id, core_->options().clock->now()))
        return done(std::move(held));
    }
    std::optional<Record> out;
    if (auto read = core_->read_live(id, core_->options().clock->now(), out); !read) {
      done(read.error());
      return;
    }
    done(std::move(out));
  }

  void erase(const RecordId& id, Callback<bool> done) override {
    core_->submit(lmdb::EraseOp{id, {std::move(done)}, false, {}});
  }

  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) override {
    auto state = core_->add_watch(id, std::move(changed));
    return std::make_unique<LmdbWatch>(core_, id, std::move(state));
  }

  void ping(Callback<bool> done) override {
    auto r = core_->ping();
    if (r) {
      done(true);
    } else {
      done(r.error());
    }
  }

  StoreStats stats() const override { return core_->stats(); }
  std::string_view kind() const noexcept override { return "lmdb"; }
  LmdbStoreCounters counters() const override { return core_->counters(); }
  const std::filesystem::path& path() const noexcept override { return core_->path(); }

 private:
  std::shared_ptr<Core> core_;
  std::thread writer_;
  std::thread syncer_;
  std::thread checkpointer_;
};

}  // namespace

std::shared_ptr<LmdbStore> make_lmdb_store(LmdbStoreOptions options) {
  if (!options.clock) options.clock = std::make_shared<SystemClock>();
  if (options.path.empty()) throw LmdbStoreError("lmdb store: no path given");
  lmdb::Env::Options env_options;
  env_options.access = lmdb::Access::create;
  env_options.map_size = options.map_size;
  env_options.only_writer = options.durability == Durability::power;
  auto env = lmdb::Env::open(options.path, env_options);
  auto core = std::make_shared<Core>(std::move(options), std::move(env));
  return std::make_shared<LmdbStoreImpl>(std::move(core));
}

}  // namespace idem
