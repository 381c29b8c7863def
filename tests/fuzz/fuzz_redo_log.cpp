// The redo log's reader (durability "power"): whatever bytes a damaged disk returns for a
// log file, reading its checkpoint and records neither crashes nor reads out of bounds,
// and every record it accepts frames back to the same bytes. The input is read as a log,
// and also as the changes of a record whose hash is right (which random bytes never
// have), so that the change parser is reached too.

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "stores/lmdb/redo_log.hpp"

void check_log(std::string_view bytes);

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)idem::lmdb::decode_checkpoint(input);
  std::string forged;
  if (size >= 1) {
    // A record head with the input's first byte as the change count, then its hash.
    idem::lmdb::RedoBatch empty;
    empty.frame(1, 9, forged);
    const std::uint32_t count = data[0];
    const auto body = static_cast<std::uint32_t>(size - 1);
    std::memcpy(forged.data() + 4, &body, sizeof body);
    std::memcpy(forged.data() + 24, &count, sizeof count);
    const std::string_view rest = input.substr(1);
    const std::uint64_t hash =
        XXH3_64bits_withSeed(rest.data(), rest.size(), XXH3_64bits(forged.data(), 32));
    std::memcpy(forged.data() + 32, &hash, sizeof hash);
    forged.append(rest);
  }
  for (const std::string_view bytes : {input, std::string_view(forged)}) {
    check_log(bytes);
  }
  return 0;
}

void check_log(std::string_view bytes) {
  for (std::uint64_t generation : {0, 1, 2}) {
    std::string reframed;
    for (const auto& record : idem::lmdb::parse_redo_records(bytes, generation)) {
      idem::lmdb::RedoBatch batch;
      for (const auto& change : record.changes) {
        if (change.put) {
          batch.put(change.table, change.key, change.value);
        } else {
          batch.del(change.table, change.key);
        }
      }
      batch.frame(record.generation, record.txnid, reframed);
    }
    if (bytes.substr(0, reframed.size()) != reframed) __builtin_trap();
  }
}
