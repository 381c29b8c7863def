#pragma once

// Helpers of the LMDB store's tests: a scratch data directory per test, file contents for
// "nothing was changed" checks, and a way to hold the writer thread so that operations
// queue up and land in one batch.

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "unit/store_conformance.hpp"

extern char** environ;

namespace idem::testing {

/// A fresh directory under the temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "idem-lmdb-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string file_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  std::string bytes(static_cast<std::size_t>(std::max<std::streamoff>(in.tellg(), 0)), '\0');
  in.seekg(0);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

/// Runs the test helper (lmdb_crash_child) with `args` as another process; its exit
/// status, or -1 when it could not run.
inline int run_helper(std::vector<std::string> args) {
  std::string exe = IDEM_LMDB_CRASH_CHILD;
  std::vector<char*> argv{exe.data()};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

/// Holds the writer thread inside a callback until open() (or destruction), so that the
/// operations submitted meanwhile wait in the queue and are committed together.
class WriterGate {
 public:
  /// Claims `key` and blocks in its callback; returns once the writer is held.
  WriterGate(Store& store, const RecordId& key) {
    ClaimRequest r;
    r.id = key;
    r.fingerprint = digest_of("gate");
    r.owner = "gate";
    r.lease = std::chrono::seconds(30);
    r.ttl = std::chrono::hours(1);
    auto opened = open_.get_future().share();
    auto held = std::make_shared<std::promise<void>>();
    auto is_held = held->get_future();
    store.claim(r, [opened, held](Result<ClaimOutcome>) {
      held->set_value();
      opened.wait();
    });
    is_held.wait();
  }
  ~WriterGate() { open(); }
  void open() {
    if (!opened_) {
      opened_ = true;
      open_.set_value();
    }
  }

 private:
  std::promise<void> open_;
  bool opened_ = false;
};

/// LMDB-only tests: the fixture's helpers, with a store the test opens and reopens.
class LmdbStoreTest : public StoreConformanceTest {
 protected:
  void SetUp() override { clock_ = std::make_shared<ManualClock>(); }
  void TearDown() override { close(); }

  LmdbStoreOptions options() const {
    LmdbStoreOptions o;
    o.path = dir_.path();
    o.clock = clock_;
    o.sync_interval = std::chrono::milliseconds(0);  // only the syncs a test asks for
    return o;
  }
  LmdbStore& open(LmdbStoreOptions o) {
    lmdb_ = make_lmdb_store(std::move(o));
    store_ = lmdb_;
    return *lmdb_;
  }
  LmdbStore& open() { return open(options()); }
  void close() {
    store_.reset();
    lmdb_.reset();
  }

  TempDir dir_;
  std::shared_ptr<LmdbStore> lmdb_;
};

}  // namespace idem::testing
