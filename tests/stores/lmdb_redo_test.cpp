// Durability "power" and its redo log: the log's format, recovery after a power cut
// (simulated: the disk holds any mix of the pages written since the last checkpoint, and
// the machine's boot id has changed), and the rule that a power store is the directory's
// only writer.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stores/lmdb/redo_log.hpp"
#include "stores/lmdb_test_support.hpp"

namespace idem::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using lmdb::RedoBatch;
using lmdb::RedoTable;

void write_file(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(RedoLogFormatTest, RecordsReadBackUntilTheFirstThatIsNotWholeOrNotOfTheGeneration) {
  std::string log;
  RedoBatch batch;
  batch.put(RedoTable::records, "id-1", "value-1");
  batch.del(RedoTable::expiry, "index-1");
  batch.frame(7, 100, log);
  batch.clear();
  batch.put(RedoTable::meta, "last_token", std::string(8, '\x01'));
  batch.frame(7, 101, log);
  const std::size_t two = log.size();
  batch.frame(6, 102, log);  // an older generation's leftover

  auto records = lmdb::parse_redo_records(log, 7);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].txnid, 100u);
  ASSERT_EQ(records[0].changes.size(), 2u);
  EXPECT_TRUE(records[0].changes[0].put);
  EXPECT_EQ(records[0].changes[0].table, RedoTable::records);
  EXPECT_EQ(records[0].changes[0].key, "id-1");
  EXPECT_EQ(records[0].changes[0].value, "value-1");
  EXPECT_FALSE(records[0].changes[1].put);
  EXPECT_EQ(records[0].changes[1].key, "index-1");
  EXPECT_EQ(records[1].changes[0].table, RedoTable::meta);

  // A torn record (any prefix of it) and a flipped bit end the log there.
  for (std::size_t cut = two - 1; cut > two - 30; --cut) {
    EXPECT_EQ(lmdb::parse_redo_records(std::string_view(log).substr(0, cut), 7).size(), 1u);
  }
  std::string flipped = log;
  flipped[two - 3] ^= 0x10;
  EXPECT_EQ(lmdb::parse_redo_records(flipped, 7).size(), 1u);
  EXPECT_TRUE(lmdb::parse_redo_records(log, 8).empty());
}

TEST(RedoLogFormatTest, ACheckpointReadsBackAndAnyDamageIsRefused) {
  lmdb::RedoCheckpoint c;
  c.generation = 3;
  c.txnid = 42;
  c.page_size = 4096;
  c.meta = std::string(lmdb::kMetaCopyBytes, '\x07');
  c.boot_id = "0b8c1c53-1f2a-4c55-9a8e-6f1f6c1d2e3f";
  const std::string block = lmdb::encode_checkpoint(c);
  ASSERT_EQ(block.size(), lmdb::kRedoHeaderBytes);
  auto back = lmdb::decode_checkpoint(block);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->generation, 3u);
  EXPECT_EQ(back->txnid, 42u);
  EXPECT_EQ(back->page_size, 4096u);
  EXPECT_EQ(back->meta, c.meta);
  EXPECT_EQ(back->boot_id, c.boot_id);
  for (std::size_t at : {0, 9, 20, 40, 100, 300}) {
    std::string damaged = block;
    damaged[at] ^= 0x01;
    EXPECT_FALSE(lmdb::decode_checkpoint(damaged)) << "byte " << at;
  }
  EXPECT_FALSE(lmdb::decode_checkpoint(std::string(lmdb::kRedoHeaderBytes, '\0')));
}

/// A power store in a directory the test can take apart between runs.
class LmdbPowerCutTest : public LmdbStoreTest {
 protected:
  void TearDown() override {
    close();
    lmdb::set_boot_id_for_testing("");
  }
  LmdbStoreOptions power(std::chrono::milliseconds checkpoint_interval,
                         std::size_t map_size = std::size_t{8} << 20) const {
    LmdbStoreOptions o = options();
    o.durability = Durability::power;
    o.map_size = map_size;
    o.checkpoint_interval = checkpoint_interval;
    o.sweep_interval = 5ms;  // the writer looks for a due checkpoint this often when idle
    return o;
  }

  /// Writes, one at a time, records a power cut must not take back: completed ones
  /// (`bodies`), in-flight ones (`tokens`) and erased ones (`erased`). The in-flight ones
  /// are claimed under on_expired_lease = "fail": a lease that may be taken over is held in
  /// memory, and a power cut takes it back like any lease.
  void write_records(int n, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      const std::string key = prefix + std::to_string(i);
      const bool held = i % 10 == 9;
      ClaimRequest claim = request(key);
      claim.take_over_expired = !held;
      const std::uint64_t token = acquire(claim);
      ASSERT_NE(token, 0u);
      if (held) {
        tokens_[key] = token;
        continue;
      }
      auto completed = complete(key, token, response(201, "body of " + key), 1h);
      ASSERT_TRUE(completed.has_value()) << key << ": " << completed.error().message;
      ASSERT_EQ(*completed, TokenCheck::ok);
      if (i % 10 == 4) {
        auto erased = erase(key);
        ASSERT_TRUE(erased.has_value()) << key << ": " << erased.error().message;
        ASSERT_TRUE(*erased);
        erased_.insert(key);
      } else {
        bodies_[key] = "body of " + key;
      }
      max_token_ = std::max(max_token_, token);
    }
  }

  /// Every write acknowledged before the cut, as it was acknowledged.
  void expect_every_write() {
    for (const auto& [key, body] : bodies_) {
      auto replay = claim(request(key));
      ASSERT_TRUE(replay.has_value()) << key;
      ASSERT_FALSE(replay->acquired) << key;
      ASSERT_TRUE(replay->existing && replay->existing->response) << key;
      EXPECT_EQ(replay->existing->response->body, body);
    }
    for (const auto& [key, token] : tokens_) {
      auto held = claim(request(key));
      ASSERT_TRUE(held.has_value() && held->existing) << key;
      EXPECT_FALSE(held->acquired) << key;
      EXPECT_EQ(held->existing->fencing_token, token) << key;
      max_token_ = std::max(max_token_, token);
    }
    for (const auto& key : erased_) EXPECT_FALSE(get(key)->has_value()) << key;
    EXPECT_GT(acquire(request("after the cut")), max_token_);
  }

  fs::path data() const { return dir_.path() / "data.mdb"; }

  /// What the disk holds: data.mdb and the redo log's two files.
  struct Disk {
    std::string data;
    std::string log0;
    std::string log1;
  };
  /// The directory as it is now: taken while the store runs and nothing is in flight,
  /// it is a disk that a power cut or a kill -9 could leave. The files are read one after
  /// the other, and a checkpoint recorded in between would pair a log that names it with
  /// a data.mdb read before its pages were written, which no cut can leave (a checkpoint
  /// is recorded once data.mdb is on the disk): the copy is made again until no
  /// checkpoint was recorded while it was made.
  Disk cut() const {
    const fs::path log0 = dir_.path() / "redo" / "0";
    const fs::path log1 = dir_.path() / "redo" / "1";
    auto headers = [](const std::string& a, const std::string& b) {
      return a.substr(0, lmdb::kRedoHeaderBytes) + b.substr(0, lmdb::kRedoHeaderBytes);
    };
    for (;;) {
      const std::string before = headers(file_bytes(log0), file_bytes(log1));
      Disk disk{file_bytes(data()), file_bytes(log0), file_bytes(log1)};
      if (headers(disk.log0, disk.log1) == before) return disk;
    }
  }
  /// Puts `disk` back once the store is closed (a clean stop retires the log).
  void put_back(const Disk& disk) const {
    write_file(data(), disk.data);
    fs::remove_all(dir_.path() / "redo");
    fs::create_directory(dir_.path() / "redo");
    write_file(dir_.path() / "redo" / "0", disk.log0);
    write_file(dir_.path() / "redo" / "1", disk.log1);
  }

  /// A power cut now, and the store opened again in the next boot: the disk as it is
  /// (nothing in flight), the boot id changed.
  void cut_power_and_reopen(const LmdbStoreOptions& options) {
    const Disk at_cut = cut();
    close();
    put_back(at_cut);
    lmdb::set_boot_id_for_testing("after-the-cut");
    open(options);
  }

  std::map<std::string, std::string> bodies_;
  std::map<std::string, std::uint64_t> tokens_;
  std::set<std::string> erased_;
  std::uint64_t max_token_ = 0;
};

TEST_F(LmdbPowerCutTest, AnyMixOfPagesWrittenSinceTheCheckpointLosesNoAcknowledgedWrite) {
  // One checkpoint, the one made at start-up: the map is large enough that the pages the
  // writes free never make another one due.
  const auto options = power(1h, std::size_t{64} << 20);
  open(options);
  const std::string at_checkpoint = file_bytes(data());
  write_records(100, "k");
  ASSERT_GT(lmdb_->counters().syncs, 0u);
  ASSERT_EQ(lmdb_->counters().checkpoints, 0u);
  // The cut: what the disk may hold is, page by page, the checkpoint's version or a later
  // one (here: the last), and the log up to its last acknowledged write.
  const Disk at_cut = cut();
  close();
  ASSERT_EQ(at_checkpoint.size(), at_cut.data.size());
  ASSERT_NE(at_checkpoint, at_cut.data);

  const auto bodies = bodies_;
  for (unsigned seed = 1; seed <= 6; ++seed) {
    std::mt19937 random(seed);
    Disk disk = at_cut;
    std::size_t older = 0;
    for (std::size_t page = 0; page * 4096 < disk.data.size(); ++page) {
      // Seeds 1 and 2: the meta pages as of the cut and as of the checkpoint; the rest:
      // every page drawn.
      const bool keep_old = page < 2 ? seed % 2 == 0 : random() % 2 == 0;
      if (keep_old) {
        disk.data.replace(page * 4096, 4096, at_checkpoint, page * 4096, 4096);
        ++older;
      }
    }
    ASSERT_GT(older, 0u);
    put_back(disk);
    lmdb::set_boot_id_for_testing("after-the-cut-" + std::to_string(seed));

    open(options);
    SCOPED_TRACE("seed " + std::to_string(seed));
    expect_every_write();
    bodies_.erase("after the cut");
    close();
    EXPECT_EQ(bodies_, bodies);
  }
}

TEST_F(LmdbPowerCutTest, RecoveryReplaysTheLogAcrossCheckpointsAndGenerations) {
  open(power(20ms));
  for (int round = 0; round < 6; ++round) {
    write_records(60, "r" + std::to_string(round) + "-");
    std::this_thread::sleep_for(30ms);  // a checkpoint between rounds, most of the time
  }
  const auto checkpoints = lmdb_->counters().checkpoints;
  EXPECT_GE(checkpoints, 2u) << "the log should have changed generation";
  write_records(60, "tail-");  // after the last checkpoint: only the log has these
  cut_power_and_reopen(power(20ms));
  expect_every_write();
}

TEST_F(LmdbPowerCutTest, AFailedLogWriteIsAnsweredWithAnErrorAndWrittenBeforeTheNext) {
  open(power(1h, std::size_t{64} << 20));
  // A claim that may not be taken over is answered only once its log write is done, so
  // that the failure below falls on the completion's write and nothing else's.
  ClaimRequest claim_first = request("first");
  claim_first.take_over_expired = false;
  const std::uint64_t first = acquire(claim_first);
  lmdb::fail_redo_appends_for_testing(1);
  auto failed = complete("first", first, response(201, "first body"), 1h);
  lmdb::fail_redo_appends_for_testing(0);
  ASSERT_FALSE(failed.has_value()) << "a completion not in the log must not be acknowledged";
  EXPECT_EQ(failed.error().code, Errc::store_unavailable);
  EXPECT_NE(failed.error().message.find("redo log"), std::string::npos) << failed.error().message;
  // The commit stands in LMDB, so the next write carries its record first: the log never
  // holds a later commit without the ones before it.
  write_records(10, "later-");
  cut_power_and_reopen(power(1h, std::size_t{64} << 20));
  expect_every_write();
  auto replay = claim(request("first"));
  ASSERT_TRUE(replay.has_value() && replay->existing && replay->existing->response);
  EXPECT_EQ(replay->existing->response->body, "first body");
}

TEST_F(LmdbPowerCutTest, AfterAFailedCheckpointAnotherFollowsWithoutFurtherWrites) {
  // No interval: a checkpoint is due only once the pages copied since the pinned one take
  // an eighth of the map (2048 pages here). Claimed under on_expired_lease = "fail", so
  // that every record is written by its own transactions (a completion held in memory
  // copies no pages until the fold).
  open(power(1h, std::size_t{64} << 20));
  int written = 0;
  auto write_until = [&](auto done) {
    for (int n = 0; !done() && n < 20000; ++n) {
      const std::string key = "k" + std::to_string(written++);
      ClaimRequest claim = request(key);
      claim.take_over_expired = false;
      const std::uint64_t token = acquire(claim);
      ASSERT_EQ(*complete(key, token, response(201, "body of " + key), 1h), TokenCheck::ok);
      bodies_[key] = "body of " + key;
    }
    ASSERT_TRUE(done());
  };
  write_until([&] { return lmdb_->counters().checkpoints == 1; });
  // The next checkpoint fails. The first one stays pinned and the pages copied since it
  // still make a checkpoint due, so the writer must try again (100 ms later) with no
  // further writes (it looks every sweep_interval when idle).
  lmdb::fail_checkpoints_for_testing(1);
  write_until([&] { return lmdb_->counters().checkpoint_failures == 1; });
  lmdb::fail_checkpoints_for_testing(0);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (lmdb_->counters().checkpoints < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(lmdb_->counters().checkpoints, 2u) << "no checkpoint followed the failed one";
  // And nothing acknowledged is lost across the failed checkpoint.
  cut_power_and_reopen(power(1h, std::size_t{64} << 20));
  expect_every_write();
}

TEST_F(LmdbPowerCutTest, ACleanStopLeavesNoLogToReplay) {
  open(power(1h));
  write_records(20, "k");
  EXPECT_TRUE(fs::exists(dir_.path() / "redo" / "0"));
  close();
  EXPECT_FALSE(fs::exists(dir_.path() / "redo"));
  lmdb::set_boot_id_for_testing("another-boot");
  open();  // durability process: reads the same records
  expect_every_write();
}

TEST_F(LmdbPowerCutTest, APowerStoreIsTheDirectorysOnlyWriter) {
  open(power(1h));
  write_records(10, "k");
  // idemctl store flush while a power gateway runs: refused, so that the log holds every
  // commit to the directory.
  EXPECT_EQ(run_helper({"erase", dir_.path().string(), id("k0").hex()}), 2);
  close();

  open();  // durability process: other writers share the directory again
  EXPECT_EQ(run_helper({"erase", dir_.path().string(), id("k0").hex()}), 0);
}

TEST_F(LmdbPowerCutTest, ALogLeftInThisBootIsRecoveredByTheNextWriter) {
  open(power(1h));
  write_records(30, "k");
  const Disk at_cut = cut();
  close();
  // As kill -9 would leave it: the page cache holds every commit, but the completions held
  // in memory are only in the log.
  put_back(at_cut);
  ASSERT_EQ(run_helper({"erase", dir_.path().string(), id("k0").hex()}), 0);
  EXPECT_FALSE(fs::exists(dir_.path() / "redo"));
  bodies_.erase("k0");
  erased_.insert("k0");
  lmdb::set_boot_id_for_testing("another-boot");
  open(power(1h));  // nothing to recover, and the erase stands
  expect_every_write();
}

TEST_F(LmdbPowerCutTest, AKillNineLosesNoCompletionHeldInMemory) {
  open(power(1h));
  write_records(30, "k");
  EXPECT_GT(lmdb_->counters().completions_held, 0u);
  EXPECT_EQ(lmdb_->counters().folds, 0u);
  const Disk at_kill = cut();
  close();
  put_back(at_kill);
  open(power(1h));  // the same boot
  expect_every_write();
}

TEST_F(LmdbPowerCutTest, ALogThatOutgrowsTheMapUnderTheCheckpointsPinIsStillReplayed) {
  // The running store makes room by moving its pin: a checkpoint lets it reuse the pages
  // of records removed since the last one. Recovery cannot: it keeps the checkpoint's
  // pages until the whole log is in, so it needs the removed records' pages and their
  // successors' at once, here more than the map's 256 pages.
  constexpr std::size_t kMap = std::size_t{1} << 20;
  const std::string body(2000, 'x');  // a page of its own (LMDB's overflow page) each
  LmdbStoreOptions first = options();
  first.map_size = kMap;
  open(first);
  for (int i = 0; i < 140; ++i) {
    const std::string key = "old" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(201, body), 1h), TokenCheck::ok);
  }
  close();

  LmdbStoreOptions second = power(1h, kMap);
  second.lease_write_delay = 1h;  // every lease stays in memory: no transaction but sweeps
  LmdbStore& store = open(second);
  const std::uint64_t checkpoints = store.counters().checkpoints;
  clock_->advance(2h);  // the sweeper removes every old record, in the log
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (store.counters().swept < 140 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(store.counters().swept, 140u);
  for (int i = 0; i < 120; ++i) {
    const std::string key = "new" + std::to_string(i);
    auto done = complete(key, acquire(request(key)), response(201, body + key));
    ASSERT_TRUE(done.has_value()) << key << ": " << done.error().message;
    bodies_[key] = body + key;
  }
  // Nothing moved the pin: the log holds the sweeps and every new completion.
  ASSERT_EQ(store.counters().checkpoints, checkpoints);
  const Disk at_kill = cut();
  close();
  put_back(at_kill);

  open(power(1h, kMap));
  expect_every_write();
  for (int i = 0; i < 140; ++i) EXPECT_FALSE(get("old" + std::to_string(i))->has_value());
}

TEST_F(LmdbPowerCutTest, AReaderWhileThePowerStoreRunsReadsDataMdbAsItIs) {
  // idemctl store list beside a running power gateway: no recovery (the log is the
  // running store's), and none of what only its memory and log hold yet.
  open(power(1h));
  write_records(20, "k");
  EXPECT_EQ(run_helper({"count", dir_.path().string()}), 0);
  EXPECT_TRUE(fs::exists(dir_.path() / "redo" / "0"));
  expect_every_write();
}

}  // namespace
}  // namespace idem::testing
