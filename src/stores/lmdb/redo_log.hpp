#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace idem::lmdb {

/// The redo log of `durability = "power"` (docs/durable-store.md, "The redo log").
///
/// LMDB commits without flushing; each commit's changes are appended to the log with one
/// O_DSYNC write before anyone is told of them, and every `sync_interval` a checkpoint
/// flushes data.mdb and records, in the log, a copy of LMDB's meta page for a commit
/// whose pages a read transaction keeps from being reused. After a power cut, recovery
/// puts that meta page back (the pages it points at were never written since, only
/// flushed) and replays the log on top of it.
///
/// Two files, DIR/redo/0 and DIR/redo/1, used in turn: generation g writes file g % 2.
/// Each file starts with a checkpoint block (kRedoHeaderBytes); records follow it. A
/// file is rewritten from the front when its generation comes round again, so its tail
/// may hold records of an older generation, which the reader stops at.

enum class RedoTable : std::uint8_t { records = 0, expiry = 1, meta = 2 };

inline constexpr std::size_t kRedoHeaderBytes = 4096;
/// How far ahead of its writes a log file is written with zeros.
inline constexpr std::uint64_t kRedoFileStep = std::uint64_t{8} << 20;
/// The part of LMDB's meta page a checkpoint keeps: its page header and MDB_meta.
inline constexpr std::size_t kMetaCopyBytes = 256;

/// The changes of one write transaction: whole-key puts and deletes, in order. Replayed
/// onto the state before the transaction, they give the state after it.
class RedoBatch {
 public:
  void put(RedoTable table, std::string_view key, std::string_view value);
  void del(RedoTable table, std::string_view key);
  bool empty() const noexcept { return count_ == 0; }
  void clear() noexcept {
    body_.clear();
    count_ = 0;
  }
  /// Appends this batch to `out` as the record of transaction `txnid` in `generation`.
  void frame(std::uint64_t generation, std::uint64_t txnid, std::string& out) const;

 private:
  std::string body_;
  std::uint32_t count_ = 0;
};

struct RedoChange {
  bool put = false;
  RedoTable table = RedoTable::records;
  std::string_view key;
  std::string_view value;
};

struct RedoRecord {
  std::uint64_t generation = 0;
  std::uint64_t txnid = 0;
  std::vector<RedoChange> changes;  ///< views into the parsed bytes
};

/// The records at the front of `bytes` (a file's contents after its header) that are
/// whole, intact and of `generation`; stops at the first that is not.
std::vector<RedoRecord> parse_redo_records(std::string_view bytes, std::uint64_t generation);

struct RedoCheckpoint {
  std::uint64_t generation = 0;
  std::uint64_t txnid = 0;  ///< the commit whose meta page `meta` is
  std::uint32_t page_size = 0;
  std::string meta;     ///< kMetaCopyBytes of the meta page
  std::string boot_id;  ///< the machine's boot when the checkpoint was made
};

/// The txnid in a copy of an LMDB meta page (kMetaCopyBytes); 0 when it is not one.
std::uint64_t lmdb_meta_txnid(std::string_view meta);

/// Exactly kRedoHeaderBytes.
std::string encode_checkpoint(const RedoCheckpoint& checkpoint);
/// Empty when `block` is not an intact checkpoint.
std::optional<RedoCheckpoint> decode_checkpoint(std::string_view block);

/// This boot of the machine (/proc/sys/kernel/random/boot_id): a page cache that holds
/// what a process wrote survives that process, not the machine. Empty when unknown.
std::string current_boot_id();
/// Tests only: what current_boot_id() answers from now on (empty: the real one again).
void set_boot_id_for_testing(std::string boot_id);
/// Tests only: the next `n` appends to any redo log fail with ENOSPC, writing nothing.
void fail_redo_appends_for_testing(int n);
/// Tests only: the next `n` checkpoints fail with EIO, before they flush anything.
void fail_checkpoints_for_testing(int n);
/// EIO while failures asked for by fail_checkpoints_for_testing remain (taking one), else 0.
int injected_checkpoint_failure();

/// DIR/redo, and where retire_redo_log() moves it before removing it.
std::filesystem::path redo_dir(const std::filesystem::path& dir);

/// Both files' newest intact checkpoint, and every record that follows it: those of its
/// generation in its file, then those of the next generation in the other file.
struct RedoContents {
  RedoCheckpoint checkpoint;
  std::vector<std::string> files;  ///< owns the bytes the records view
  std::vector<RedoRecord> records;
};
/// Empty when DIR/redo holds no intact checkpoint (or does not exist). Throws
/// LmdbStoreError when a file cannot be read.
std::optional<RedoContents> read_redo_log(const std::filesystem::path& dir);

/// Removes DIR/redo in a way a crash cannot leave half done (a rename, then the
/// removal); only once data.mdb holds everything the log did. Throws LmdbStoreError.
void retire_redo_log(const std::filesystem::path& dir);

/// The writing side, owned by a store under `durability = "power"`.
class RedoLog {
 public:
  /// Creates DIR/redo with `first` as the checkpoint of generation first.generation,
  /// durably, before the log is in place. Throws LmdbStoreError.
  static std::unique_ptr<RedoLog> create(const std::filesystem::path& dir,
                                         const RedoCheckpoint& first);
  ~RedoLog();
  RedoLog(const RedoLog&) = delete;
  RedoLog& operator=(const RedoLog&) = delete;

  /// Appends framed records of `generation` to its file, on the disk when it returns 0;
  /// otherwise an errno value, and the next append of that generation writes at the
  /// same place. A new generation starts its file from the front.
  int append(std::uint64_t generation, std::string_view bytes);
  /// Writes the checkpoint block of its generation's file; on the disk when it returns
  /// 0, otherwise an errno value.
  int write_checkpoint(const RedoCheckpoint& checkpoint);

 private:
  RedoLog() = default;
  /// Writes zeros to `file` up to at least `to`; 0 or an errno value.
  int extend(int file, std::uint64_t to);
  int fds_[2] = {-1, -1};
  std::uint64_t written_[2] = {0, 0};  ///< bytes of each file written at least once
  std::uint64_t generation_ = 0;
  std::uint64_t offset_ = kRedoHeaderBytes;
};

}  // namespace idem::lmdb
