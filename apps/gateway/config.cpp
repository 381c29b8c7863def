#include "config.hpp"

#include <openssl/evp.h>
#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

#include "store_factory.hpp"

namespace idem::gateway {

namespace {

using namespace std::chrono_literals;

[[noreturn]] void fail(std::string_view setting, std::string_view problem) {
  throw ConfigError(std::string(setting) + ": " + std::string(problem));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// ---- value parsers shared by the file and the flags ----

/// "300ms", "30s", "5m", "2h", "1d", "1.5s" or a bare number of seconds.
std::optional<Duration> parse_duration_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return std::nullopt;
  double number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i) return std::nullopt;
  std::string_view unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m" || unit == "min") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else if (unit == "d") {
    ms_per_unit = 86'400'000;
  } else {
    return std::nullopt;
  }
  double ms = number * ms_per_unit;
  if (!std::isfinite(ms) || ms > 1e15) return std::nullopt;
  return Duration(static_cast<Duration::rep>(std::llround(ms)));
}

/// "10MiB", "512KiB", "4MB", "1000" (bytes).
std::optional<std::size_t> parse_size_text(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return std::nullopt;
  std::uint64_t number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc()) return std::nullopt;
  std::string unit = lower(text.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "kib") {
    mult = 1ull << 10;
  } else if (unit == "kb") {
    mult = 1000;
  } else if (unit == "m" || unit == "mib") {
    mult = 1ull << 20;
  } else if (unit == "mb") {
    mult = 1'000'000;
  } else if (unit == "g" || unit == "gib") {
    mult = 1ull << 30;
  } else if (unit == "gb") {
    mult = 1'000'000'000;
  } else {
    return std::nullopt;
  }
  if (number > (std::uint64_t{1} << 50) / mult) return std::nullopt;
  return static_cast<std::size_t>(number * mult);
}

std::optional<std::string> decode_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(s.size() / 2);
  for (std::size_t i = 0; i < s.size(); i += 2) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, value, 16);
    if (ec != std::errc() || p != s.data() + i + 2) return std::nullopt;
    out.push_back(static_cast<char>(value));
  }
  return out;
}

std::optional<std::string> decode_base64(std::string_view s) {
  std::string in(s);
  // Accept the URL-safe alphabet and missing padding too.
  for (char& c : in) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (in.size() % 4 != 0) in.push_back('=');
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it) ++pad;
  out.resize(static_cast<std::size_t>(n) - std::min<std::size_t>(pad, 2));
  return out;
}

/// Hex when the text is only hex digits of even length, base64 otherwise.
std::string parse_secret(std::string_view text) {
  bool all_hex = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c));
  });
  std::optional<std::string> raw = all_hex ? decode_hex(text) : decode_base64(text);
  if (!raw) fail("secret", "expected hex or base64");
  if (raw->size() < 16) fail("secret", "must be at least 16 bytes once decoded");
  return *raw;
}

HostPort parse_upstream(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (text.size() < kScheme.size() || lower(text.substr(0, kScheme.size())) != kScheme) {
    if (lower(text).starts_with("https://")) {
      fail("upstream", "https upstreams are not supported; expected http://HOST:PORT");
    }
    fail("upstream", "expected http://HOST:PORT");
  }
  std::string_view rest = text.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    fail("upstream", "expected http://HOST:PORT without a path");
  }
  if (rest.empty()) fail("upstream", "expected http://HOST:PORT");
  // The port is optional in a URL: 80 by default.
  bool has_port = rest.front() == '[' ? rest.find("]:") != std::string_view::npos
                                      : rest.find(':') != std::string_view::npos;
  if (!has_port) return parse_host_port(std::string(rest) + ":80", "upstream");
  HostPort hp = parse_host_port(rest, "upstream");
  if (hp.host.empty()) fail("upstream", "expected http://HOST:PORT");
  return hp;
}

const std::set<std::string, std::less<>> kLogLevels = {"trace", "debug",    "info", "warn",
                                                       "error", "critical", "off"};

std::string parse_log_level(std::string_view text) {
  std::string level = lower(text);
  if (level == "warning") level = "warn";
  if (!kLogLevels.contains(level)) {
    fail("log_level", "expected one of trace, debug, info, warn, error, critical, off");
  }
  return level;
}

// ---- TOML readers: each names the setting it reads in its error ----

class Reader {
 public:
  explicit Reader(std::string prefix) : prefix_(std::move(prefix)) {}

  std::string name(std::string_view key) const { return prefix_ + std::string(key); }

  std::string string(const toml::node& node, std::string_view key) const {
    if (auto s = node.as_string()) return s->get();
    fail(name(key), "expected a string");
  }

  bool boolean(const toml::node& node, std::string_view key) const {
    if (auto b = node.as_boolean()) return b->get();
    fail(name(key), "expected true or false");
  }

  std::int64_t integer(const toml::node& node, std::string_view key, std::int64_t min,
                       std::int64_t max) const {
    auto i = node.as_integer();
    if (!i || i->get() < min || i->get() > max) {
      fail(name(key),
           "expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    return i->get();
  }

  std::vector<std::string> strings(const toml::node& node, std::string_view key) const {
    auto arr = node.as_array();
    if (!arr) fail(name(key), "expected an array of strings");
    std::vector<std::string> out;
    for (const auto& element : *arr) {
      auto s = element.as_string();
      if (!s) fail(name(key), "expected an array of strings");
      out.push_back(s->get());
    }
    return out;
  }

  std::vector<std::string> header_names(const toml::node& node, std::string_view key) const {
    auto out = strings(node, key);
    for (const auto& h : out) {
      if (!is_token(h)) fail(name(key), "'" + h + "' is not a header name");
    }
    return out;
  }

  std::string header_name(const toml::node& node, std::string_view key) const {
    auto h = string(node, key);
    if (!is_token(h)) fail(name(key), "'" + h + "' is not a header name");
    return h;
  }

  Duration duration(const toml::node& node, std::string_view key, bool allow_zero = false) const {
    std::optional<Duration> d;
    if (auto i = node.as_integer()) {
      if (i->get() >= 0 && i->get() < (std::int64_t{1} << 40)) d = std::chrono::seconds(i->get());
    } else if (auto f = node.as_floating_point()) {
      if (f->get() >= 0 && f->get() < 1e12) d = Duration(std::llround(f->get() * 1000));
    } else if (auto s = node.as_string()) {
      d = parse_duration_text(s->get());
    }
    if (!d || (!allow_zero && d->count() <= 0)) {
      fail(name(key), allow_zero ? "expected a duration such as 30s, 300ms or 5m"
                                 : "expected a positive duration such as 30s, 300ms or 5m");
    }
    return *d;
  }

  std::size_t size(const toml::node& node, std::string_view key) const {
    std::optional<std::size_t> n;
    if (auto i = node.as_integer()) {
      if (i->get() > 0) n = static_cast<std::size_t>(i->get());
    } else if (auto s = node.as_string()) {
      n = parse_size_text(s->get());
    }
    if (!n || *n == 0) fail(name(key), "expected a positive size such as 1048576 or \"10MiB\"");
    return *n;
  }

  std::vector<std::string> methods(const toml::node& node, std::string_view key) const {
    std::vector<std::string> out;
    if (node.is_string()) {
      out.push_back(string(node, key));
    } else {
      out = strings(node, key);
    }
    for (auto& m : out) {
      if (!is_token(m)) fail(name(key), "'" + m + "' is not an HTTP method");
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
  }

 private:
  std::string prefix_;
};

/// Runs a parser from the core (which throws std::invalid_argument) and names the setting.
template <class F>
auto named(const std::string& setting, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    fail(setting, e.what());
  }
}

/// Applies one per-route setting to `policy`; false when `key` is not a policy setting.
bool apply_policy_setting(Policy& policy, std::string_view key, const toml::node& node,
                          const Reader& r) {
  if (key == "enabled") {
    policy.enabled = r.boolean(node, key);
  } else if (key == "methods") {
    policy.methods = r.methods(node, key);
  } else if (key == "header") {
    policy.header = r.header_name(node, key);
  } else if (key == "replay_header") {
    policy.replay_header = r.header_name(node, key);
  } else if (key == "require_key") {
    policy.require_key = r.boolean(node, key);
  } else if (key == "key_format") {
    auto text = r.string(node, key);
    policy.key_format = named(r.name(key), [&] { return KeyFormat::parse(text); });
  } else if (key == "scope") {
    auto text = r.string(node, key);
    policy.scope = named(r.name(key), [&] { return ScopeRule::parse(text); });
  } else if (key == "identity_headers") {
    policy.identity_headers = r.header_names(node, key);
  } else if (key == "ttl") {
    policy.ttl = r.duration(node, key);
  } else if (key == "lease") {
    policy.lease = r.duration(node, key);
  } else if (key == "concurrency") {
    auto v = r.string(node, key);
    if (v == "reject") {
      policy.concurrency = Concurrency::reject;
    } else if (v == "wait") {
      policy.concurrency = Concurrency::wait;
    } else {
      fail(r.name(key), "expected \"reject\" or \"wait\"");
    }
  } else if (key == "wait_timeout") {
    policy.wait_timeout = r.duration(node, key);
  } else if (key == "on_duplicate") {
    auto v = r.string(node, key);
    if (v == "replay") {
      policy.on_duplicate = OnDuplicate::replay;
    } else if (v == "reject") {
      policy.on_duplicate = OnDuplicate::reject;
    } else {
      fail(r.name(key), "expected \"replay\" or \"reject\"");
    }
  } else if (key == "on_expired_lease") {
    auto v = r.string(node, key);
    if (v == "retry") {
      policy.on_expired_lease = OnExpiredLease::retry;
    } else if (v == "fail") {
      policy.on_expired_lease = OnExpiredLease::fail;
    } else {
      fail(r.name(key), "expected \"retry\" or \"fail\"");
    }
  } else if (key == "max_request_bytes") {
    policy.max_request_bytes = r.size(node, key);
  } else if (key == "max_response_bytes") {
    policy.max_response_bytes = r.size(node, key);
  } else if (key == "store_status") {
    std::string text;
    if (node.is_array()) {
      for (const auto& element : *node.as_array()) {
        if (!text.empty()) text += ',';
        if (auto i = element.as_integer()) {
          text += std::to_string(i->get());
        } else if (auto s = element.as_string()) {
          text += s->get();
        } else {
          fail(r.name(key), "expected a string such as \"200-499,!408\" or an array");
        }
      }
    } else {
      text = r.string(node, key);
    }
    policy.store_status = named(r.name(key), [&] { return StatusSet::parse(text); });
  } else if (key == "replay_exclude_headers") {
    policy.replay_exclude_headers = r.header_names(node, key);
  } else if (key == "fingerprint_ignore") {
    auto pointers = r.strings(node, key);
    // Compile once here so that a bad pointer names this setting, not Engine::create.
    named(r.name(key), [&] { return JsonPointerSet(pointers); });
    policy.fingerprint.ignore = std::move(pointers);
  } else if (key == "fingerprint_headers") {
    policy.fingerprint.headers = r.header_names(node, key);
  } else if (key == "fingerprint_algorithm") {
    auto v = lower(r.string(node, key));
    if (v == "sha256" || v == "sha-256") {
      policy.fingerprint.algorithm = FingerprintAlgorithm::sha256;
    } else if (v == "xxh3_128" || v == "xxh3-128" || v == "xxh3") {
      policy.fingerprint.algorithm = FingerprintAlgorithm::xxh3_128;
    } else {
      fail(r.name(key), "expected \"sha256\" or \"xxh3_128\"");
    }
  } else if (key == "fail_open") {
    policy.fail_open = r.boolean(node, key);
  } else if (key == "problem_type_base") {
    policy.problem_type_base = r.string(node, key);
  } else {
    return false;
  }
  return true;
}

struct FileSettings {
  std::optional<std::string> listen, upstream, admin, store, log_level;
  std::optional<unsigned> threads;
};

void apply_gateway_setting(GatewayConfig& config, FileSettings& file, std::string_view key,
                           const toml::node& node, const Reader& r) {
  auto& t = config.timeouts;
  if (key == "listen") {
    file.listen = r.string(node, key);
  } else if (key == "upstream") {
    file.upstream = r.string(node, key);
  } else if (key == "admin") {
    file.admin = r.string(node, key);
  } else if (key == "store") {
    file.store = r.string(node, key);
  } else if (key == "log_level") {
    file.log_level = r.string(node, key);
  } else if (key == "threads") {
    file.threads = static_cast<unsigned>(r.integer(node, key, 0, 1024));
  } else if (key == "secret") {
    config.secret = parse_secret(r.string(node, key));
  } else if (key == "trusted_proxies") {
    auto cidrs = r.strings(node, key);
    config.policies.trusted_proxies = named(r.name(key), [&] { return TrustedProxies(cidrs); });
  } else if (key == "header_timeout") {
    t.header = r.duration(node, key);
  } else if (key == "body_timeout") {
    t.body = r.duration(node, key);
  } else if (key == "upstream_connect_timeout") {
    t.upstream_connect = r.duration(node, key);
  } else if (key == "upstream_timeout") {
    t.upstream = r.duration(node, key);
  } else if (key == "idle_timeout") {
    t.idle = r.duration(node, key);
  } else if (key == "drain_timeout") {
    t.drain = r.duration(node, key, /*allow_zero=*/true);
  } else if (key == "memory_max_records") {
    config.store_limits.memory_max_records =
        static_cast<std::size_t>(r.integer(node, key, 1, std::int64_t{1} << 40));
  } else if (key == "memory_max_bytes") {
    config.store_limits.memory_max_bytes = r.size(node, key);
  } else if (key == "durability") {
    auto v = r.string(node, key);
    if (v == "process") {
      config.store_limits.durability_power = false;
    } else if (v == "power") {
      config.store_limits.durability_power = true;
    } else {
      fail(r.name(key), "expected \"process\" or \"power\"");
    }
  } else if (key == "lmdb_map_size") {
    config.store_limits.lmdb_map_size = r.size(node, key);
  } else if (key == "max_header_bytes") {
    t.max_header_bytes = r.size(node, key);
    if (t.max_header_bytes < 1024) fail(r.name(key), "must be at least 1024");
  } else {
    fail(r.name(key), "unknown setting");
  }
}

void parse_route(GatewayConfig& config, const toml::node& node, std::size_t index) {
  std::string prefix = "route[" + std::to_string(index) + "].";
  Reader r(prefix);
  auto table = node.as_table();
  if (!table) fail("route", "expected [[route]] tables");
  Route route;
  route.policy = config.policies.defaults;
  bool has_path = false;
  for (const auto& [k, v] : *table) {
    std::string_view key = k.str();
    if (key == "path") {
      auto text = r.string(v, key);
      route.path = named(r.name(key), [&] { return PathPattern(text); });
      has_path = true;
    } else if (key == "methods") {
      // A route's methods both select the requests it applies to and are the methods it
      // covers: a route for PUT that did not cover PUT would mean nothing.
      route.methods = r.methods(v, key);
      route.policy.methods = route.methods;
    } else if (!apply_policy_setting(route.policy, key, v, r)) {
      fail(r.name(key), "unknown setting (or not a per-route one)");
    }
  }
  if (!has_path) fail(prefix + "path", "required");
  config.policies.routes.push_back(std::move(route));
}

void load_file(GatewayConfig& config, FileSettings& file, const std::string& path) {
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
  } else {
    throw ConfigError(std::string("cannot read the file: ") + std::strerror(errno));
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::string where = "line " + std::to_string(e.source().begin.line);
    throw ConfigError(where + ": " + std::string(e.description()));
  }
  Reader r("");
  // Global settings first, so that every route starts from the final defaults whatever
  // the order of the file.
  for (const auto& [k, v] : root) {
    std::string_view key = k.str();
    if (key == "route") continue;
    if (!apply_policy_setting(config.policies.defaults, key, v, r)) {
      apply_gateway_setting(config, file, key, v, r);
    }
  }
  if (auto routes = root.get("route")) {
    auto arr = routes->as_array();
    if (!arr) fail("route", "expected [[route]] tables");
    for (std::size_t i = 0; i < arr->size(); ++i) parse_route(config, *arr->get(i), i);
  }
}

}  // namespace

std::string HostPort::text() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

HostPort parse_host_port(std::string_view text, std::string_view setting) {
  HostPort hp;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      fail(setting, "expected HOST:PORT or [IPV6]:PORT");
    }
    hp.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) fail(setting, "expected HOST:PORT");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) {
      fail(setting, "IPv6 addresses need brackets: [::1]:PORT");
    }
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() ||
      port > 65535) {
    fail(setting, "expected a port from 0 to 65535");
  }
  hp.port = static_cast<std::uint16_t>(port);
  return hp;
}

std::variant<CommandLine, int> parse_command_line(int argc, char** argv) {
  CommandLine cl;
  CLI::App app{
      "idem-gateway: an exactly-once (Idempotency-Key) reverse proxy for HTTP APIs.\n"
      "Requests with an Idempotency-Key run once; retries get the stored response.",
      "idem-gateway"};
  app.set_version_flag("--version", std::string("idem-gateway 0.1.0"));
  app.get_formatter()->column_width(22);
  std::string listen, upstream, admin, store, config, log_level, threads;
  auto* o_listen = app.add_option("--listen", listen, "Public address, e.g. 127.0.0.1:8081")
                       ->type_name("HOST:PORT");
  auto* o_upstream = app.add_option("--upstream", upstream, "The API to protect: http://HOST:PORT")
                         ->type_name("URL");
  auto* o_admin = app.add_option("--admin", admin,
                                 "Admin API: /healthz /readyz /metrics /keys [127.0.0.1:9091]")
                      ->type_name("HOST:PORT");
  auto* o_store =
      app.add_option("--store", store,
                     "memory, lmdb:PATH or redis://HOST:PORT[/DB] [" + default_store_spec() + "]")
          ->type_name("SPEC");
  auto* o_config =
      app.add_option("--config", config, "TOML settings; flags override them")->type_name("FILE");
  auto* o_threads =
      app.add_option("--threads", threads, "Event loops, 1-1024 [one per core]")->type_name("N");
  auto* o_log =
      app.add_option("--log-level", log_level, "trace debug info warn error critical off [info]")
          ->type_name("LEVEL");
  app.footer(
      "Settings: docs/configuration.md. Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP\n"
      "reloads the configuration file's routes, policies and timeouts.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << "idem-gateway 0.1.0\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    std::cerr << "idem-gateway: " << what << " (see --help)\n";
    return 2;
  }
  if (*o_listen) cl.listen = listen;
  if (*o_upstream) cl.upstream = upstream;
  if (*o_admin) cl.admin = admin;
  if (*o_store) cl.store = store;
  if (*o_config) cl.config = config;
  if (*o_threads) {
    unsigned n = 0;
    auto [p, ec] = std::from_chars(threads.data(), threads.data() + threads.size(), n);
    if (ec != std::errc() || p != threads.data() + threads.size() || n < 1 || n > 1024) {
      std::cerr << "idem-gateway: --threads: expected an integer from 1 to 1024\n";
      return 2;
    }
    cl.threads = n;
  }
  if (*o_log) cl.log_level = log_level;
  return cl;
}

GatewayConfig load_config(const CommandLine& cl) {
  GatewayConfig config;
  FileSettings file;
  if (cl.config) {
    config.config_path = *cl.config;
    try {
      load_file(config, file, *cl.config);
    } catch (const ConfigError& e) {
      throw ConfigError("config " + *cl.config + ": " + e.what());
    }
  }
  // The flags, then the file, then the defaults. Errors name the flag when it was one.
  auto pick = [](const std::optional<std::string>& flag, const std::optional<std::string>& in_file,
                 std::string_view flag_name, std::string_view setting,
                 const std::string& path) -> std::optional<std::pair<std::string, std::string>> {
    if (flag) return std::pair{*flag, std::string(flag_name)};
    if (in_file) return std::pair{*in_file, "config " + path + ": " + std::string(setting)};
    return std::nullopt;
  };
  auto wrap = [](const std::string& origin, auto&& f) {
    try {
      return f();
    } catch (const ConfigError& e) {
      // Replace the bare setting name with the flag or file it came from.
      std::string msg = e.what();
      auto colon = msg.find(": ");
      throw ConfigError(origin + msg.substr(colon == std::string::npos ? msg.size() : colon));
    }
  };
  const std::string& path = config.config_path;
  if (auto v = pick(cl.listen, file.listen, "--listen", "listen", path)) {
    config.listen = wrap(v->second, [&] { return parse_host_port(v->first, "listen"); });
  } else {
    throw ConfigError("--listen: required (HOST:PORT), as a flag or `listen` in the config file");
  }
  if (auto v = pick(cl.upstream, file.upstream, "--upstream", "upstream", path)) {
    config.upstream = wrap(v->second, [&] { return parse_upstream(v->first); });
  } else {
    throw ConfigError(
        "--upstream: required (http://HOST:PORT), as a flag or `upstream` in the config file");
  }
  if (auto v = pick(cl.admin, file.admin, "--admin", "admin", path)) {
    config.admin = wrap(v->second, [&] { return parse_host_port(v->first, "admin"); });
  }
  if (auto v = pick(cl.store, file.store, "--store", "store", path)) {
    if (v->first.empty()) throw ConfigError(v->second + ": expected a store spec");
    config.store = v->first;
  } else {
    config.store = default_store_spec();
  }
  if (auto v = pick(cl.log_level, file.log_level, "--log-level", "log_level", path)) {
    config.log_level = wrap(v->second, [&] { return parse_log_level(v->first); });
  }
  config.threads = cl.threads ? *cl.threads : file.threads.value_or(0);
  if (config.threads == 0) config.threads = std::max(1u, std::thread::hardware_concurrency());
  if (config.listen.port != 0 && config.listen.port == config.admin.port &&
      config.listen.host == config.admin.host) {
    throw ConfigError("--admin: must differ from --listen (the admin API is never public)");
  }
  return config;
}

}  // namespace idem::gateway
