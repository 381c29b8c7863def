#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/record.hpp"

// Offline tools over an LMDB data directory, for idemctl. They open the environment
// themselves and throw LmdbStoreError (see lmdb_store.hpp) on a missing, corrupt or
// incompatible directory. Never call them on a directory that a store in the same process
// has open. Listing, inspecting and erasing may run while a gateway uses the directory (a
// gateway's watchers are not told about an erase); compaction may not and refuses.

namespace idem {

/// The secret kept in `dir` (see load_or_create_secret), read and checked the same way
/// but never created: a tool must not invent a secret a gateway would then adopt.
std::string lmdb_read_secret(const std::filesystem::path& dir);

/// One record as the tools see it.
struct LmdbRecordInfo {
  RecordId id;
  std::optional<Record> record;  ///< empty when the stored bytes do not decode
  std::string error;             ///< why they do not
  std::size_t size = 0;          ///< stored bytes (key and value)
  bool expired = false;          ///< past expires_at, not swept yet: invisible to requests
};

/// Every record, in id order; at most `limit` of them when it is not zero.
std::vector<LmdbRecordInfo> lmdb_list_records(const std::filesystem::path& dir, TimePoint now,
                                              std::size_t limit = 0);

/// The record named `id`, if there is one.
std::optional<LmdbRecordInfo> lmdb_inspect_record(const std::filesystem::path& dir,
                                                  const RecordId& id, TimePoint now);

/// Removes the record named `id`; true when there was one.
bool lmdb_erase_record(const std::filesystem::path& dir, const RecordId& id);

/// Removes every record; returns how many. Fencing tokens keep increasing afterwards.
std::uint64_t lmdb_erase_all(const std::filesystem::path& dir);

struct LmdbCompactReport {
  std::uint64_t bytes_before = 0;  ///< size of data.mdb before
  std::uint64_t bytes_after = 0;   ///< and after
};

/// Rewrites data.mdb without its free pages (mdb_env_copy2 with MDB_CP_COMPACT into a
/// scratch directory inside `dir`) and swaps the copy in with one rename. Refuses with
/// LmdbStoreError while any other process (a gateway, another idemctl) has the directory
/// open.
LmdbCompactReport lmdb_compact(const std::filesystem::path& dir);

}  // namespace idem
