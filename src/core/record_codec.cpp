// The binary form of a Record that every persistent store shares (LMDB values, Redis
// strings). Bytes written by one gateway version must be readable by the next, and bytes
// from disk or the network are untrusted, so the layout is explicit and versioned, and the
// decoder checks every length before it reads.
//
// Layout, version 1. Integers are little-endian and unsigned unless marked i64 (two's
// complement). A "string" is a u32 length followed by that many bytes.
//
//   offset  size  field
//   0       3     magic "IDR"
//   3       1     version = 1
//   4       1     state: 1 = in_flight, 2 = completed
//   5       1     fingerprint length n, 0..32
//   6       n     fingerprint bytes
//   ...     8     fencing token (u64)
//   ...     str   lease owner
//   ...     8     created_at        (i64, milliseconds since the Unix epoch)
//   ...     8     lease_expires_at  (i64, ms)
//   ...     8     expires_at        (i64, ms)
//   ...     1     has_response: 0 or 1; 1 exactly when state is completed
//   if has_response:
//   ...     2     status (u16, 0..999)
//   ...     1     body_stored: 0 or 1
//   ...     4     header count h
//   ...           h x (name string, value string), in the order received
//   ...     str   body
//   end           nothing may follow
//
// Timestamps keep millisecond precision: finer parts are floored on encoding. Any
// deviation (bad magic, unknown version, a length past the end, a flag other than 0/1, a
// header count that cannot fit in the bytes left, trailing bytes, a timestamp that the
// clock cannot represent) decodes as Errc::corrupt_record. A new field means a new version;
// the decoder keeps reading every older one.

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "idem/record.hpp"

namespace idem {
namespace {

constexpr std::string_view kMagic = "IDR";
constexpr std::uint8_t kVersion = 1;
constexpr int kMaxStatus = 999;
// Smallest encoding of one header: two empty strings.
constexpr std::size_t kMinHeaderBytes = 8;

class Writer {
 public:
  explicit Writer(std::size_t reserve) { out_.reserve(reserve); }

  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
  void raw(std::string_view bytes) { out_.append(bytes); }
  void str(std::string_view s) {
    // Records are bounded far below 4 GiB by max_response_bytes; a longer string is a
    // programming error upstream, and truncating the length would corrupt the record.
    u32(static_cast<std::uint32_t>(s.size()));
    raw(s);
  }
  std::string take() && { return std::move(out_); }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  std::string out_;
};

// Reads from untrusted bytes. Every accessor checks the remaining length first and latches
// a failure flag, so the decoder can read a whole group of fields and test once.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool ok() const noexcept { return ok_; }
  std::size_t left() const noexcept { return in_.size(); }

  std::uint64_t le(std::size_t n) {
    if (!take(n)) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      v |= std::uint64_t{static_cast<unsigned char>(last_[i])} << (8 * i);
    }
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(le(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(le(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t u64() { return le(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(le(8)); }
  std::string_view raw(std::size_t n) { return take(n) ? last_ : std::string_view{}; }
  std::string str() {
    const std::uint32_t n = u32();
    return std::string(raw(n));
  }
  void fail() noexcept { ok_ = false; }

 private:
  bool take(std::size_t n) {
    if (!ok_ || n > in_.size()) {
      ok_ = false;
      last_ = {};
      return false;
    }
    last_ = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
  std::string_view last_;
  bool ok_ = true;
};

std::int64_t to_ms(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// TimePoint counts in units finer than milliseconds, so a large count would overflow the
// multiplication: such a value cannot have come from encode_record.
bool from_ms(std::int64_t ms, TimePoint& out) {
  using Ms = std::chrono::milliseconds;
  constexpr auto kMax = std::chrono::duration_cast<Ms>(TimePoint::duration::max()).count();
  constexpr auto kMin = std::chrono::duration_cast<Ms>(TimePoint::duration::min()).count();
  if (ms > kMax || ms < kMin) return false;
  out = TimePoint{std::chrono::duration_cast<TimePoint::duration>(Ms{ms})};
  return true;
}

Error corrupt(std::string message) { return Error{Errc::corrupt_record, std::move(message)}; }

bool decode_response(Reader& r, StoredResponse& resp) {
  const std::uint16_t status = r.u16();
  const std::uint8_t body_stored = r.u8();
  const std::uint32_t count = r.u32();
  if (!r.ok() || status > kMaxStatus || body_stored > 1) return false;
  // Checked before reserving, so a forged count cannot make us allocate gigabytes.
  if (count > r.left() / kMinHeaderBytes) return false;
  resp.status = status;
  resp.body_stored = body_stored == 1;
  resp.headers.reserve(count);
  for (std::uint32_t i = 0; i < count && r.ok(); ++i) {
    std::string name = r.str();
    std::string value = r.str();
    resp.headers.emplace_back(std::move(name), std::move(value));
  }
  resp.body = r.str();
  return r.ok();
}

}  // namespace

std::string encode_record(const Record& record) {
  std::size_t size = 64 + record.fingerprint.size() + record.lease_owner.size();
  if (record.response) {
    size += 16 + record.response->body.size();
    for (const auto& [name, value] : record.response->headers)
      size += 8 + name.size() + value.size();
  }
  Writer w(size);
  w.raw(kMagic);
  w.u8(kVersion);
  w.u8(static_cast<std::uint8_t>(record.state));
  const auto fp = record.fingerprint.bytes();
  w.u8(static_cast<std::uint8_t>(fp.size()));
  w.raw(std::string_view(reinterpret_cast<const char*>(fp.data()), fp.size()));
  w.u64(record.fencing_token);
  w.str(record.lease_owner);
  w.i64(to_ms(record.created_at));
  w.i64(to_ms(record.lease_expires_at));
  w.i64(to_ms(record.expires_at));
  w.u8(record.response ? 1 : 0);
  if (record.response) {
    const StoredResponse& resp = *record.response;
    // Statuses come from an HTTP parser (100-999); clamp anything else to 0 rather than
    // write a value the decoder would reject as corrupt.
    w.u16(resp.status >= 0 && resp.status <= kMaxStatus ? static_cast<std::uint16_t>(resp.status)
                                                        : 0);
    w.u8(resp.body_stored ? 1 : 0);
    w.u32(static_cast<std::uint32_t>(resp.headers.size()));
    for (const auto& [name, value] : resp.headers) {
      w.str(name);
      w.str(value);
    }
    w.str(resp.body);
  }
  return std::move(w).take();
}

Result<Record> decode_record(std::string_view bytes) {
  Reader r(bytes);
  if (r.raw(kMagic.size()) != kMagic) return corrupt("record: bad magic");
  const std::uint8_t version = r.u8();
  if (!r.ok()) return corrupt("record: truncated header");
  if (version != kVersion) {
    return corrupt("record: unknown format version " + std::to_string(version));
  }

  Record rec;
  const std::uint8_t state = r.u8();
  if (state != static_cast<std::uint8_t>(RecordState::in_flight) &&
      state != static_cast<std::uint8_t>(RecordState::completed)) {
    return corrupt("record: bad state");
  }
  rec.state = static_cast<RecordState>(state);

  const std::uint8_t fp_size = r.u8();
  if (fp_size > Digest::kMaxSize) return corrupt("record: fingerprint too long");
  const std::string_view fp = r.raw(fp_size);
  if (!r.ok()) return corrupt("record: truncated");
  rec.fingerprint = Digest(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(fp.data()), fp.size()));

  rec.fencing_token = r.u64();
  rec.lease_owner = r.str();
  const std::int64_t created = r.i64();
  const std::int64_t lease_expires = r.i64();
  const std::int64_t expires = r.i64();
  const std::uint8_t has_response = r.u8();
  if (!r.ok()) return corrupt("record: truncated");
  if (!from_ms(created, rec.created_at) || !from_ms(lease_expires, rec.lease_expires_at) ||
      !from_ms(expires, rec.expires_at)) {
    return corrupt("record: timestamp out of range");
  }
  if (has_response > 1) return corrupt("record: bad response flag");
  if ((has_response == 1) != (rec.state == RecordState::completed)) {
    return corrupt("record: response present exactly when completed");
  }
  if (has_response == 1) {
    StoredResponse resp;
    if (!decode_response(r, resp)) return corrupt("record: malformed response");
    rec.response = std::move(resp);
  }
  if (r.left() != 0) return corrupt("record: trailing bytes");
  return rec;
}

}  // namespace idem
