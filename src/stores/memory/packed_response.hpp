#pragma once

#include <cstddef>
#include <memory>

#include "idem/record.hpp"

namespace idem::detail {

/// A stored response in one heap block: lengths and bytes back to back. A StoredResponse
/// holds a vector and a string per header and body (3 blocks for a small JSON answer);
/// records are freed long after they were written, when their memory is cold, so each
/// block freed then costs a cache miss.
class PackedResponse {
 public:
  PackedResponse() = default;
  explicit PackedResponse(const StoredResponse& response);

  /// Into a default-constructed response: built in place, no copies of its strings.
  void unpack_into(StoredResponse& response) const;
  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  std::unique_ptr<std::byte[]> data_;
};

}  // namespace idem::detail
