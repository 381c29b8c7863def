// The LMDB store at its limits: a full map, and data directories it must refuse at start-up
// without touching them.

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb_test_support.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

class LmdbLimitsTest : public StoreConformanceTest {
 protected:
  void SetUp() override { clock_ = std::make_shared<ManualClock>(); }
  void TearDown() override { store_.reset(); }

  LmdbStore& open(std::size_t map_size = std::size_t{1} << 30,
                  Durability durability = Durability::process) {
    LmdbStoreOptions o;
    o.path = dir_.path();
    o.clock = clock_;
    o.map_size = map_size;
    o.sync_interval = 0ms;
    o.durability = durability;
    o.checkpoint_interval = 10ms;
    o.sweep_interval = 5ms;
    auto store = make_lmdb_store(o);
    store_ = store;
    return *store;
  }

  // Expects make_lmdb_store to refuse the directory with one line that names it and says
  // `what`, and data.mdb to be byte for byte what it was.
  void expect_refused(const std::string& what) {
    const std::string before = file_bytes(dir_ / "data.mdb");
    LmdbStoreOptions o;
    o.path = dir_.path();
    try {
      make_lmdb_store(o);
      ADD_FAILURE() << "opened a directory it should refuse";
    } catch (const LmdbStoreError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(dir_.path().string()), std::string::npos) << message;
      EXPECT_NE(message.find(what), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    }
    EXPECT_EQ(file_bytes(dir_ / "data.mdb"), before) << "the data file was changed";
  }

  // Writes into the environment behind the store's back, as another program might.
  void raw_put(const char* db, std::string_view key, std::string_view value, bool create_db) {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_maxreaders(env, 256);
    ASSERT_EQ(mdb_env_open(env, dir_.path().c_str(), 0, 0600), 0);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, db, create_db ? MDB_CREATE : 0, &dbi), 0);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }

  std::uint32_t raw_format_version() {
    MDB_env* env = nullptr;
    EXPECT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_set_maxreaders(env, 256);
    EXPECT_EQ(mdb_env_open(env, dir_.path().c_str(), MDB_RDONLY, 0600), 0);
    MDB_txn* txn = nullptr;
    EXPECT_EQ(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), 0);
    MDB_dbi dbi;
    std::uint32_t version = 0;
    if (mdb_dbi_open(txn, "meta", 0, &dbi) == 0) {
      MDB_val k{14, const_cast<char*>("format_version")};
      MDB_val v;
      if (mdb_get(txn, dbi, &k, &v) == 0 && v.mv_size == sizeof version) {
        std::memcpy(&version, v.mv_data, sizeof version);
      }
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return version;
  }

  void fill_the_map(Durability durability);

  TempDir dir_;
};

// 256 pages of 4 KiB. Under power, completions are held in memory and folded into the map
// before each checkpoint (every 10 ms here), so there the map fills at a fold.
void LmdbLimitsTest::fill_the_map(Durability durability) {
  LmdbStore& store = open(1 << 20, durability);
  // Claimed before the map filled up: its completion must still fit.
  const std::uint64_t pending = acquire(request("pending"));
  int stored = 0;
  Error full{Errc::invalid_argument, ""};
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto out = claim(request(key));
    ASSERT_TRUE(out.has_value() || out.error().code == Errc::store_full) << out.error().message;
    if (!out) {
      full = out.error();
      break;
    }
    auto done = complete(key, out->fencing_token, response(200, std::string(2000, 'x')));
    ASSERT_TRUE(done.has_value()) << key << ": " << done.error().message;
    ASSERT_EQ(*done, TokenCheck::ok);
    ++stored;
  }
  ASSERT_EQ(full.code, Errc::store_full) << "the map never filled";
  EXPECT_GT(stored, 100);
  EXPECT_NE(full.message.find("map_size"), std::string::npos) << full.message;
  EXPECT_NE(full.message.find(dir_.path().string()), std::string::npos) << full.message;
  EXPECT_GE(store.counters().store_full, 1u);

  // Existing records keep working: reads, replays, and the completion of a claimed record.
  auto got = get("k0");
  ASSERT_TRUE(got.has_value() && got->has_value());
  auto replay = claim(request("k1"));
  ASSERT_TRUE(replay.has_value());
  EXPECT_FALSE(replay->acquired);
  auto late = complete("pending", pending, response(200, std::string(2000, 'y')));
  if (durability == Durability::power && !late) {
    // Its lease was written as it stood (lease_write_delay), and the pages freed since the
    // last checkpoint cannot be used before the next one: refused for room, clearly.
    EXPECT_EQ(late.error().code, Errc::store_full) << late.error().message;
  } else {
    ASSERT_TRUE(late.has_value()) << late.error().message;
    EXPECT_EQ(*late, TokenCheck::ok);
  }
  auto ping = await<bool>([&](auto cb) { store.ping(cb); });
  ASSERT_TRUE(ping && ping->has_value() && **ping);

  // Room comes back when records go. Under power a page freed since the last checkpoint is
  // reused once the next one is recorded (its pin keeps the checkpoint's pages, see
  // docs/durable-store.md): a removal refused for room then succeeds a checkpoint later.
  for (int i = 0; i < stored / 2; ++i) {
    auto erased = erase("k" + std::to_string(i));
    for (int tries = 0; durability == Durability::power && !erased && tries < 100; ++tries) {
      ASSERT_EQ(erased.error().code, Errc::store_full) << erased.error().message;
      const std::uint64_t checkpoints = store.counters().checkpoints;
      const auto deadline = std::chrono::steady_clock::now() + 5s;
      while (store.counters().checkpoints < checkpoints + 2 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      erased = erase("k" + std::to_string(i));
    }
    ASSERT_TRUE(erased.has_value()) << i << ": " << erased.error().message;
    ASSERT_TRUE(*erased);
  }
  acquire(request("after"));
}

TEST_F(LmdbLimitsTest, AFullMapRefusesNewClaimsAndKeepsServingExistingRecords) {
  fill_the_map(Durability::process);
}

TEST_F(LmdbLimitsTest, AFullMapUnderPowerRefusesNewClaimsAndKeepsServingExistingRecords) {
  fill_the_map(Durability::power);
}

TEST_F(LmdbLimitsTest, AnOversizedCompletionFailsAloneInItsBatch) {
  LmdbStore& store = open(1 << 20);
  const std::uint64_t big = acquire(request("big"));
  const std::uint64_t small = acquire(request("small"));
  std::optional<Result<TokenCheck>> big_result, small_result;
  std::optional<Result<ClaimOutcome>> claim_result;
  std::atomic<int> answered{0};
  {
    // All three in one transaction, which MDB_MAP_FULL aborts; then one by one.
    WriterGate gate(store, id("gate"));
    store.complete(id("big"), big, response(200, std::string(2 << 20, 'x')), 1h,
                   [&](Result<TokenCheck> r) {
                     big_result.emplace(std::move(r));
                     ++answered;
                   });
    store.complete(id("small"), small, response(), 1h, [&](Result<TokenCheck> r) {
      small_result.emplace(std::move(r));
      ++answered;
    });
    store.claim(request("new"), [&](Result<ClaimOutcome> r) {
      claim_result.emplace(std::move(r));
      ++answered;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (answered.load() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(answered.load(), 3);
  ASSERT_FALSE(big_result->has_value());
  EXPECT_EQ(big_result->error().code, Errc::store_full);
  EXPECT_NE(big_result->error().message.find("MDB_MAP_FULL"), std::string::npos)
      << big_result->error().message;
  ASSERT_TRUE(small_result->has_value());
  EXPECT_EQ(**small_result, TokenCheck::ok);
  ASSERT_TRUE(claim_result->has_value());
  EXPECT_TRUE((*claim_result)->acquired);

  // Nothing of the failed completion was written: the record is still in flight.
  auto rec = get("big");
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->state, RecordState::in_flight);
  EXPECT_EQ(*complete("big", big), TokenCheck::ok);
}

TEST_F(LmdbLimitsTest, GarbageDataFileIsRefusedUntouched) {
  std::mt19937 rng(42);
  std::string garbage(8192, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  std::ofstream(dir_ / "data.mdb", std::ios::binary) << garbage;
  expect_refused("data.mdb is not an LMDB environment");
  EXPECT_EQ(file_bytes(dir_ / "data.mdb"), garbage);
}

TEST_F(LmdbLimitsTest, ShortGarbageDataFileIsRefusedUntouched) {
  std::ofstream(dir_ / "data.mdb", std::ios::binary) << "not a database";
  expect_refused("data.mdb is not an LMDB environment");
}

TEST_F(LmdbLimitsTest, NewerFormatVersionIsRefusedUntouched) {
  open(std::size_t{1} << 20);  // small: the whole data file is compared
  ASSERT_EQ(*complete("k", acquire(request("k"))), TokenCheck::ok);
  store_.reset();
  const std::uint32_t version = 3;
  raw_put("meta", "format_version", std::string_view(reinterpret_cast<const char*>(&version), 4),
          false);
  expect_refused("idem format version 3 is not supported");
}

TEST_F(LmdbLimitsTest, AVersionOneDirectoryIsOpenedAndMarkedVersionTwo) {
  open();
  ASSERT_EQ(*complete("k", acquire(request("k"))), TokenCheck::ok);
  store_.reset();
  const std::uint32_t one = 1;
  raw_put("meta", "format_version", std::string_view(reinterpret_cast<const char*>(&one), 4),
          false);
  ASSERT_EQ(raw_format_version(), 1u);

  open();
  auto replay = claim(request("k"));
  ASSERT_TRUE(replay.has_value()) << replay.error().message;
  ASSERT_TRUE(replay->existing.has_value());
  EXPECT_EQ(replay->existing->state, RecordState::completed);
  store_.reset();
  EXPECT_EQ(raw_format_version(), 2u);
}

TEST_F(LmdbLimitsTest, TheMapIsReservedOnDiskBeforeTheFirstWrite) {
  // Written through a writable map, a page the disk cannot back would be a SIGBUS: every
  // block of map_size is allocated at start-up, not just the file's size set.
  constexpr std::size_t map = std::size_t{64} << 20;
  open(map);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "data.mdb").c_str(), &st), 0);
  EXPECT_GE(static_cast<std::size_t>(st.st_size), map);
  EXPECT_GE(static_cast<std::size_t>(st.st_blocks) * 512, map) << "data.mdb is sparse";
}

TEST_F(LmdbLimitsTest, AMapLargerThanTheFreeDiskStopsStartUpWithOneLine) {
  struct statvfs fs {};
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &fs), 0);
  const std::size_t free_bytes = std::size_t{fs.f_bavail} * fs.f_frsize;
  const std::size_t map = (free_bytes + (std::size_t{1} << 30)) & ~std::size_t{0xFFFFF};
  if (map > (std::size_t{8} << 40)) GTEST_SKIP() << "more free disk than a file may map here";
  LmdbStoreOptions o;
  o.path = dir_.path();
  o.map_size = map;
  try {
    make_lmdb_store(o);
    ADD_FAILURE() << "a map of " << map << " bytes was accepted with " << free_bytes << " free";
  } catch (const LmdbStoreError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cannot reserve map_size"), std::string::npos) << message;
    EXPECT_NE(message.find("lower map_size"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST_F(LmdbLimitsTest, ForeignLmdbEnvironmentIsRefusedUntouched) {
  raw_put("something-else", "key", "value", true);
  expect_refused("not an idem data directory");
}

TEST_F(LmdbLimitsTest, APathThatIsAFileIsRefused) {
  std::ofstream(dir_ / "file") << "x";
  LmdbStoreOptions o;
  o.path = dir_ / "file";
  EXPECT_THROW(make_lmdb_store(o), LmdbStoreError);
}

TEST_F(LmdbLimitsTest, ASecondOpenInOneProcessIsRefused) {
  open();
  LmdbStoreOptions o;
  o.path = dir_.path() / ".";  // another spelling of the same directory
  try {
    make_lmdb_store(o);
    ADD_FAILURE() << "opened twice";
  } catch (const LmdbStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("already open in this process"), std::string::npos);
  }
  auto got = get("k");  // the first store is unharmed
  ASSERT_TRUE(got.has_value());
}

TEST_F(LmdbLimitsTest, ARecordThatDoesNotDecodeIsAnErrorNotACrash) {
  open();
  acquire(request("k"));
  store_.reset();
  const RecordId rid = id("k");
  raw_put("records", std::string_view(reinterpret_cast<const char*>(rid.bytes().data()), 32),
          "IDR\x09garbage", false);
  open();
  auto got = get("k");
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code, Errc::corrupt_record);
  auto claimed = claim(request("k"));
  ASSERT_FALSE(claimed.has_value());
  EXPECT_EQ(claimed.error().code, Errc::corrupt_record);
  EXPECT_EQ(complete("k", 1).error().code, Errc::corrupt_record);
  // An operator's flush removes it, and the key works again.
  EXPECT_TRUE(*erase("k"));
  acquire(request("k"));
}

}  // namespace
}  // namespace idem::testing
