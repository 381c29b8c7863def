#include "stores/lmdb/redo_log.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>

#include "stores/lmdb/env.hpp"

namespace idem::lmdb {
namespace fs = std::filesystem;
namespace {

// A record: magic, body length, generation, txnid, change count, zero, then the hash of
// all of it (hash field excluded) and of the body. A change: kind, table, key length,
// value length, key, value.
constexpr std::uint32_t kRecordMagic = 0x4F445249;  // "IRDO"
constexpr std::size_t kRecordHead = 40;
constexpr std::size_t kChangeHead = 10;
constexpr std::uint8_t kPut = 1;
constexpr std::uint8_t kDel = 2;
// A checkpoint block: magic, version, generation, txnid, page size, meta length, boot id
// (40 bytes, zero padded), meta copy, then the hash of everything before it.
constexpr std::uint32_t kCheckpointMagic = 0x48445249;  // "IRDH"
constexpr std::uint32_t kCheckpointVersion = 1;
constexpr std::size_t kBootIdBytes = 40;
constexpr std::size_t kCheckpointBody = 4 + 4 + 8 + 8 + 4 + 4 + kBootIdBytes + kMetaCopyBytes;

template <class T>
void put_int(std::string& out, T v) {
  char b[sizeof v];
  std::memcpy(b, &v, sizeof v);
  out.append(b, sizeof v);
}
template <class T>
T get_int(std::string_view in, std::size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

// The head's hash seeds the body's: one hash over both, without copying them together.
std::uint64_t record_hash(std::string_view head, std::string_view body) {
  return XXH3_64bits_withSeed(body.data(), body.size(), XXH3_64bits(head.data(), head.size()));
}

std::string errno_text(int e) { return std::strerror(e); }

int pwrite_all(int fd, std::string_view bytes, std::uint64_t at) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    bytes.remove_prefix(static_cast<std::size_t>(n));
    at += static_cast<std::uint64_t>(n);
  }
  return 0;
}

std::string read_whole(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file.parent_path().parent_path(), "cannot read " + file.string());
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::mutex boot_mutex;
std::string boot_override;
std::atomic<int> appends_to_fail{0};
std::atomic<int> checkpoints_to_fail{0};

/// Takes one of the failures a test asked for, if any is left.
bool take_one(std::atomic<int>& failures) {
  for (int left = failures.load(); left > 0;) {
    if (failures.compare_exchange_weak(left, left - 1)) return true;
  }
  return false;
}

}  // namespace

void RedoBatch::put(RedoTable table, std::string_view key, std::string_view value) {
  body_.push_back(static_cast<char>(kPut));
  body_.push_back(static_cast<char>(table));
  put_int(body_, static_cast<std::uint32_t>(key.size()));
  put_int(body_, static_cast<std::uint32_t>(value.size()));
  body_.append(key);
  body_.append(value);
  ++count_;
}

void RedoBatch::del(RedoTable table, std::string_view key) {
  body_.push_back(static_cast<char>(kDel));
  body_.push_back(static_cast<char>(table));
  put_int(body_, static_cast<std::uint32_t>(key.size()));
  put_int(body_, std::uint32_t{0});
  body_.append(key);
  ++count_;
}

void RedoBatch::frame(std::uint64_t generation, std::uint64_t txnid, std::string& out) const {
  const std::size_t start = out.size();
  put_int(out, kRecordMagic);
  put_int(out, static_cast<std::uint32_t>(body_.size()));
  put_int(out, generation);
  put_int(out, txnid);
  put_int(out, count_);
  put_int(out, std::uint32_t{0});
  put_int(out, record_hash(std::string_view(out).substr(start, 32), body_));
  out.append(body_);
}

std::vector<RedoRecord> parse_redo_records(std::string_view bytes, std::uint64_t generation) {
  std::vector<RedoRecord> out;
  std::size_t at = 0;
  while (bytes.size() - at >= kRecordHead) {
    const std::string_view head = bytes.substr(at, kRecordHead);
    if (get_int<std::uint32_t>(head, 0) != kRecordMagic) break;
    const auto body_size = get_int<std::uint32_t>(head, 4);
    if (bytes.size() - at - kRecordHead < body_size) break;
    const std::string_view body = bytes.substr(at + kRecordHead, body_size);
    const bool intact = record_hash(head.substr(0, 32), body) == get_int<std::uint64_t>(head, 32);
    if (!intact || get_int<std::uint64_t>(head, 8) != generation) break;
    RedoRecord record;
    record.generation = generation;
    record.txnid = get_int<std::uint64_t>(head, 16);
    const auto count = get_int<std::uint32_t>(head, 24);
    std::size_t pos = 0;
    bool whole = true;
    for (std::uint32_t i = 0; i < count && whole; ++i) {
      if (body.size() - pos < kChangeHead) {
        whole = false;
        break;
      }
      const auto kind = static_cast<std::uint8_t>(body[pos]);
      const auto table = static_cast<std::uint8_t>(body[pos + 1]);
      const auto key_size = get_int<std::uint32_t>(body, pos + 2);
      const auto value_size = get_int<std::uint32_t>(body, pos + 6);
      pos += kChangeHead;
      if ((kind != kPut && kind != kDel) || table > 2 || (kind == kDel && value_size != 0) ||
          body.size() - pos < std::uint64_t{key_size} + value_size) {
        whole = false;
        break;
      }
      RedoChange change;
      change.put = kind == kPut;
      change.table = static_cast<RedoTable>(table);
      change.key = body.substr(pos, key_size);
      change.value = body.substr(pos + key_size, value_size);
      pos += std::size_t{key_size} + value_size;
      record.changes.push_back(change);
    }
    // A hash that matches over changes that do not add up was not written by this code.
    if (!whole || pos != body.size()) break;
    out.push_back(std::move(record));
    at += kRecordHead + body_size;
  }
  return out;
}

std::uint64_t lmdb_meta_txnid(std::string_view meta) {
  // LMDB 0.9's page header and MDB_meta (mdb.c): the meta follows the 16-byte page
  // header, with its magic first and the txnid last.
  constexpr std::size_t kPageHeader = 16;
  constexpr std::uint32_t kLmdbMagic = 0xBEEFC0DE;
  if (meta.size() < kMetaCopyBytes || get_int<std::uint32_t>(meta, kPageHeader) != kLmdbMagic) {
    return 0;
  }
  return get_int<std::uint64_t>(meta, kPageHeader + 128);
}

std::string encode_checkpoint(const RedoCheckpoint& c) {
  std::string out;
  out.reserve(kRedoHeaderBytes);
  put_int(out, kCheckpointMagic);
  put_int(out, kCheckpointVersion);
  put_int(out, c.generation);
  put_int(out, c.txnid);
  put_int(out, c.page_size);
  put_int(out, static_cast<std::uint32_t>(c.meta.size()));
  std::string boot = c.boot_id.substr(0, kBootIdBytes);
  boot.resize(kBootIdBytes, '\0');
  out.append(boot);
  std::string meta = c.meta.substr(0, kMetaCopyBytes);
  meta.resize(kMetaCopyBytes, '\0');
  out.append(meta);
  put_int(out, static_cast<std::uint64_t>(XXH3_64bits(out.data(), out.size())));
  out.resize(kRedoHeaderBytes, '\0');
  return out;
}

std::optional<RedoCheckpoint> decode_checkpoint(std::string_view block) {
  if (block.size() < kCheckpointBody + 8) return std::nullopt;
  if (get_int<std::uint32_t>(block, 0) != kCheckpointMagic ||
      get_int<std::uint32_t>(block, 4) != kCheckpointVersion ||
      XXH3_64bits(block.data(), kCheckpointBody) !=
          get_int<std::uint64_t>(block, kCheckpointBody)) {
    return std::nullopt;
  }
  RedoCheckpoint c;
  c.generation = get_int<std::uint64_t>(block, 8);
  c.txnid = get_int<std::uint64_t>(block, 16);
  c.page_size = get_int<std::uint32_t>(block, 24);
  const auto meta_size = get_int<std::uint32_t>(block, 28);
  if (meta_size > kMetaCopyBytes) return std::nullopt;
  const std::string_view boot = block.substr(32, kBootIdBytes);
  c.boot_id.assign(boot.substr(0, boot.find('\0')));
  c.meta.assign(block.substr(32 + kBootIdBytes, meta_size));
  return c;
}

std::string current_boot_id() {
  {
    std::lock_guard lock(boot_mutex);
    if (!boot_override.empty()) return boot_override;
  }
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

void set_boot_id_for_testing(std::string boot_id) {
  std::lock_guard lock(boot_mutex);
  boot_override = std::move(boot_id);
}

void fail_redo_appends_for_testing(int n) { appends_to_fail.store(n); }
void fail_checkpoints_for_testing(int n) { checkpoints_to_fail.store(n); }

int injected_checkpoint_failure() { return take_one(checkpoints_to_fail) ? EIO : 0; }

fs::path redo_dir(const fs::path& dir) { return dir / "redo"; }

std::optional<RedoContents> read_redo_log(const fs::path& dir) {
  const fs::path logs = redo_dir(dir);
  std::error_code ec;
  if (!fs::is_directory(logs, ec)) return std::nullopt;
  RedoContents contents;
  std::optional<RedoCheckpoint> newest;
  int newest_file = -1;
  for (int i = 0; i < 2; ++i) {
    const fs::path file = logs / std::to_string(i);
    contents.files.push_back(fs::exists(file, ec) ? read_whole(file) : std::string());
    auto c = decode_checkpoint(std::string_view(contents.files.back()).substr(0, kRedoHeaderBytes));
    // A checkpoint sits in its own generation's file; one that does not was not ours.
    if (c && static_cast<int>(c->generation % 2) == i &&
        (!newest || c->generation > newest->generation)) {
      newest = std::move(c);
      newest_file = i;
    }
  }
  if (!newest) return std::nullopt;
  contents.checkpoint = std::move(*newest);
  for (int step = 0; step < 2; ++step) {
    const std::string& bytes = contents.files[(newest_file + step) % 2];
    if (bytes.size() <= kRedoHeaderBytes) break;
    auto records = parse_redo_records(std::string_view(bytes).substr(kRedoHeaderBytes),
                                      contents.checkpoint.generation + step);
    for (RedoRecord& r : records) contents.records.push_back(std::move(r));
  }
  return contents;
}

void retire_redo_log(const fs::path& dir) {
  const fs::path logs = redo_dir(dir);
  const fs::path old = dir / "redo.old";
  std::error_code ec;
  fs::remove_all(old, ec);
  if (fs::exists(logs, ec)) {
    if (::rename(logs.c_str(), old.c_str()) != 0) {
      fail(dir, "cannot retire the redo log: " + errno_text(errno));
    }
    fsync_path(dir);
  }
  fs::remove_all(old, ec);
}

std::unique_ptr<RedoLog> RedoLog::create(const fs::path& dir, const RedoCheckpoint& first) {
  const fs::path fresh = dir / "redo.new";
  std::error_code ec;
  fs::remove_all(fresh, ec);
  if (!fs::create_directory(fresh, ec)) {
    fail(dir, "cannot create the redo log " + fresh.string() + ": " + ec.message());
  }
  std::unique_ptr<RedoLog> log(new RedoLog());
  for (int i = 0; i < 2; ++i) {
    const fs::path file = fresh / std::to_string(i);
    log->fds_[i] = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_DSYNC, 0600);
    if (log->fds_[i] < 0) fail(dir, "cannot create " + file.string() + ": " + errno_text(errno));
  }
  log->generation_ = first.generation;
  for (int i = 0; i < 2; ++i) {
    if (int e = log->extend(i, std::uint64_t{1} << 20)) {
      fail(dir, "cannot write the redo log: " + errno_text(e));
    }
  }
  if (int e = log->write_checkpoint(first)) {
    fail(dir, "cannot write the redo log's first checkpoint: " + errno_text(e));
  }
  fsync_path(fresh);
  if (::rename(fresh.c_str(), redo_dir(dir).c_str()) != 0) {
    fail(dir, "cannot put the redo log in place: " + errno_text(errno));
  }
  fsync_path(dir);
  return log;
}

RedoLog::~RedoLog() {
  for (int fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

// Appends overwrite blocks that were written before, so that an O_DSYNC write needs no
// metadata of its own: a write that grows the file (or fills a preallocated block) waits
// for a journal commit, which a checkpoint's flush of data.mdb can hold up for tens of
// milliseconds. So files grow ahead of the writes, in steps of zeros.
int RedoLog::extend(int file, std::uint64_t to) {
  static const std::string zeros(std::size_t{1} << 20, '\0');
  while (written_[file] < to) {
    if (int e = pwrite_all(fds_[file], zeros, written_[file])) return e;
    written_[file] += zeros.size();
  }
  return 0;
}

int RedoLog::append(std::uint64_t generation, std::string_view bytes) {
  if (generation != generation_) {
    generation_ = generation;
    offset_ = kRedoHeaderBytes;
  }
  const int file = static_cast<int>(generation % 2);
  if (take_one(appends_to_fail)) return ENOSPC;
  if (offset_ + bytes.size() > written_[file]) {
    if (int e = extend(file, offset_ + bytes.size() + kRedoFileStep)) return e;
  }
  if (int e = pwrite_all(fds_[file], bytes, offset_)) return e;
  offset_ += bytes.size();
  return 0;
}

int RedoLog::write_checkpoint(const RedoCheckpoint& checkpoint) {
  return pwrite_all(fds_[checkpoint.generation % 2], encode_checkpoint(checkpoint), 0);
}

}  // namespace idem::lmdb
