#include "idem/digest.hpp"

#include <algorithm>
#include <cstring>

namespace idem {

Digest::Digest(std::span<const std::uint8_t> bytes) noexcept
    : size_(static_cast<std::uint8_t>(std::min(bytes.size(), kMaxSize))) {
  std::memcpy(bytes_.data(), bytes.data(), size_);
}

std::string Digest::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size_ * 2, '\0');
  for (std::size_t i = 0; i < size_; ++i) {
    out[2 * i] = kDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kDigits[bytes_[i] & 0xf];
  }
  return out;
}

}  // namespace idem
