// Canonicalises arbitrary bytes as a form body or query string, and fingerprints them as a
// request. Properties: no undefined behaviour; the canonical text is a fixed point; it
// keeps every non-empty parameter byte for byte (only the order changes); and it does not
// depend on the order in which the parameters came.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "idem/fingerprint.hpp"

namespace {

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  for (std::size_t begin = 0; begin <= s.size();) {
    std::size_t end = std::min(s.find('&', begin), s.size());
    if (end > begin) parts.push_back(s.substr(begin, end - begin));
    begin = end + 1;
  }
  return parts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string canonical = idem::canonicalize_form(input);
  if (idem::canonicalize_form(canonical) != canonical) std::abort();

  std::vector<std::string_view> in = split(input), out = split(canonical);
  std::vector<std::string_view> in_sorted = in, out_sorted = out;
  std::sort(in_sorted.begin(), in_sorted.end());
  std::sort(out_sorted.begin(), out_sorted.end());
  if (in_sorted != out_sorted) std::abort();

  std::string reversed;
  for (auto it = in.rbegin(); it != in.rend(); ++it) {
    if (!reversed.empty()) reversed.push_back('&');
    reversed.append(*it);
  }
  if (idem::canonicalize_form(reversed) != canonical) std::abort();

  // The same bytes as a query string and as a form body of a request.
  static const idem::Fingerprinter fingerprinter;
  const std::string target = "/p?" + std::string(input);
  const std::string target_reversed = "/p?" + reversed;
  const idem::HeaderField headers[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
  idem::RequestView a{"POST", target, headers, input, ""};
  idem::RequestView b{"POST", target_reversed, headers, reversed, ""};
  if (fingerprinter.fingerprint(a) != fingerprinter.fingerprint(b)) std::abort();
  (void)idem::is_json_media_type(input);
  (void)idem::is_form_media_type(input);
  return 0;
}
