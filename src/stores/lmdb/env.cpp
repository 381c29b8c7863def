// Opening a data directory. Everything that can refuse a directory happens here, before
// the first write, so that a wrong --store path or a directory from a newer idem fails
// start-up with one line and leaves the bytes as they were.

#include "stores/lmdb/env.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb/redo_log.hpp"

namespace idem::lmdb {
namespace fs = std::filesystem;

// LMDB's texts for its own codes start with the code's name (MDB_MAP_FULL: ...), which
// operators search for; system errors come as strerror's text.
std::string mdb_error(int rc) { return mdb_strerror(rc); }

bool fsync_path(const fs::path& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced;
}

void fail(const fs::path& dir, std::string_view what) {
  throw LmdbStoreError("lmdb store at " + dir.string() + ": " + std::string(what));
}

namespace {

// Directories open in this process, by device and inode (two spellings of one path
// are one directory). LMDB's POSIX locks break if a process opens an environment twice.
struct OpenRegistry {
  std::mutex mutex;
  std::set<std::pair<std::uint64_t, std::uint64_t>> open;
};
/// Never destroyed: a store dropped from one of its own callbacks closes its environment on
/// a detached thread, which may still run while the process's static destructors do.
OpenRegistry& registry() {
  static auto* instance = new OpenRegistry;
  return *instance;
}

// Marks the directory as written by this build's format (see kFormatVersion).
void write_format_version(const fs::path& dir, MDB_txn* txn, MDB_dbi meta) {
  std::uint32_t version = kFormatVersion;
  MDB_val key{kFormatVersionKey.size(), const_cast<char*>(kFormatVersionKey.data())};
  MDB_val val{sizeof version, &version};
  if (int rc = mdb_put(txn, meta, &key, &val, 0)) {
    fail(dir, "cannot write the format version: " + mdb_error(rc));
  }
}

// Writers map data.mdb writable (all but a power store), so a page LMDB writes is a store
// to memory, and a store that the file system cannot back (a full disk under a sparse
// file) is a SIGBUS, not an error code. Every block of the map is therefore allocated
// before the first write: a full disk then stops start-up with one line instead of the
// gateway later (a power store, which writes with pwrite, gets the same promise).
void reserve_map(const fs::path& dir, MDB_env* env) {
  MDB_envinfo info;
  mdb_env_info(env, &info);
  mdb_filehandle_t fd;
  if (int rc = mdb_env_get_fd(env, &fd)) fail(dir, "cannot get data.mdb: " + mdb_error(rc));
  auto refuse = [&](const std::string& why) {
    fail(dir, "cannot reserve map_size (" + std::to_string(info.me_mapsize) +
                  " bytes) for data.mdb on disk: " + why + "; free disk space or lower map_size");
  };
  // Checked first: a file system fills itself up to the last block before it answers a
  // too-large fallocate with ENOSPC, and everything else on it would see a full disk.
  struct stat st {};
  struct statvfs fs {};
  if (::fstat(fd, &st) == 0 && ::fstatvfs(fd, &fs) == 0) {
    const auto allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
    const auto missing = info.me_mapsize > allocated ? info.me_mapsize - allocated : 0;
    const auto available = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (missing > available) {
      refuse(std::to_string(missing) + " more bytes needed, " + std::to_string(available) +
             " available");
    }
  }
  if (int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(info.me_mapsize))) {
    refuse(std::strerror(rc));
  }
}

// Marks a directory of an older format as written by this build's (see kFormatVersion).
void upgrade_format(const fs::path& dir, MDB_env* env, const Dbis& dbis) {
  TxnAborter txn;
  int rc = mdb_txn_begin(env, nullptr, 0, &txn.txn);
  if (rc != 0) fail(dir, "cannot begin a transaction: " + mdb_error(rc));
  write_format_version(dir, txn.txn, dbis.meta);
  rc = mdb_txn_commit(std::exchange(txn.txn, nullptr));
  if (rc != 0) fail(dir, "cannot write the format version: " + mdb_error(rc));
}

bool has_data(const fs::path& dir) {
  std::error_code ec;
  const auto size = fs::file_size(dir / "data.mdb", ec);
  // An empty data.mdb holds nothing: LMDB initialises it like a missing one.
  return !ec && size > 0;
}

}  // namespace

MDB_env* open_raw(const fs::path& dir, unsigned flags, std::size_t map_size) {
  EnvCloser env;
  int rc = mdb_env_create(&env.env);
  if (rc != 0) fail(dir, "cannot create an LMDB environment: " + mdb_error(rc));
  mdb_env_set_maxdbs(env.env, 4);
  mdb_env_set_maxreaders(env.env, kMaxReaders);
  if (map_size != 0) {
    rc = mdb_env_set_mapsize(env.env, map_size);
    if (rc != 0) fail(dir, "map_size " + std::to_string(map_size) + ": " + mdb_error(rc));
  }
  rc = mdb_env_open(env.env, dir.c_str(), flags, 0600);
  if (rc == MDB_INVALID) {
    fail(dir, "data.mdb is not an LMDB environment (" + mdb_error(rc) + "); nothing was changed");
  }
  if (rc == MDB_VERSION_MISMATCH) {
    fail(dir, "data.mdb was written by an incompatible LMDB version (" + mdb_error(rc) +
                  "); nothing was changed");
  }
  if (rc != 0) fail(dir, "cannot open the LMDB environment: " + mdb_error(rc));
  return env.release();
}

Dbis open_layout(const fs::path& dir, MDB_env* env, bool create, std::uint32_t* found_version) {
  TxnAborter txn;
  int rc = mdb_txn_begin(env, nullptr, create ? 0 : MDB_RDONLY, &txn.txn);
  if (rc != 0) fail(dir, "cannot begin a transaction: " + mdb_error(rc));
  const unsigned flags = create ? MDB_CREATE : 0;
  Dbis dbis;
  rc = mdb_dbi_open(txn.txn, kMetaDb, flags, &dbis.meta);
  if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
    fail(dir,
         "data.mdb is an LMDB environment but not an idem data directory (no meta "
         "database); nothing was changed");
  }
  if (rc != 0) fail(dir, "cannot open the meta database: " + mdb_error(rc));
  if (create) {
    write_format_version(dir, txn.txn, dbis.meta);
  } else {
    MDB_val key{kFormatVersionKey.size(), const_cast<char*>(kFormatVersionKey.data())};
    MDB_val val;
    rc = mdb_get(txn.txn, dbis.meta, &key, &val);
    if (rc == MDB_NOTFOUND)
      fail(dir, "the meta database has no format version; nothing was changed");
    if (rc != 0) fail(dir, "cannot read the format version: " + mdb_error(rc));
    if (val.mv_size != sizeof(std::uint32_t)) {
      fail(dir, "the format version is " + std::to_string(val.mv_size) +
                    " bytes long, expected 4; nothing was changed");
    }
    std::uint32_t version;
    std::memcpy(&version, val.mv_data, sizeof version);
    if (version < kOldestFormatVersion || version > kFormatVersion) {
      fail(dir, "idem format version " + std::to_string(version) +
                    " is not supported (this build reads versions " +
                    std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) +
                    "); nothing was changed");
    }
    if (found_version) *found_version = version;
  }
  for (auto [name, dbi] : {std::pair{kRecordsDb, &dbis.records}, {kExpiryDb, &dbis.expiry}}) {
    rc = mdb_dbi_open(txn.txn, name, flags, dbi);
    if (rc == MDB_NOTFOUND) {
      fail(dir, std::string("the ") + name + " database is missing; nothing was changed");
    }
    if (rc != 0) fail(dir, std::string("cannot open the ") + name + " database: " + mdb_error(rc));
  }
  // Committing, even read-only, keeps the handles open for later transactions.
  rc = mdb_txn_commit(std::exchange(txn.txn, nullptr));
  if (rc != 0) fail(dir, "cannot commit the layout: " + mdb_error(rc));
  return dbis;
}

std::unique_ptr<Env> Env::open(const fs::path& dir, const Options& options) {
  std::unique_ptr<Env> self(new Env());
  self->dir_ = dir;
  std::error_code ec;
  if (options.access == Access::create) {
    fs::create_directories(dir, ec);
    if (ec) fail(dir, "cannot create the directory: " + ec.message());
  }
  if (!fs::is_directory(dir, ec)) {
    fail(dir, fs::exists(dir) ? "not a directory" : "no such data directory");
  }

  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) fail(dir, std::string("stat: ") + std::strerror(errno));
  {
    std::lock_guard lock(registry().mutex);
    if (!registry().open.emplace(st.st_dev, st.st_ino).second) {
      fail(dir, "already open in this process");
    }
    self->registry_dev_ = st.st_dev;
    self->registry_ino_ = st.st_ino;
    self->registered_ = true;
  }

  // idem.lock: shared by every user of the directory, exclusive for compaction, which
  // LMDB's own lock file cannot express (it lets any number of processes in).
  const fs::path lock_path = dir / "idem.lock";
  self->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (self->lock_fd_ < 0 && options.access == Access::read_only) {
    self->lock_fd_ = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (self->lock_fd_ < 0) fail(dir, "cannot open idem.lock: " + std::string(std::strerror(errno)));
  const bool exclusive = options.access == Access::exclusive;
  if (::flock(self->lock_fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) fail(dir, "flock idem.lock: " + std::string(std::strerror(errno)));
    fail(dir, exclusive ? "in use by another process (a gateway or idemctl); stop it first"
                        : "a compaction is running; try again when it is done");
  }

  const bool fresh = !has_data(dir);
  if (fresh && options.access != Access::create) fail(dir, "holds no idem data (no data.mdb)");
  if (options.access != Access::read_only) self->lock_writers(options.only_writer);
  if (!fresh) {
    recover_from_redo_log(dir, self->lock_fd_, exclusive, options.access == Access::read_only,
                          options.map_size);
  }

  const unsigned base = MDB_NOTLS | MDB_NORDAHEAD;
  if (options.access == Access::read_only) {
    self->env_ = open_raw(dir, base | MDB_RDONLY, 0);
    self->dbis_ = open_layout(dir, self->env_, false);
    return self;
  }
  std::uint32_t version = kFormatVersion;
  if (!fresh) {
    // Checked read-only first: opening read-write must not be the first thing that
    // touches a directory that turns out not to be ours.
    EnvCloser check{open_raw(dir, base | MDB_RDONLY, 0)};
    open_layout(dir, check.env, false, &version);
  }
  // MDB_NOSYNC for the store: commits are not flushed; it flushes every sync_interval, and
  // under durability power its redo log is what makes a commit durable (redo_log.hpp).
  // MDB_NOMETASYNC for the tools: a commit flushes its data pages before it writes the
  // meta page (so a crash never leaves a meta page pointing at unwritten pages), and the
  // tool flushes that meta page with mdb_env_sync before it reports the write done.
  // MDB_WRITEMAP: commits write pages in the shared map instead of copying each one into
  // the page cache with pwrite, which was most of the writer's time (docs/durable-store.md).
  // Not for the only writer (durability power): there every page a commit copies is a new
  // one (the checkpoint's pin), and each flush write-protects the map again, so a
  // writable map costs a page fault per page where pwrite costs a copy; measured slower.
  // LMDB forbids mixing the two only between processes writing at the same time, which
  // the only writer excludes.
  const unsigned sync = options.sync_commits ? MDB_NOMETASYNC : MDB_NOSYNC;
  const unsigned map = options.only_writer ? 0u : unsigned{MDB_WRITEMAP};
  self->env_ = open_raw(dir, base | sync | map, options.map_size);
  reserve_map(dir, self->env_);
  int dead = 0;
  mdb_reader_check(self->env_, &dead);  // slots of killed processes would pin old pages
  self->dbis_ = open_layout(dir, self->env_, fresh);
  if (version < kFormatVersion) upgrade_format(dir, self->env_, self->dbis_);
  // A redo log still here holds no intact checkpoint (recovery retired every other one): a
  // power store died while it created its log. data.mdb holds all it wrote once flushed.
  std::error_code exists_ec;
  const bool old_log = fs::exists(redo_dir(dir), exists_ec);
  if (fresh || old_log) {
    const int rc = mdb_env_sync(self->env_, 1);
    if (rc != 0) fail(dir, "cannot flush the environment: " + mdb_error(rc));
  }
  if (old_log) retire_redo_log(dir);
  return self;
}

void Env::lock_writers(bool only_writer) {
  const fs::path path = dir_ / "writer.lock";
  writer_lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (writer_lock_fd_ < 0) {
    fail(dir_, "cannot open writer.lock: " + std::string(std::strerror(errno)));
  }
  if (::flock(writer_lock_fd_, (only_writer ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) return;
  if (errno != EWOULDBLOCK) fail(dir_, "flock writer.lock: " + std::string(std::strerror(errno)));
  fail(dir_, only_writer
                 ? "another process writes to this directory (a gateway or idemctl); "
                   "durability \"power\" needs to be its only writer"
                 : "a gateway with durability \"power\" writes to this directory and must be "
                   "its only writer; go through it (idemctl flush) or stop it first");
}

void Env::close_environment() noexcept {
  if (env_) mdb_env_close(std::exchange(env_, nullptr));
}

Env::~Env() {
  close_environment();
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (writer_lock_fd_ >= 0) ::close(writer_lock_fd_);
  if (registered_) {
    std::lock_guard lock(registry().mutex);
    registry().open.erase({registry_dev_, registry_ino_});
  }
}

}  // namespace idem::lmdb
