#include "stores/memory/packed_response.hpp"

#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace idem::detail {
namespace {

// Layout: status, body_stored, header count, then (length, bytes) for each header name and
// value and for the body. Fields are unaligned, hence memcpy.
struct Fixed {
  int status;
  bool body_stored;
  std::size_t header_count;
};

std::byte* put(std::byte* at, const void* from, std::size_t n) {
  std::memcpy(at, from, n);
  return at + n;
}

std::byte* put_string(std::byte* at, const std::string& s) {
  const std::size_t n = s.size();
  return put(put(at, &n, sizeof n), s.data(), n);
}

std::string_view get_string(const std::byte*& at) {
  std::size_t n = 0;
  std::memcpy(&n, at, sizeof n);
  const std::string_view s(reinterpret_cast<const char*>(at + sizeof n), n);
  at += sizeof n + n;
  return s;
}

}  // namespace

PackedResponse::PackedResponse(const StoredResponse& r) {
  std::size_t size = sizeof(Fixed) + sizeof(std::size_t) + r.body.size();
  for (const auto& [name, value] : r.headers) {
    size += 2 * sizeof(std::size_t) + name.size() + value.size();
  }
  data_ = std::make_unique_for_overwrite<std::byte[]>(size);
  const Fixed fixed{r.status, r.body_stored, r.headers.size()};
  std::byte* at = put(data_.get(), &fixed, sizeof fixed);
  for (const auto& [name, value] : r.headers) at = put_string(put_string(at, name), value);
  put_string(at, r.body);
}

void PackedResponse::unpack_into(StoredResponse& r) const {
  Fixed fixed;
  std::memcpy(&fixed, data_.get(), sizeof fixed);
  r.status = fixed.status;
  r.body_stored = fixed.body_stored;
  const std::byte* at = data_.get() + sizeof fixed;
  r.headers.reserve(fixed.header_count);
  for (std::size_t i = 0; i < fixed.header_count; ++i) {
    const std::string_view name = get_string(at);
    const std::string_view value = get_string(at);
    r.headers.emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                           std::forward_as_tuple(value));
  }
  r.body = get_string(at);
}

}  // namespace idem::detail
