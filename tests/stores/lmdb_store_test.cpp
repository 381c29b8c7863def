// The LMDB store: the shared conformance suite, then what only a durable store must do:
// keep records and tokens across restarts, flush before answering with power durability,
// commit queued operations together, and expire records without scanning.

#include "idem/lmdb_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stores/lmdb_test_support.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

// A store whose data directory goes away with it: the store is destroyed first.
std::shared_ptr<Store> store_in_temp_dir(std::shared_ptr<ManualClock> clock, Durability durability,
                                         std::size_t cache_bytes) {
  struct Holder {
    TempDir dir;
    std::shared_ptr<LmdbStore> store;
  };
  auto holder = std::make_shared<Holder>();
  LmdbStoreOptions options;
  options.path = holder->dir.path();
  options.clock = std::move(clock);
  options.durability = durability;
  options.cache_bytes = cache_bytes;
  holder->store = make_lmdb_store(options);
  return std::shared_ptr<Store>(holder, holder->store.get());
}

StoreFactory lmdb_factory(std::string name, Durability durability, std::size_t cache_bytes) {
  return StoreFactory{std::move(name), [=](std::shared_ptr<ManualClock> clock) {
                        return store_in_temp_dir(std::move(clock), durability, cache_bytes);
                      }};
}

// The record cache is on by default; the third instance answers every read from LMDB.
INSTANTIATE_TEST_SUITE_P(
    Lmdb, StoreConformanceTest,
    ::testing::Values(lmdb_factory("lmdb_process", Durability::process, std::size_t{64} << 20),
                      lmdb_factory("lmdb_power", Durability::power, std::size_t{64} << 20),
                      lmdb_factory("lmdb_uncached", Durability::process, 0)),
    StoreFactory::name_of);

TEST_F(LmdbStoreTest, RecordsAndTokensSurviveReopening) {
  open();
  const std::uint64_t done_token = acquire(request("done"));
  ASSERT_EQ(*complete("done", done_token, response(201, "kept")), TokenCheck::ok);
  const std::uint64_t flight_token = acquire(request("in-flight"));
  const std::uint64_t released = acquire(request("released"));
  ASSERT_EQ(*release("released", released), TokenCheck::ok);
  const auto stats = store_->stats();
  close();

  open();
  EXPECT_EQ(store_->stats().records, stats.records);
  EXPECT_EQ(store_->stats().bytes, stats.bytes);
  auto replay = claim(request("done"));
  ASSERT_TRUE(replay.has_value());
  EXPECT_FALSE(replay->acquired);
  ASSERT_TRUE(replay->existing && replay->existing->response);
  EXPECT_EQ(replay->existing->state, RecordState::completed);
  EXPECT_EQ(replay->existing->response->body, "kept");

  // The in-flight record is still owned by its token, and new tokens are higher than any
  // handed out before the restart.
  auto held = claim(request("in-flight"));
  ASSERT_TRUE(held.has_value());
  EXPECT_FALSE(held->acquired);
  EXPECT_EQ(held->existing->fencing_token, flight_token);
  const std::uint64_t fresh = acquire(request("new"));
  EXPECT_GT(fresh, std::max({done_token, flight_token, released}));
  EXPECT_EQ(*complete("in-flight", flight_token), TokenCheck::ok);
}

TEST_F(LmdbStoreTest, PowerDurabilityFlushesBeforeCallingBack) {
  auto o = options();
  o.durability = Durability::power;
  LmdbStore& store = open(o);
  for (int i = 0; i < 5; ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::uint64_t before_claim = store.syncs();
    // on_expired_lease = "fail" (no take-over): the claim must survive a power cut.
    auto claimed = await<ClaimOutcome>([&](auto cb) {
      store.claim(request(key, "fp", 30s, 24h, false),
                  [&, before_claim, cb](Result<ClaimOutcome> r) {
                    EXPECT_GT(store.syncs(), before_claim) << "claim answered before its flush";
                    cb(std::move(r));
                  });
    });
    ASSERT_TRUE(claimed && claimed->has_value() && (*claimed)->acquired);
    const std::uint64_t before_complete = store.syncs();
    auto completed = await<TokenCheck>([&](auto cb) {
      store.complete(id(key), (*claimed)->fencing_token, response(), 1h,
                     [&, before_complete, cb](Result<TokenCheck> r) {
                       EXPECT_GT(store.syncs(), before_complete)
                           << "completion answered before its flush";
                       cb(std::move(r));
                     });
    });
    ASSERT_TRUE(completed && completed->has_value());
    EXPECT_EQ(**completed, TokenCheck::ok);
  }
  // A replay is a read: it needs no flush.
  const std::uint64_t before_replay = store.syncs();
  ASSERT_FALSE(claim(request("k0"))->acquired);
  EXPECT_EQ(store.syncs(), before_replay);
}

TEST_F(LmdbStoreTest, PowerDurabilityHoldsATakeOverLeaseInMemory) {
  // A claim whose lease a retry may take over once it runs out (on_expired_lease =
  // "retry") loses nothing to a power cut that takes it back: the cut ends every lease.
  // So under power such a lease is held in memory: the claim, its renewals and its
  // release write nothing, and the completion is the one write.
  auto o = options();
  o.durability = Durability::power;
  o.lease_write_delay = 1h;  // never written as it stands here: see the next test
  LmdbStore& store = open(o);
  const LmdbStoreCounters before = store.counters();
  bool answered_at_once = false;
  std::optional<Result<ClaimOutcome>> claimed;
  store.claim(request("k"), [&](Result<ClaimOutcome> r) { claimed = std::move(r); });
  answered_at_once = claimed.has_value();
  ASSERT_TRUE(answered_at_once) << "a take-over claim went to the writer";
  ASSERT_TRUE(claimed->has_value() && (*claimed)->acquired);
  const std::uint64_t token = (*claimed)->fencing_token;
  // Seen by duplicates, by lookups and in the stats, like a written one.
  auto duplicate = claim(request("k"));
  ASSERT_TRUE(duplicate.has_value() && duplicate->existing);
  EXPECT_EQ(duplicate->existing->state, RecordState::in_flight);
  EXPECT_EQ(duplicate->existing->fencing_token, token);
  ASSERT_TRUE(get("k")->has_value());
  EXPECT_EQ(store.stats().records, 1u);
  EXPECT_EQ(*renew("k", token, 10s), TokenCheck::ok);
  EXPECT_EQ(*renew("k", token + 1, 10s), TokenCheck::stale);
  EXPECT_EQ(store.counters().transactions, before.transactions);
  EXPECT_EQ(store.counters().syncs, before.syncs);

  // The completion is logged, with no transaction: the fold before the next checkpoint
  // writes it (see PowerDurabilityHoldsACompletionUntilTheNextFold).
  EXPECT_EQ(*complete("k", token), TokenCheck::ok);
  EXPECT_EQ(store.counters().transactions, before.transactions);
  EXPECT_GT(store.syncs(), before.syncs);
  auto replay = claim(request("k"));
  ASSERT_TRUE(replay.has_value() && replay->existing);
  EXPECT_EQ(replay->existing->state, RecordState::completed);
  EXPECT_EQ(replay->existing->fencing_token, token);

  // Released or flushed, it is gone; a new claim gets a later token.
  const std::uint64_t second = acquire(request("released"));
  EXPECT_GT(second, token);
  EXPECT_EQ(*release("released", second + 1), TokenCheck::stale);
  EXPECT_EQ(*release("released", second), TokenCheck::ok);
  EXPECT_FALSE(get("released")->has_value());
  const std::uint64_t third = acquire(request("erased"));
  EXPECT_GT(third, second);
  EXPECT_TRUE(*erase("erased"));
  EXPECT_FALSE(get("erased")->has_value());
  EXPECT_EQ(*complete("erased", third), TokenCheck::stale);
  EXPECT_EQ(store.stats().records, 1u);

  // Under on_expired_lease = "fail" the claim is written: it must survive a power cut.
  const std::uint64_t written = store.counters().transactions;
  ASSERT_TRUE(claim(request("fail", "fp", 30s, 24h, false))->acquired);
  EXPECT_EQ(store.counters().transactions, written + 1);
}

TEST_F(LmdbStoreTest, PowerDurabilityHoldsACompletionUntilTheNextFold) {
  // The completion of a lease held in memory is logged, not written to the tables: the
  // completed record answers from memory until the fold before the next checkpoint (or a
  // clean stop) writes every such record, a chunk of records to a transaction.
  auto o = options();
  o.durability = Durability::power;
  o.checkpoint_interval = 1h;
  o.lease_write_delay = 1h;
  LmdbStore& store = open(o);
  const std::uint64_t token = acquire(request("k"));
  ASSERT_EQ(*complete("k", token, response(201, "done")), TokenCheck::ok);
  EXPECT_EQ(store.counters().completions_held, 1u);
  EXPECT_EQ(store.counters().folds, 0u);

  // Answered like a written record: a retry replays it under either on_expired_lease rule
  // (the second claim goes through the writer), and lookups and the stats see it.
  for (bool take_over : {true, false}) {
    auto replay = claim(request("k", "fp", 30s, 24h, take_over));
    ASSERT_TRUE(replay.has_value() && replay->existing) << take_over;
    EXPECT_FALSE(replay->acquired);
    EXPECT_EQ(replay->existing->state, RecordState::completed);
    ASSERT_TRUE(replay->existing->response);
    EXPECT_EQ(replay->existing->response->body, "done");
  }
  auto found = get("k");
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->state, RecordState::completed);
  EXPECT_EQ(store.stats().records, 1u);
  // Its holder can no longer act on it.
  EXPECT_EQ(*complete("k", token), TokenCheck::stale);
  EXPECT_EQ(*release("k", token), TokenCheck::stale);
  EXPECT_EQ(*renew("k", token, 10s), TokenCheck::stale);
  EXPECT_EQ(store.counters().completions_held, 1u);

  // Erased while held, it is gone, and its key is claimed afresh.
  const std::uint64_t second = acquire(request("erased"));
  ASSERT_EQ(*complete("erased", second), TokenCheck::ok);
  EXPECT_TRUE(*erase("erased"));
  EXPECT_FALSE(get("erased")->has_value());
  EXPECT_GT(acquire(request("erased")), second);
  EXPECT_EQ(store.counters().folds, 0u);

  // A clean stop folds what is held: data.mdb holds it without the log.
  close();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(options().path) / "redo"));
  open();  // durability process: no log, no leases in memory
  auto replay = claim(request("k"));
  ASSERT_TRUE(replay.has_value() && replay->existing && replay->existing->response);
  EXPECT_EQ(replay->existing->response->body, "done");
  EXPECT_FALSE(get("erased")->has_value()) << "an in-flight lease held in memory was written";
}

TEST_F(LmdbStoreTest, PowerDurabilityFoldsHeldCompletionsBeforeEachCheckpoint) {
  auto o = options();
  o.durability = Durability::power;
  o.checkpoint_interval = 10ms;
  o.sweep_interval = 5ms;  // the writer looks for a due checkpoint this often when idle
  LmdbStore& store = open(o);
  const LmdbStoreCounters before = store.counters();
  constexpr int kRecords = 50;
  for (int i = 0; i < kRecords; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(201, key)), TokenCheck::ok);
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (store.counters().checkpoints == before.checkpoints &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  const LmdbStoreCounters after = store.counters();
  ASSERT_GT(after.checkpoints, before.checkpoints) << "no checkpoint";
  EXPECT_GE(after.folds, 1u);
  EXPECT_EQ(after.completions_held, before.completions_held + kRecords);
  EXPECT_EQ(store.stats().records, std::uint64_t{kRecords});
  for (int i = 0; i < kRecords; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto replay = claim(request(key));
    ASSERT_TRUE(replay.has_value() && replay->existing && replay->existing->response) << key;
    EXPECT_EQ(replay->existing->response->body, key);
  }
}

TEST_F(LmdbStoreTest, PowerDurabilityWritesALeaseStillHeldAfterTheDelay) {
  // A slow request's lease must outlive the process, so that after a kill -9 a retry
  // waits for it to run out (contract section 7): held past lease_write_delay, it is
  // written as it stands, with no operation to prompt the writer.
  auto o = options();
  o.durability = Durability::power;
  o.lease_write_delay = 20ms;
  LmdbStore& store = open(o);
  const std::uint64_t slow = acquire(request("slow"));
  const std::uint64_t quick = acquire(request("quick"));
  EXPECT_EQ(*complete("quick", quick), TokenCheck::ok);  // within the delay: one write
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (store.counters().transactions < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(store.counters().transactions, 2u) << "the slow lease was not written";
  EXPECT_EQ(store.counters().leases_held, 2u);
  EXPECT_EQ(store.counters().leases_written, 1u);
  // Written, it is the tables' now: renewed and completed there.
  EXPECT_EQ(*renew("slow", slow, 30s), TokenCheck::ok);
  EXPECT_EQ(store.counters().transactions, 3u);
  const std::uint64_t left = acquire(request("left in flight"));
  while (store.counters().transactions < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(*complete("slow", slow), TokenCheck::ok);
  // A clean close loses nothing written: the lease still held is there after reopening.
  close();
  open(o);
  auto held = claim(request("left in flight"));
  ASSERT_TRUE(held.has_value() && held->existing) << "a written lease did not survive";
  EXPECT_FALSE(held->acquired);
  EXPECT_EQ(held->existing->fencing_token, left);
  auto replay = claim(request("slow"));
  ASSERT_TRUE(replay.has_value() && replay->existing);
  EXPECT_EQ(replay->existing->state, RecordState::completed);
}

TEST_F(LmdbStoreTest, PowerDurabilityTakesOverAnExpiredLeaseInMemory) {
  auto o = options();
  o.durability = Durability::power;
  o.lease_write_delay = 1h;
  LmdbStore& store = open(o);
  const std::uint64_t first = acquire(request("k", "fp", 5s));
  clock_->advance(6s);
  // Another payload does not take it over; the same one does, and the first holder's
  // token is stale from then on.
  auto other = claim(request("k", "another fp", 5s));
  ASSERT_TRUE(other.has_value() && other->existing);
  EXPECT_FALSE(other->acquired);
  auto took = claim(request("k", "fp", 5s));
  ASSERT_TRUE(took.has_value() && took->acquired);
  EXPECT_TRUE(took->took_over);
  EXPECT_GT(took->fencing_token, first);
  EXPECT_EQ(*complete("k", first), TokenCheck::stale);
  EXPECT_EQ(*complete("k", took->fencing_token), TokenCheck::ok);
  // Past the record's own expiry a held lease is gone, and the sweeper drops it.
  const std::uint64_t late = acquire(request("late", "fp", 5s, 10s));
  clock_->advance(11s);
  EXPECT_FALSE(get("late")->has_value());
  EXPECT_EQ(*complete("late", late), TokenCheck::stale);
  EXPECT_TRUE(claim(request("late", "fp", 5s, 10s))->acquired);
  EXPECT_EQ(store.stats().records, 2u);
}

TEST_F(LmdbStoreTest, PowerDurabilityNeverAnswersFromAnUnflushedRecord) {
  // A completion is committed before it is flushed, and readers see a commit at once. A
  // duplicate that read it then would be replayed an answer that a power cut could
  // still take back, while the original still waits for its flush: a claim of a record
  // whose write is not on the disk yet is answered by the writer, after the flush.
  auto o = options();
  o.durability = Durability::power;
  LmdbStore& store = open(o);
  for (int i = 0; i < 20; ++i) {
    const std::string key = "k" + std::to_string(i);
    const std::uint64_t token = acquire(request(key));
    const std::uint64_t before = store.syncs();
    std::atomic<bool> acknowledged{false};
    store.complete(id(key), token, response(), 1h,
                   [&](Result<TokenCheck> r) { acknowledged = r.has_value(); });
    for (;;) {
      auto seen = claim(request(key));
      ASSERT_TRUE(seen.has_value()) << seen.error().message;
      ASSERT_FALSE(seen->acquired);
      if (seen->existing->state == RecordState::completed) {
        EXPECT_GT(store.syncs(), before) << "replayed a completion that is not on the disk";
        break;
      }
    }
    while (!acknowledged) std::this_thread::yield();
  }
}

TEST_F(LmdbStoreTest, ProcessDurabilityDoesNotFlushPerCommit) {
  LmdbStore& store = open();
  for (int i = 0; i < 5; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key))), TokenCheck::ok);
  }
  EXPECT_EQ(store.syncs(), 0u);
  EXPECT_GE(store.counters().transactions, 10u);
}

TEST_F(LmdbStoreTest, ProcessDurabilityFlushesInTheBackground) {
  auto o = options();
  o.sync_interval = 10ms;
  LmdbStore& store = open(o);
  ASSERT_EQ(*complete("k", acquire(request("k"))), TokenCheck::ok);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (store.syncs() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(store.syncs(), 1u);
}

TEST_F(LmdbStoreTest, QueuedOperationsShareOneTransaction) {
  LmdbStore& store = open();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::optional<Result<ClaimOutcome>>> results(kThreads * kPerThread);
  LmdbStoreCounters before;
  {
    WriterGate gate(store, id("gate"));
    before = store.counters();
    std::atomic<int> answered{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const int n = t * kPerThread + i;
          store.claim(request("key-" + std::to_string(n)), [&, n](Result<ClaimOutcome> r) {
            results[n].emplace(std::move(r));
            answered.fetch_add(1);
          });
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(answered.load(), 0) << "claims of new keys must wait for the writer";
    gate.open();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (answered.load() < kThreads * kPerThread && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
  }
  const LmdbStoreCounters after = store.counters();
  std::set<std::uint64_t> tokens;
  for (const auto& r : results) {
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->has_value()) << r->error().message;
    EXPECT_TRUE((*r)->acquired);
    tokens.insert((*r)->fencing_token);
  }
  EXPECT_EQ(tokens.size(), results.size()) << "every claim gets its own token";
  EXPECT_EQ(after.operations - before.operations, results.size());
  // 200 operations with max_batch 1024: one transaction, give or take a claim that went
  // to the writer after the gate opened.
  EXPECT_LE(after.transactions - before.transactions, 3u);
}

TEST_F(LmdbStoreTest, MaxBatchBoundsATransaction) {
  auto o = options();
  o.max_batch = 10;
  LmdbStore& store = open(o);
  std::atomic<int> answered{0};
  LmdbStoreCounters before;
  {
    WriterGate gate(store, id("gate"));
    before = store.counters();
    for (int i = 0; i < 100; ++i) {
      store.claim(request("key-" + std::to_string(i)),
                  [&](Result<ClaimOutcome> r) { answered.fetch_add(r && r->acquired ? 1 : 0); });
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (answered.load() < 100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(answered.load(), 100);
  EXPECT_EQ(store.counters().transactions - before.transactions, 10u);
}

TEST_F(LmdbStoreTest, ExpiredRecordsAreInvisibleBeforeTheSweep) {
  auto o = options();
  o.sweep_interval = 1h;  // never, within this test
  open(o);
  ASSERT_EQ(*complete("a", acquire(request("a")), response(), 10s), TokenCheck::ok);
  acquire(request("b", "fp", 5s, 10s));
  clock_->advance(10s);
  EXPECT_EQ(store_->stats().records, 2u) << "nothing was swept";
  EXPECT_FALSE(get("a")->has_value());
  EXPECT_FALSE(get("b")->has_value());
  EXPECT_FALSE(*erase("a"));
  auto again = claim(request("b", "fp", 5s, 10s, /*take_over=*/false));
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->acquired);
  EXPECT_FALSE(again->took_over);
  EXPECT_EQ(store_->stats().records, 2u);
}

TEST_F(LmdbStoreTest, SweeperRemovesExpiredRecordsInBatches) {
  auto o = options();
  o.sweep_interval = 5ms;
  o.sweep_batch = 10;
  LmdbStore& store = open(o);
  for (int i = 0; i < 100; ++i) {
    const std::string key = "old-" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(), 10s), TokenCheck::ok);
  }
  for (int i = 0; i < 5; ++i) {
    const std::string key = "young-" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(), 1h), TokenCheck::ok);
  }
  const auto bytes_before = store.stats().bytes;
  EXPECT_EQ(store.counters().swept, 0u);
  clock_->advance(10s);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (store.stats().records > 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  const LmdbStoreCounters c = store.counters();
  EXPECT_EQ(store.stats().records, 5u);
  EXPECT_EQ(c.swept, 100u);
  EXPECT_GE(c.sweeps, 10u) << "at most sweep_batch records a transaction";
  EXPECT_LT(store.stats().bytes, bytes_before / 10);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(get("young-" + std::to_string(i))->has_value());
}

TEST_F(LmdbStoreTest, RenewedAndCompletedRecordsAreSweptAtTheirNewExpiry) {
  auto o = options();
  o.sweep_interval = 5ms;
  LmdbStore& store = open(o);
  const std::uint64_t renewed = acquire(request("renewed", "fp", 30s, 30s));
  const std::uint64_t completed = acquire(request("completed", "fp", 30s, 30s));
  clock_->advance(20s);
  ASSERT_EQ(*renew("renewed", renewed, 60s), TokenCheck::ok);
  ASSERT_EQ(*complete("completed", completed, response(), 1h), TokenCheck::ok);
  clock_->advance(20s);  // past both original expiries
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(store.stats().records, 2u);
  EXPECT_TRUE(get("renewed")->has_value());
  EXPECT_TRUE(get("completed")->has_value());
  clock_->advance(50s);  // past the renewed lease
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (store.stats().records > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(store.stats().records, 1u);
  EXPECT_TRUE(get("completed")->has_value());
}

TEST_F(LmdbStoreTest, ReplaysAreAnsweredWithoutTheWriter) {
  LmdbStore& store = open();
  ASSERT_EQ(*complete("k", acquire(request("k"))), TokenCheck::ok);
  const auto before = store.counters();
  bool inline_answer = false;
  store.claim(request("k"), [&](Result<ClaimOutcome> r) { inline_answer = r && !r->acquired; });
  EXPECT_TRUE(inline_answer) << "a replay calls back before claim() returns";
  EXPECT_EQ(store.counters().transactions, before.transactions);
  EXPECT_EQ(store.counters().read_answers, before.read_answers + 1);
}

TEST_F(LmdbStoreTest, CachedReplaysFollowErasesAndExpiry) {
  LmdbStore& store = open();
  ASSERT_EQ(*complete("k", acquire(request("k")), response(), 10s), TokenCheck::ok);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(claim(request("k"))->acquired);  // cached now
  ASSERT_TRUE(*erase("k"));
  EXPECT_FALSE(get("k")->has_value());
  const std::uint64_t again = acquire(request("k"));
  ASSERT_EQ(*complete("k", again, response(200, "second"), 10s), TokenCheck::ok);
  auto replay = claim(request("k"));
  ASSERT_TRUE(replay.has_value() && replay->existing && replay->existing->response);
  EXPECT_EQ(replay->existing->response->body, "second");
  clock_->advance(10s);
  EXPECT_FALSE(get("k")->has_value());
  EXPECT_TRUE(claim(request("k"))->acquired);
  EXPECT_GE(store.counters().read_answers, 4u);
}

TEST_F(LmdbStoreTest, AnotherProcesssEraseIsSeenAtOnce) {
  open();
  for (const char* key : {"a", "b"}) {
    ASSERT_EQ(*complete(key, acquire(request(key))), TokenCheck::ok);
    ASSERT_FALSE(claim(request(key))->acquired);  // cached
  }
  // idemctl store flush, say, while the gateway runs: its commit is not the store's own.
  ASSERT_EQ(run_helper({"erase", dir_.path().string(), id("a").hex()}), 0);
  EXPECT_FALSE(get("a")->has_value());
  EXPECT_TRUE(claim(request("a"))->acquired);  // the writer commits, and empties the cache
  ASSERT_EQ(run_helper({"erase", dir_.path().string(), id("b").hex()}), 0);
  EXPECT_TRUE(claim(request("b"))->acquired);
}

TEST_F(LmdbStoreTest, CallbacksMayDropTheLastReference) {
  open();
  std::shared_ptr<LmdbStore> store = lmdb_;
  close();
  std::promise<void> released;
  std::promise<void> done;
  auto keep = store;
  store->claim(request("k"), [&, keep = std::move(keep)](Result<ClaimOutcome>) mutable {
    released.get_future().wait();  // until the caller let go of its own reference
    keep.reset();                  // so the store is destroyed on its own writer thread
    done.set_value();
  });
  store.reset();  // claim() has returned: the caller must not drop the store inside a call
  released.set_value();
  done.get_future().wait();
  // The writer releases the directory on its way out; it can be opened again shortly.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    try {
      open();
      break;
    } catch (const LmdbStoreError&) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
      std::this_thread::sleep_for(1ms);
    }
  }
  EXPECT_TRUE(get("k")->has_value());
}

}  // namespace
}  // namespace idem::testing
