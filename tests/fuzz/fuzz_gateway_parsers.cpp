// Fuzzes the gateway's own parsers of outside text: the setting values of its command line
// and configuration file (durations, sizes, HOST:PORT, the upstream URL, the secret, the
// log level), which may only fail with ConfigError; the absolute-form request target
// (origin_form_of); Connection header tokens; and the admin API's percent-decoding.
// Properties: no undefined behaviour, and what a parser accepts reads back the same when
// written out again.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config_values.hpp"
#include "http_util.hpp"

namespace {

using namespace idem::gateway;
using namespace idem::gateway::config_detail;

template <class F>
void config_parser(F&& f) {
  try {
    f();
  } catch (const ConfigError&) {
  }
}

void check_values(std::string_view text) {
  // Bounded, so that no later arithmetic on them overflows.
  if (auto d = parse_duration_text(text);
      d && (d->count() < 0 || d->count() > 1'000'000'000'000'000)) {
    std::abort();
  }
  if (auto n = parse_size_text(text); n && *n > (std::size_t{1} << 50)) std::abort();
  config_parser([&] {
    const HostPort hp = parse_host_port(text, "listen");
    const HostPort again = parse_host_port(hp.text(), "listen");
    if (again.host != hp.host || again.port != hp.port) std::abort();
  });
  config_parser([&] {
    const HostPort hp = parse_upstream(text);
    if (hp.host.empty()) std::abort();
    const HostPort again = parse_upstream("http://" + hp.text());
    if (again.host != hp.host || again.port != hp.port) std::abort();
  });
  config_parser([&] {
    if (parse_secret(text).size() < 16) std::abort();
  });
  config_parser([&] { parse_log_level(text); });
}

void check_target(std::string_view target) {
  auto origin = origin_form_of(target);
  if (!origin) return;
  if (origin->authority.empty() || origin->target.empty() || origin->target.front() != '/') {
    std::abort();
  }
  auto again = origin_form_of("http://" + origin->authority + origin->target);
  if (!again || again->authority != origin->authority || again->target != origin->target) {
    std::abort();
  }
}

void check_connection_tokens(std::string_view value) {
  ConnectionTokens tokens;
  tokens.add(value);
  // Every token that was kept names a header that is then hop-by-hop.
  for (std::size_t begin = 0; begin < value.size();) {
    std::size_t end = value.find(',', begin);
    if (end == std::string_view::npos) end = value.size();
    std::string_view token = value.substr(begin, end - begin);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty() && tokens.contains(token) && !is_hop_by_hop(token, tokens)) std::abort();
    begin = end + 1;
  }
}

// The admin API's /keys/{key}?scope=...&path=...
void check_admin_query(std::string_view text) {
  auto decoded = percent_decoded(text);
  if (text.find('%') == std::string_view::npos && (!decoded || *decoded != text)) std::abort();
  if (decoded && decoded->size() > text.size()) std::abort();
  std::string value;
  if (query_value(text, "scope", value) == QueryValue::found && value.size() > text.size()) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_values(input);
  check_target(input);
  check_connection_tokens(input);
  check_admin_query(input);
  return 0;
}
