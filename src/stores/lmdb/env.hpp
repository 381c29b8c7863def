#pragma once

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace idem::lmdb {

/// The layout of an idem data directory, version 2. Three named databases:
///   records  id bytes -> encode_record(record)
///   expiry   (expires_at in ms, offset to sort as unsigned, big-endian) ++ id -> empty;
///            the sweeper walks it from the front, so it never scans unexpired records
///   meta     "format_version" -> u32, "last_token" -> u64, "bytes" -> u64, in native
///            byte order like LMDB's own pages (a data file never moves across byte orders)
/// Version 2 has version 1's layout, but is written through a writable map
/// (MDB_WRITEMAP), which LMDB forbids mixing with writers that do not use one: a build of
/// version 1 refuses it. This build opens version 1 and marks it 2 when it writes.
inline constexpr std::uint32_t kFormatVersion = 2;
inline constexpr std::uint32_t kOldestFormatVersion = 1;
inline constexpr const char* kRecordsDb = "records";
inline constexpr const char* kExpiryDb = "expiry";
inline constexpr const char* kMetaDb = "meta";
inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kLastTokenKey = "last_token";
inline constexpr std::string_view kBytesKey = "bytes";
/// Every opener uses the same reader table size: the first one fixes it in lock.mdb.
inline constexpr unsigned kMaxReaders = 256;

/// "MDB_MAP_FULL: Environment mapsize limit reached" and the like.
std::string mdb_error(int rc);

/// fsync()s a file or directory by path; true when it was flushed.
bool fsync_path(const std::filesystem::path& path) noexcept;

/// Throws LmdbStoreError "lmdb store at DIR: WHAT".
[[noreturn]] void fail(const std::filesystem::path& dir, std::string_view what);

struct Dbis {
  MDB_dbi records = 0;
  MDB_dbi expiry = 0;
  MDB_dbi meta = 0;
};

/// Closes an environment opened by hand (open_raw) unless released.
struct EnvCloser {
  MDB_env* env = nullptr;
  ~EnvCloser() {
    if (env) mdb_env_close(env);
  }
  MDB_env* release() noexcept { return std::exchange(env, nullptr); }
};

/// Aborts a transaction begun by hand, if any.
struct TxnAborter {
  MDB_txn* txn = nullptr;
  ~TxnAborter() {
    if (txn) mdb_txn_abort(txn);
  }
};

/// Opens the environment in `dir` with `flags`; throws LmdbStoreError with one line.
MDB_env* open_raw(const std::filesystem::path& dir, unsigned flags, std::size_t map_size);
/// Reads the meta database and the table handles. With `create`, makes a fresh layout
/// instead (the environment was just created). `found_version` receives the format version
/// of an existing layout.
Dbis open_layout(const std::filesystem::path& dir, MDB_env* env, bool create,
                 std::uint32_t* found_version = nullptr);

/// Before LMDB opens `dir`: if a redo log is left by a power store that is gone (a power
/// cut, an OS crash, or a process that died), puts data.mdb back to its checkpoint,
/// replays the log onto it, flushes, and retires the log. Needs every other user of the
/// directory gone: `lock_fd` (idem.lock, held shared unless `exclusive`) is taken
/// exclusively meanwhile. A reader (`reader`) of a directory whose power store still runs
/// reads data.mdb as it is. The replay maps at least `map_size` bytes (0: what data.mdb
/// records), and more if the log needs it. Throws LmdbStoreError with one line.
void recover_from_redo_log(const std::filesystem::path& dir, int lock_fd, bool exclusive,
                           bool reader, std::size_t map_size);

/// How an Env is opened.
enum class Access {
  create,      ///< the store: creates the directory and the environment when absent
  read_only,   ///< list and inspect
  read_write,  ///< erase and flush: the directory must exist
  exclusive,   ///< compaction: read-write, and no other process may have it open
};

/// An open, validated environment, with what keeps it ours: the directory's idem.lock
/// held shared (exclusive for compaction) and the directory registered as open in this
/// process, because LMDB forbids opening one environment twice in a process.
class Env {
 public:
  struct Options {
    Access access = Access::create;
    std::size_t map_size = 0;  ///< 0 keeps the environment's own
    /// Commits flush their data pages before their meta page (MDB_NOMETASYNC), for the
    /// tools' few writes; otherwise MDB_NOSYNC, and the store flushes.
    bool sync_commits = false;
    /// The directory's only writer: a store under durability power, whose redo log holds
    /// only its own commits.
    bool only_writer = false;
  };

  /// Validates before any write: an existing data.mdb is first opened read-only and its
  /// meta database checked, so a foreign or newer directory is refused untouched.
  static std::unique_ptr<Env> open(const std::filesystem::path& dir, const Options& options);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  MDB_env* get() const noexcept { return env_; }
  const Dbis& dbis() const noexcept { return dbis_; }
  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path data_file() const { return dir_ / "data.mdb"; }

  /// Closes the environment now (compaction swaps the file after this); the locks stay.
  void close_environment() noexcept;

 private:
  Env() = default;
  /// writer.lock: shared by writers, exclusive for a power gateway, whose redo log
  /// holds only its own commits.
  void lock_writers(bool only_writer);
  std::filesystem::path dir_;
  MDB_env* env_ = nullptr;
  Dbis dbis_;
  int lock_fd_ = -1;
  int writer_lock_fd_ = -1;
  std::uint64_t registry_dev_ = 0;
  std::uint64_t registry_ino_ = 0;
  bool registered_ = false;
};

}  // namespace idem::lmdb
