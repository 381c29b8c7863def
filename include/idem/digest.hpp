#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace idem {

/// A hash of up to 32 bytes (SHA-256, HMAC-SHA-256, xxh3-128). Value type, no allocation.
class Digest {
 public:
  static constexpr std::size_t kMaxSize = 32;

  Digest() = default;
  explicit Digest(std::span<const std::uint8_t> bytes) noexcept;

  std::span<const std::uint8_t> bytes() const noexcept { return {bytes_.data(), size_}; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::string hex() const;

  friend bool operator==(const Digest&, const Digest&) = default;

 private:
  std::array<std::uint8_t, kMaxSize> bytes_{};
  std::uint8_t size_ = 0;
};

/// A record's name in a store: HMAC-SHA-256 over (scope, key), so that neither is stored
/// in clear.
using RecordId = Digest;

/// The bytes are already a cryptographic hash: any 8 of them are uniformly distributed, so
/// they are the hash as they are. Inline, since hash tables call it on every probe.
struct DigestHash {
  using is_avalanching = void;  ///< tells Boost's hash tables not to mix the bits again

  std::size_t operator()(const Digest& d) const noexcept {
    std::size_t h = 0;
    auto bytes = d.bytes();
    std::memcpy(&h, bytes.data(), bytes.size() < sizeof h ? bytes.size() : sizeof h);
    return h;
  }
};

}  // namespace idem
