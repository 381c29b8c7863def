// The store's Lua scripts. Each operation is one script, so it is atomic on the Redis side
// and costs one round trip. Records are the shared record codec's bytes (record_codec.cpp,
// version 1), read and patched in place with Redis's `struct` library: the scripts know the
// codec's fixed offsets, and anything else (another version, garbage) is answered with an
// IDEMCORRUPT error or handed to the client's decoder, never guessed at.
//
// Conventions, for every script:
//   KEYS[1]  the record, `<prefix>{<id hex>}`; the claim script also KEYS[2], the token
//            counter `<prefix>token` (see docs/redis-store.md on Redis Cluster).
//   ARGV[1]  now, ms since the epoch, from the calling instance's injected clock: logical
//            expiry is decided here, never by Redis's own TTL.
//   ARGV[2]  slack, ms: the Redis TTL is (expires_at - now) + slack, so Redis drops a record
//            only after every instance already treats it as gone.
// Tokens travel as 8 raw little-endian bytes and are compared as bytes: Lua numbers are
// doubles and could not compare 64-bit values exactly.
// Mutating scripts return the change in bytes and records they made, for approximate stats.

#include "stores/redis/scripts.hpp"

#include <openssl/evp.h>

namespace idem::redis {
namespace {

// hdr(v): the fields of a version 1 record that the scripts need, as five values (state,
// t, c, lease_expires_at, expires_at), or nil when v is not one. Offsets (1-based): 1
// "IDR", 4 version, 5 state, 6 fingerprint length n, 7 fingerprint, t = 7+n token(8), t+8
// owner length m (4), t+12 owner, c = t+12+m created(8), c+8 lease_expires_at(8), c+16
// expires_at(8), c+24 has_response, c+25 response. Values, not a table, and substrings
// only where a caller needs one: every operation runs this, so it builds no table.
constexpr std::string_view kPrelude = R"lua(
local now = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local function hdr(v)
  if #v < 43 or string.sub(v, 1, 4) ~= 'IDR\1' then return nil end
  local t = 7 + string.byte(v, 6)
  if #v < t + 11 then return nil end
  local c = t + 12 + struct.unpack('<I4', v, t + 8)
  if #v < c + 24 then return nil end
  local lease, exp = struct.unpack('<i8i8', v, c + 8)
  return string.byte(v, 5), t, c, lease, exp
end
local function px(exp)
  local p = exp - now + slack
  if p < 1 then p = 1 end
  return string.format('%.0f', p)
end
-- The record at KEYS[1], its offset c and expires_at when it is live and in flight under
-- token `tok`; else nil, and an error reply to return as it is when the record is corrupt.
local function held(tok)
  local v = redis.call('GET', KEYS[1])
  if not v then return nil end
  local state, t, c, lease, exp = hdr(v)
  if not state then
    return nil, redis.error_reply('IDEMCORRUPT stored record of an unknown format')
  end
  if exp <= now or state ~= 1 or string.sub(v, t, t + 7) ~= tok then return nil end
  return v, c, exp
end
)lua";

// ARGV[3] the new in-flight record with a zero token, ARGV[4] '1' to take over an expired
// lease, ARGV[5] the counter's seed, ARGV[6] the new record's token offset (1-based, as t
// above), ARGV[7] its expires_at: a fresh claim splices the token in without parsing the
// record. Returns {1, token, dbytes, drecords} when a new record was made,
// {2, token, dbytes, 0} on take-over, {0, record} otherwise.
constexpr std::string_view kClaim = R"lua(
local fresh = ARGV[3]
-- Seeded from the clock (now * 1000) so that a counter lost with Redis's data restarts
-- above every token handed out before: a live lease never sees its token again. INCR of a
-- missing counter gives 1; only then is the seed added, so the usual claim makes one call.
local function next_token()
  local tok = redis.call('INCR', KEYS[2])
  if tok == 1 then tok = redis.call('INCRBY', KEYS[2], ARGV[5]) end
  return tok
end
local old = redis.call('GET', KEYS[1])
if old then
  local state, t, c, lease, exp = hdr(old)
  if not state then return {0, old} end
  if exp > now then
    if ARGV[4] == '1' and state == 1 and now >= lease then
      local fs, ft, fc, flease, fexp = hdr(fresh)
      if not fs then error('idem: malformed new record') end
      if string.sub(old, 7, t - 1) == string.sub(fresh, 7, ft - 1) then
        local tok = next_token()
        local new = string.sub(fresh, 1, ft - 1) .. struct.pack('<i8', tok) ..
                    string.sub(fresh, ft + 8, fc - 1) .. string.sub(old, c, c + 7) ..
                    string.sub(fresh, fc + 8)
        redis.call('SET', KEYS[1], new, 'PX', px(fexp))
        return {2, tok, #new - #old, 0}
      end
    end
    return {0, old}
  end
end
local ft = tonumber(ARGV[6])
local tok = next_token()
local new = string.sub(fresh, 1, ft - 1) .. struct.pack('<i8', tok) .. string.sub(fresh, ft + 8)
redis.call('SET', KEYS[1], new, 'PX', px(tonumber(ARGV[7])))
if old then return {1, tok, #new - #old, 0} end
return {1, tok, #new, 1}
)lua";

// ARGV[3] token, ARGV[4] the encoded response (the codec's bytes after has_response),
// ARGV[5] the new expires_at, ARGV[6] the channel to publish on. Returns {ok, dbytes, 0}.
constexpr std::string_view kComplete = R"lua(
local old, c = held(ARGV[3])
if not old then return c or {0, 0, 0} end
local exp = tonumber(ARGV[5])
local new = string.sub(old, 1, 4) .. '\2' .. string.sub(old, 6, c + 15) ..
            struct.pack('<i8', exp) .. '\1' .. ARGV[4]
redis.call('SET', KEYS[1], new, 'PX', px(exp))
redis.call('PUBLISH', ARGV[6], '')
return {1, #new - #old, 0}
)lua";

// ARGV[3] token, ARGV[4] channel. Returns {ok, dbytes, drecords}.
constexpr std::string_view kRelease = R"lua(
local old, c = held(ARGV[3])
if not old then return c or {0, 0, 0} end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[4], '')
return {1, -#old, -1}
)lua";

// ARGV[3] token, ARGV[4] lease in ms. The record lives at least as long as its lease.
constexpr std::string_view kRenew = R"lua(
local old, c, exp = held(ARGV[3])
if not old then return c or {0, 0, 0} end
local lease = now + tonumber(ARGV[4])
if lease > exp then exp = lease end
local new = string.sub(old, 1, c + 7) .. struct.pack('<i8i8', lease, exp) ..
            string.sub(old, c + 24)
redis.call('SET', KEYS[1], new, 'PX', px(exp))
return {1, 0, 0}
)lua";

// Returns the record, or nil when there is none or it expired. A record this script cannot
// read is returned as it is, for the client's decoder to report.
constexpr std::string_view kGet = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return false end
local state, t, c, lease, exp = hdr(v)
if state and exp <= now then return false end
return v
)lua";

// ARGV[3] channel. Removes whatever is there; reports whether a live record was removed.
constexpr std::string_view kErase = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return {0, 0, 0} end
redis.call('DEL', KEYS[1])
local state, t, c, lease, exp = hdr(v)
if state and exp <= now then return {0, -#v, -1} end
redis.call('PUBLISH', ARGV[3], '')
return {1, -#v, -1}
)lua";

std::string sha1_hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha1(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * size);
  for (unsigned int i = 0; i < size; ++i) {
    const unsigned char b = digest[i];
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  }
  return out;
}

ScriptText make(std::string_view name, std::string_view own) {
  ScriptText s{name, std::string(kPrelude) + std::string(own), {}};
  s.sha = sha1_hex(s.body);
  return s;
}

}  // namespace

const std::array<ScriptText, static_cast<std::size_t>(Script::kCount)>& scripts() {
  static const std::array<ScriptText, static_cast<std::size_t>(Script::kCount)> all{
      make("claim", kClaim), make("complete", kComplete), make("release", kRelease),
      make("renew", kRenew), make("get", kGet),           make("erase", kErase),
  };
  return all;
}

}  // namespace idem::redis
