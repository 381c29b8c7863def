// The secret kept in the data directory, and the offline tools idemctl calls.

#include "idem/lmdb_tools.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb_test_support.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0);
  return st.st_mode & 07777;
}

TEST(LmdbSecretTest, CreatedPrivateOnceAndReused) {
  TempDir dir;
  const std::string first = load_or_create_secret(dir.path() / "data");
  EXPECT_EQ(first.size(), 32u);
  EXPECT_EQ(mode_of(dir.path() / "data" / "secret"), 0600u);
  EXPECT_EQ(load_or_create_secret(dir.path() / "data"), first);
  EXPECT_NE(first, std::string(32, '\0'));
  // No temporary file is left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path() / "data")) ++files;
  EXPECT_EQ(files, 1);
}

TEST(LmdbSecretTest, ReadableByOthersIsRefused) {
  TempDir dir;
  load_or_create_secret(dir.path());
  ASSERT_EQ(::chmod((dir / "secret").c_str(), 0644), 0);
  try {
    load_or_create_secret(dir.path());
    ADD_FAILURE() << "accepted a secret readable by others";
  } catch (const LmdbStoreError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((dir / "secret").string()), std::string::npos) << message;
    EXPECT_NE(message.find("0644"), std::string::npos) << message;
  }
}

TEST(LmdbSecretTest, WrongSizeIsRefused) {
  TempDir dir;
  { std::ofstream(dir / "secret") << "short"; }
  ASSERT_EQ(::chmod((dir / "secret").c_str(), 0600), 0);
  try {
    load_or_create_secret(dir.path());
    ADD_FAILURE() << "accepted a 5-byte secret";
  } catch (const LmdbStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("5 bytes, expected 32"), std::string::npos) << e.what();
  }
}

// A directory with a few records, written by the store, which is then closed.
class LmdbToolsTest : public StoreConformanceTest {
 protected:
  static constexpr std::size_t kMapSize = std::size_t{8} << 20;

  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    LmdbStoreOptions o;
    o.path = dir_.path();
    o.clock = clock_;
    o.map_size = kMapSize;  // the data file is the map's size: tests read it whole
    auto lmdb = make_lmdb_store(o);
    store_ = lmdb;
    ASSERT_EQ(*complete("done", acquire(request("done")), response(201, "body")), TokenCheck::ok);
    acquire(request("in-flight"));
    ASSERT_EQ(*complete("short", acquire(request("short")), response(), 10s), TokenCheck::ok);
    last_token_ = acquire(request("last"));
    bytes_ = lmdb->stats().bytes;
    store_.reset();
  }

  void reopen() {
    LmdbStoreOptions o;
    o.path = dir_.path();
    o.clock = clock_;
    o.map_size = kMapSize;  // the data file is the map's size: tests read it whole
    store_ = make_lmdb_store(o);
  }

  TempDir dir_;
  std::uint64_t last_token_ = 0;
  std::uint64_t bytes_ = 0;
};

TEST_F(LmdbToolsTest, ListShowsEveryRecord) {
  clock_->advance(20s);
  const auto records = lmdb_list_records(dir_.path(), clock_->now());
  ASSERT_EQ(records.size(), 4u);
  std::size_t total = 0;
  int expired = 0;
  for (const auto& r : records) {
    ASSERT_TRUE(r.record.has_value()) << r.error;
    total += r.size;
    expired += r.expired ? 1 : 0;
    if (r.id == id("done")) {
      EXPECT_EQ(r.record->state, RecordState::completed);
      EXPECT_EQ(r.record->response->status, 201);
    }
  }
  EXPECT_EQ(expired, 1);
  EXPECT_EQ(total, bytes_);
  EXPECT_EQ(lmdb_list_records(dir_.path(), clock_->now(), 2).size(), 2u);
}

TEST_F(LmdbToolsTest, InspectFindsOneRecord) {
  auto found = lmdb_inspect_record(dir_.path(), id("done"), clock_->now());
  ASSERT_TRUE(found.has_value());
  ASSERT_TRUE(found->record.has_value());
  EXPECT_EQ(found->record->response->body, "body");
  EXPECT_FALSE(lmdb_inspect_record(dir_.path(), id("absent"), clock_->now()).has_value());
}

TEST_F(LmdbToolsTest, EraseAndFlushKeepTheStoreConsistent) {
  EXPECT_TRUE(lmdb_erase_record(dir_.path(), id("done")));
  EXPECT_FALSE(lmdb_erase_record(dir_.path(), id("done")));
  reopen();
  EXPECT_EQ(store_->stats().records, 3u);
  EXPECT_LT(store_->stats().bytes, bytes_);
  EXPECT_TRUE(acquire(request("done")) > last_token_);
  store_.reset();

  EXPECT_EQ(lmdb_erase_all(dir_.path()), 4u);
  EXPECT_TRUE(lmdb_list_records(dir_.path(), clock_->now()).empty());
  reopen();
  EXPECT_EQ(store_->stats().records, 0u);
  EXPECT_EQ(store_->stats().bytes, 0u);
  EXPECT_GT(acquire(request("in-flight")), last_token_ + 1) << "tokens keep increasing";
}

TEST_F(LmdbToolsTest, CompactKeepsTheRecords) {
  // Grow the file, then empty most of it, so there is something to compact.
  reopen();
  for (int i = 0; i < 300; ++i) {
    const std::string key = "bulk-" + std::to_string(i);
    ASSERT_EQ(*complete(key, acquire(request(key)), response(200, std::string(4000, 'b'))),
              TokenCheck::ok);
  }
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(*erase("bulk-" + std::to_string(i)));
  store_.reset();

  const auto report = lmdb_compact(dir_.path());
  EXPECT_LT(report.bytes_after, report.bytes_before);
  EXPECT_FALSE(fs::exists(dir_ / "compact.tmp"));
  reopen();
  EXPECT_EQ(store_->stats().records, 4u);
  auto replay = claim(request("done"));
  ASSERT_TRUE(replay.has_value() && replay->existing && replay->existing->response);
  EXPECT_EQ(replay->existing->response->body, "body");
  EXPECT_GT(acquire(request("next")), last_token_);
}

TEST_F(LmdbToolsTest, CompactRefusesWhileTheDirectoryIsInUse) {
  // What a gateway in another process holds: a shared lock on idem.lock.
  const int fd = ::open((dir_ / "idem.lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_SH), 0);
  const std::string before = file_bytes(dir_ / "data.mdb");
  try {
    lmdb_compact(dir_.path());
    ADD_FAILURE() << "compacted a directory in use";
  } catch (const LmdbStoreError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another process"), std::string::npos)
        << e.what();
  }
  ::close(fd);
  EXPECT_EQ(file_bytes(dir_ / "data.mdb"), before);
}

TEST_F(LmdbToolsTest, ToolsRefuseAMissingDirectory) {
  EXPECT_THROW(lmdb_list_records(dir_ / "absent", clock_->now()), LmdbStoreError);
  EXPECT_THROW(lmdb_erase_all(dir_ / "absent"), LmdbStoreError);
  EXPECT_FALSE(fs::exists(dir_ / "absent"));
}

}  // namespace
}  // namespace idem::testing
