#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "idem/clock.hpp"
#include "idem/store.hpp"

namespace idem {

/// When an acknowledged write is safe.
enum class Durability {
  /// Committed pages are in the OS page cache before any callback reports success: nothing
  /// is lost when the process dies (even kill -9). An OS crash or power loss may lose the
  /// last writes, and on file systems that reorder writes may damage the environment.
  process,
  /// Every commit is on the disk before any callback reports success: its changes are
  /// appended to a redo log with one O_DSYNC write, and data.mdb is flushed every
  /// sync_interval (docs/durable-store.md).
  power,
};

struct LmdbStoreOptions {
  /// The data directory; created if absent. Holds data.mdb, lock.mdb, idem.lock and secret.
  std::filesystem::path path = "idem-data";
  /// The largest the data file may grow. Claims fail with store_full near it.
  std::size_t map_size = std::size_t{1} << 30;
  Durability durability = Durability::process;
  /// How often the writer looks for expired records, and how many it removes per
  /// transaction (a full batch is followed by another as soon as the queue is idle).
  std::chrono::milliseconds sweep_interval{1000};
  std::size_t sweep_batch = 1000;
  /// Most operations committed in one write transaction (group commit).
  std::size_t max_batch = 1024;
  /// With Durability::process: flush to disk this often when something was written, to
  /// bound what an OS crash loses. Zero never flushes (the OS writes back on its own).
  std::chrono::milliseconds sync_interval{1000};
  /// With Durability::power: flush data.mdb and start the redo log again this often (or
  /// sooner: see docs/durable-store.md). It loses nothing either way: it sets how much
  /// log a recovery after a power cut replays, and how much each flush writes at once.
  std::chrono::milliseconds checkpoint_interval{1000};
  /// With Durability::power: a claim that may take over an expired lease (on_expired_lease
  /// "retry") is held only in memory this long, then written if it is still in flight.
  /// Most requests complete sooner, and then their completion is the only write; a lease
  /// younger than this is lost if the process dies (docs/durable-store.md).
  std::chrono::milliseconds lease_write_delay{10};
  /// Completed records kept decoded in memory for replays (0: none). Only a cache: every
  /// answer is what LMDB holds, also when other processes write the directory.
  std::size_t cache_bytes = std::size_t{64} << 20;
  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>();
};

/// What the LMDB store did since it was opened, for tests, benchmarks and metrics.
struct LmdbStoreCounters {
  /// committed write transactions carrying operations (power: or leases written as they
  /// stood, see leases_written)
  std::uint64_t transactions = 0;
  std::uint64_t operations = 0;   ///< operations those transactions carried
  std::uint64_t syncs = 0;        ///< flushes and (power) redo log writes that succeeded
  std::uint64_t checkpoints = 0;  ///< power: checkpoints recorded in the redo log
  /// power: checkpoints that failed (data.mdb not flushed, or the record not written); the
  /// redo log keeps every record since the last one recorded, and the next attempt comes
  /// when one is due again, at least 100 ms after the failure
  std::uint64_t checkpoint_failures = 0;
  std::uint64_t store_full = 0;    ///< operations refused with Errc::store_full
  std::uint64_t read_answers = 0;  ///< claims answered from a read transaction
  std::uint64_t sweeps = 0;        ///< sweep transactions that removed something
  std::uint64_t swept = 0;         ///< expired records the sweeper removed
  /// power: claims held in memory (on_expired_lease "retry"), and of those, the ones
  /// still in flight after lease_write_delay, written as they stood
  std::uint64_t leases_held = 0;
  std::uint64_t leases_written = 0;
  /// power: completions of those leases that were logged and held in memory, and the
  /// transactions (folds) that wrote such records to data.mdb, about one a checkpoint
  std::uint64_t completions_held = 0;
  std::uint64_t folds = 0;
};

/// A start-up failure of the LMDB store or of an offline tool: one line naming the data
/// directory and what is wrong. The data is left as it was.
class LmdbStoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The embedded durable store, over LMDB. Reads (get, and claims that find a record they
/// cannot take) run on the caller's thread in a read-only transaction and call back
/// before returning. Writes go to one writer thread that commits every queued operation in
/// one transaction and only then calls back, on the writer thread: a successful callback
/// means the write is as durable as `durability` says. Thread-safe.
///
/// One process opens a data directory once (a second open in the same process throws);
/// other processes may open it too (LMDB serialises their writers), but watches only see
/// this process's writes.
class LmdbStore : public Store {
 public:
  virtual LmdbStoreCounters counters() const = 0;
  /// Shorthand for counters().syncs.
  std::uint64_t syncs() const { return counters().syncs; }
  virtual const std::filesystem::path& path() const noexcept = 0;
};

/// Opens (or creates) the store. Throws LmdbStoreError when the directory cannot be
/// created or locked, holds something that is not an idem LMDB environment, or holds a
/// format version this build does not read. Start-up only.
std::shared_ptr<LmdbStore> make_lmdb_store(LmdbStoreOptions options);

/// The record-naming secret kept with the store (contract section 5): the file `secret`
/// in `dir`, 32 random bytes, mode 0600. Created atomically on first use and read back on
/// later starts, so every gateway sharing the directory names records alike. Throws
/// LmdbStoreError when the file has the wrong size, is readable by group or others, or
/// cannot be written. Start-up only.
std::string load_or_create_secret(const std::filesystem::path& dir);

}  // namespace idem
