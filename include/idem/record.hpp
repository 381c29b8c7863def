#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/result.hpp"

namespace idem {

enum class RecordState : std::uint8_t { in_flight = 1, completed = 2 };

/// A response as stored. When the upstream's body was over `max_response_bytes`,
/// `body_stored` is false and only the status is kept: its replay is `response-not-stored`.
struct StoredResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool body_stored = true;

  friend bool operator==(const StoredResponse&, const StoredResponse&) = default;
};

/// What a store keeps per (scope, key).
struct Record {
  RecordState state = RecordState::in_flight;
  Digest fingerprint;
  std::uint64_t fencing_token = 0;
  std::string lease_owner;
  TimePoint created_at{};
  TimePoint lease_expires_at{};            ///< meaningful while in flight
  TimePoint expires_at{};                  ///< the record is gone after this
  std::optional<StoredResponse> response;  ///< set once completed

  bool lease_expired(TimePoint now) const noexcept {
    return state == RecordState::in_flight && now >= lease_expires_at;
  }
  friend bool operator==(const Record&, const Record&) = default;
};

/// The versioned binary form of a record that every persistent store shares. Layout
/// (little-endian): magic "IDR", version byte, then fields; see record_codec.cpp.
std::string encode_record(const Record& record);
/// Never undefined behaviour: malformed, truncated or unknown-version input gives
/// Errc::corrupt_record.
Result<Record> decode_record(std::string_view bytes);

}  // namespace idem
