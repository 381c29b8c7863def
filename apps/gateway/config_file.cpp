#include "config_file.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "config_values.hpp"

namespace idem::gateway::config_detail {

namespace {

// TOML readers: each names the setting it reads in its error.
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

}  // namespace

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
    config.store_settings.memory_max_records =
        static_cast<std::size_t>(r.integer(node, key, 1, std::int64_t{1} << 40));
  } else if (key == "memory_max_bytes") {
    config.store_settings.memory_max_bytes = r.size(node, key);
  } else if (key == "durability") {
    auto v = r.string(node, key);
    if (v == "process") {
      config.store_settings.durability_power = false;
    } else if (v == "power") {
      config.store_settings.durability_power = true;
    } else {
      fail(r.name(key), "expected \"process\" or \"power\"");
    }
  } else if (key == "lmdb_map_size") {
    config.store_settings.lmdb_map_size = r.size(node, key);
  } else if (key == "redis_key_prefix") {
    auto prefix = r.string(node, key);
    // A brace would move the hash tag that keeps each record in one Redis Cluster slot.
    auto bad = [](char c) {
      return c == '{' || c == '}' || static_cast<unsigned char>(c) < 0x21 || c == 0x7F;
    };
    if (prefix.size() > 256 || std::any_of(prefix.begin(), prefix.end(), bad)) {
      fail(r.name(key), "expected up to 256 printable characters, without spaces, '{' or '}'");
    }
    config.store_settings.redis_key_prefix = prefix;
  } else if (key == "redis_replay_cache") {
    config.store_settings.redis_replay_cache =
        static_cast<std::size_t>(r.integer(node, key, 0, 10'000'000));
  } else if (key == "redis_username") {
    config.store_settings.redis_username = r.string(node, key);
  } else if (key == "redis_password") {
    config.store_settings.redis_password = r.string(node, key);
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

}  // namespace idem::gateway::config_detail
