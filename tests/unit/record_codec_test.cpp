#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "idem/record.hpp"

namespace idem {
namespace {

using namespace std::chrono_literals;

Digest digest(std::uint8_t fill, std::size_t size = 32) {
  std::array<std::uint8_t, 32> bytes{};
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(fill + i);
  return Digest(std::span<const std::uint8_t>(bytes.data(), size));
}

TimePoint at_ms(std::int64_t ms) { return TimePoint{std::chrono::milliseconds(ms)}; }

Record in_flight() {
  Record r;
  r.state = RecordState::in_flight;
  r.fingerprint = digest(7);
  r.fencing_token = 0x0123456789abcdefull;
  r.lease_owner = "gw-eu-1";
  r.created_at = at_ms(1'700'000'000'123);
  r.lease_expires_at = at_ms(1'700'000'030'123);
  r.expires_at = at_ms(1'700'086'400'123);
  return r;
}

Record completed() {
  Record r = in_flight();
  r.state = RecordState::completed;
  StoredResponse resp;
  resp.status = 201;
  resp.headers = {{"Content-Type", "application/json"}, {"Location", "/payments/42"}};
  resp.body = R"({"id":42,"amount":1000})";
  r.response = resp;
  return r;
}

void expect_round_trip(const Record& r) {
  const std::string bytes = encode_record(r);
  auto back = decode_record(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, r);
  EXPECT_EQ(encode_record(*back), bytes);  // one encoding per record
}

void expect_corrupt(std::string_view bytes, std::string_view why = "") {
  auto r = decode_record(bytes);
  ASSERT_FALSE(r.has_value()) << why;
  EXPECT_EQ(r.error().code, Errc::corrupt_record) << why;
  EXPECT_FALSE(r.error().message.empty());
}

TEST(RecordCodecTest, RoundTripsAnInFlightRecord) { expect_round_trip(in_flight()); }

TEST(RecordCodecTest, RoundTripsACompletedRecord) { expect_round_trip(completed()); }

TEST(RecordCodecTest, RoundTripsAResponseWithoutBody) {
  Record r = completed();
  r.response->body.clear();
  r.response->body_stored = false;
  r.response->status = 200;
  expect_round_trip(r);
}

TEST(RecordCodecTest, RoundTripsBinaryBodiesAndHeaders) {
  Record r = completed();
  r.response->body = std::string("\0\x01\xff\0tail\0", 9);
  r.response->headers.emplace_back(std::string("X-\0Bin", 6), std::string("\xff\0", 2));
  r.response->headers.emplace_back("", "");
  expect_round_trip(r);
}

TEST(RecordCodecTest, RoundTripsManyHeadersAndALargeBody) {
  Record r = completed();
  for (int i = 0; i < 500; ++i) {
    r.response->headers.emplace_back("X-H" + std::to_string(i), std::string(i % 40, 'v'));
  }
  r.response->body = std::string(1 << 20, 'b');
  expect_round_trip(r);
}

TEST(RecordCodecTest, RoundTripsEdgeValues) {
  Record r = completed();
  r.fingerprint = Digest{};
  r.fencing_token = ~std::uint64_t{0};
  r.lease_owner.clear();
  r.created_at = at_ms(0);
  r.lease_expires_at = at_ms(-1);  // before the epoch
  r.expires_at = at_ms(9'000'000'000'000);
  r.response->status = 999;
  expect_round_trip(r);
  r.response->status = 0;
  r.fingerprint = digest(1, 16);
  expect_round_trip(r);
}

TEST(RecordCodecTest, KeepsMillisecondsAndFloorsFinerParts) {
  Record r = in_flight();
  r.created_at += 999us;
  auto back = decode_record(encode_record(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->created_at, in_flight().created_at);
}

TEST(RecordCodecTest, LayoutStartsWithMagicAndVersion) {
  const std::string bytes = encode_record(in_flight());
  ASSERT_GE(bytes.size(), 6u);
  EXPECT_EQ(bytes.substr(0, 3), "IDR");
  EXPECT_EQ(bytes[3], 1);
  EXPECT_EQ(bytes[4], 1);   // in_flight
  EXPECT_EQ(bytes[5], 32);  // fingerprint length
}

TEST(RecordCodecTest, RejectsEveryTruncation) {
  for (const Record& r : {in_flight(), completed()}) {
    const std::string bytes = encode_record(r);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      expect_corrupt(std::string_view(bytes).substr(0, n), "truncated to " + std::to_string(n));
    }
  }
}

TEST(RecordCodecTest, RejectsTrailingBytes) {
  expect_corrupt(encode_record(in_flight()) + '\0');
  expect_corrupt(encode_record(completed()) + "x");
}

TEST(RecordCodecTest, RejectsBadMagicAndUnknownVersions) {
  std::string bytes = encode_record(completed());
  for (std::size_t i = 0; i < 3; ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x20;
    expect_corrupt(bad, "magic byte " + std::to_string(i));
  }
  for (int v : {0, 2, 255}) {
    std::string bad = bytes;
    bad[3] = static_cast<char>(v);
    expect_corrupt(bad, "version " + std::to_string(v));
  }
}

TEST(RecordCodecTest, RejectsBadStateAndFlags) {
  const std::string bytes = encode_record(completed());
  for (int s : {0, 3, 255}) {
    std::string bad = bytes;
    bad[4] = static_cast<char>(s);
    expect_corrupt(bad, "state " + std::to_string(s));
  }
  // A completed record without a response, and an in-flight one with a response.
  std::string flipped = bytes;
  flipped[4] = static_cast<char>(RecordState::in_flight);
  expect_corrupt(flipped);
  std::string no_response = encode_record(in_flight());
  no_response[4] = static_cast<char>(RecordState::completed);
  expect_corrupt(no_response);
}

// Offsets of the completed() record's fields, from the layout in record_codec.cpp.
constexpr std::size_t kTokenAt = 6 + 32;
constexpr std::size_t kOwnerAt = kTokenAt + 8;
constexpr std::size_t kTimesAt = kOwnerAt + 4 + 7;  // "gw-eu-1"
constexpr std::size_t kHasResponseAt = kTimesAt + 24;
constexpr std::size_t kStatusAt = kHasResponseAt + 1;
constexpr std::size_t kBodyStoredAt = kStatusAt + 2;
constexpr std::size_t kHeaderCountAt = kBodyStoredAt + 1;

void put_le(std::string& s, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

TEST(RecordCodecTest, RejectsOutOfRangeFields) {
  const std::string bytes = encode_record(completed());
  ASSERT_EQ(bytes[kHasResponseAt], 1);

  std::string long_fp = bytes;
  long_fp[5] = 33;
  expect_corrupt(long_fp, "fingerprint over 32 bytes");

  std::string owner = bytes;
  put_le(owner, kOwnerAt, 0xFFFFFFFF, 4);
  expect_corrupt(owner, "owner length past the end");

  for (std::uint64_t ms : {std::uint64_t{0x7FFFFFFFFFFFFFFF}, std::uint64_t{0x8000000000000000}}) {
    std::string time = bytes;
    put_le(time, kTimesAt + 8, ms, 8);
    expect_corrupt(time, "timestamp the clock cannot hold");
  }

  std::string flag = bytes;
  flag[kHasResponseAt] = 2;
  expect_corrupt(flag, "has_response 2");

  std::string status = bytes;
  put_le(status, kStatusAt, 1000, 2);
  expect_corrupt(status, "status 1000");

  std::string stored = bytes;
  stored[kBodyStoredAt] = 2;
  expect_corrupt(stored, "body_stored 2");

  for (std::uint32_t count : {0xFFFFFFFFu, 1000u, 3u}) {
    std::string headers = bytes;
    put_le(headers, kHeaderCountAt, count, 4);
    expect_corrupt(headers, "header count " + std::to_string(count));
  }
}

TEST(RecordCodecTest, RejectsGarbage) {
  expect_corrupt("");
  expect_corrupt("IDR");
  expect_corrupt(std::string(64, '\0'));
  expect_corrupt(std::string(64, '\xff'));
}

// Writes the libFuzzer seed corpus (tests/fuzz/corpus/record_codec/). Run by hand:
//   IDEM_CORPUS_DIR=tests/fuzz/corpus/record_codec idem_unit_tests
//     --gtest_also_run_disabled_tests --gtest_filter='*WriteFuzzCorpus*'
TEST(RecordCodecTest, DISABLED_WriteFuzzCorpus) {
  const char* dir = std::getenv("IDEM_CORPUS_DIR");
  ASSERT_NE(dir, nullptr) << "set IDEM_CORPUS_DIR";
  std::vector<std::pair<std::string, Record>> seeds;
  seeds.emplace_back("in_flight", in_flight());
  seeds.emplace_back("completed", completed());
  Record r = completed();
  r.response->body_stored = false;
  r.response->body.clear();
  r.response->status = 502;
  seeds.emplace_back("not_stored", r);
  r = completed();
  r.response->headers.clear();
  r.response->body.clear();
  r.response->status = 204;
  seeds.emplace_back("no_headers", r);
  r = completed();
  r.response->body = std::string("\0\x01\x02\xff", 4);
  r.response->headers.emplace_back("", std::string("\0", 1));
  seeds.emplace_back("binary", r);
  r = completed();
  for (int i = 0; i < 12; ++i) r.response->headers.emplace_back("H" + std::to_string(i), "v");
  seeds.emplace_back("many_headers", r);
  r = in_flight();
  r.fingerprint = Digest{};
  r.lease_owner.clear();
  seeds.emplace_back("empty_fields", r);
  r = in_flight();
  r.fingerprint = digest(3, 16);
  seeds.emplace_back("short_fingerprint", r);
  r = completed();
  r.created_at = at_ms(-5);
  r.fencing_token = ~std::uint64_t{0};
  r.response->status = 999;
  seeds.emplace_back("edges", r);
  r = completed();
  r.response->body = std::string(300, 'z');
  seeds.emplace_back("larger_body", r);
  for (const auto& [name, record] : seeds) {
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << encode_record(record);
  }
  // Two invalid seeds, near misses, so the fuzzer starts at the edges of the format.
  std::string truncated = encode_record(completed());
  truncated.pop_back();
  std::ofstream(std::string(dir) + "/truncated", std::ios::binary) << truncated;
  std::string version = encode_record(in_flight());
  version[3] = 2;
  std::ofstream(std::string(dir) + "/version_2", std::ios::binary) << version;
}

}  // namespace
}  // namespace idem
