// Decodes arbitrary bytes as a stored record. Stored bytes come from disk or from Redis,
// so decode_record must reject anything malformed without undefined behaviour (ASan and
// UBSan watch), and whatever it accepts must survive a re-encode unchanged.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idem/record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto first = idem::decode_record(input);
  if (!first) {
    if (first.error().code != idem::Errc::corrupt_record) std::abort();
    return 0;
  }
  const std::string encoded = idem::encode_record(*first);
  auto second = idem::decode_record(encoded);
  if (!second || !(*second == *first)) std::abort();
  // The format has one encoding per record, so accepted input is already canonical.
  if (encoded != input) std::abort();
  return 0;
}
