// Fuzzes the parsers of request-side rules: key header values (every key_format), the
// X-Forwarded-For walk of `ip` scope, and the start-up parsers of `store_status`, route
// path patterns and `trusted_proxies`, which may only fail with std::invalid_argument.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "idem/key.hpp"
#include "idem/policy.hpp"
#include "idem/scope.hpp"
#include "idem/status_set.hpp"

namespace {

const idem::KeyFormat& format(std::uint8_t selector) {
  static const idem::KeyFormat kFormats[] = {idem::KeyFormat{}, idem::KeyFormat::parse("uuid"),
                                             idem::KeyFormat::parse("ulid"),
                                             idem::KeyFormat::parse("^[a-z0-9_-]{1,64}$")};
  return kFormats[selector % 4];
}

void check_key(std::string_view input, const idem::KeyFormat& f) {
  auto result = idem::parse_key(input, f);
  if (auto* key = std::get_if<std::string>(&result)) {
    if (key->empty() || key->size() > 255) __builtin_trap();
    for (char c : *key) {
      if (c < 0x21 || c > 0x7e) __builtin_trap();
    }
    // A valid key re-quoted as a Structured Field string names the same key.
    std::string quoted = "\"";
    for (char c : *key) {
      if (c == '"' || c == '\\') quoted.push_back('\\');
      quoted.push_back(c);
    }
    quoted.push_back('"');
    auto again = idem::parse_key(quoted, f);
    if (!std::holds_alternative<std::string>(again) || std::get<std::string>(again) != *key) {
      __builtin_trap();
    }
  }
}

template <class F>
void start_up_parser(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_key(input, format(data[0]));

  std::vector<idem::HeaderField> headers{{"X-Forwarded-For", input}};
  idem::RequestView request{"POST", "/", headers, {}, "10.0.0.1"};
  static const idem::TrustedProxies kTrusted({"10.0.0.0/8", "::1/128"});
  std::string client = idem::client_address(request, kTrusted);
  if (client.size() > input.size() + 8) __builtin_trap();

  start_up_parser([&] { idem::StatusSet::parse(input); });
  start_up_parser([&] {
    idem::PathPattern pattern{std::string(input)};
    (void)pattern.matches(input);
    (void)pattern.matches("/a/b");
  });
  start_up_parser([&] { idem::TrustedProxies({std::string(input)}); });
  return 0;
}
