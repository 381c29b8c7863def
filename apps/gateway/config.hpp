#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>

#include "idem/clock.hpp"
#include "idem/policy.hpp"

namespace idem::gateway {

/// A host and port to listen on or connect to. `host` is a name or a literal address
/// (IPv6 without brackets).
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  /// "host:port", with brackets around IPv6 literals.
  std::string text() const;
};

/// Connection limits and timers of the HTTP layer. Reloadable on SIGHUP.
struct Timeouts {
  Duration header = std::chrono::seconds(10);  ///< from a request's first byte to its header
  Duration body = std::chrono::seconds(60);    ///< to receive a request body / write a response
  Duration upstream_connect = std::chrono::seconds(5);
  Duration upstream = std::chrono::seconds(60);  ///< upstream silence before answering 504
  Duration idle = std::chrono::seconds(75);      ///< keep-alive wait between requests
  Duration drain = std::chrono::seconds(30);     ///< SIGTERM: longest wait for in-flight work
  std::size_t max_header_bytes = 16 * 1024;
};

/// How the store named by `store` is built, besides its spec. Start-up only.
struct StoreSettings {
  std::size_t memory_max_records = 1'000'000;
  std::size_t memory_max_bytes = std::size_t{1} << 30;
  std::size_t lmdb_map_size = std::size_t{1} << 30;
  /// `durability = "power"`: an LMDB write is acknowledged once on the disk, not only in
  /// the OS page cache (`"process"`, the default).
  bool durability_power = false;
  /// Redis: what every key name starts with, so that several deployments can share one
  /// database.
  std::string redis_key_prefix = "idem:";
  /// Redis AUTH, kept out of the --store URL (and so out of `ps`); they replace the URL's.
  std::string redis_username;
  std::optional<std::string> redis_password;
  /// Redis: completed records each worker keeps for retries (0: none).
  std::size_t redis_replay_cache = 10'000;

  bool operator==(const StoreSettings&) const = default;
};

/// Everything the gateway runs with: the engine's policies and the gateway's own settings.
struct GatewayConfig {
  PolicySet policies;
  std::string secret;  ///< raw bytes; empty: generated at start (memory store)
  HostPort listen;
  HostPort upstream;  ///< from http://HOST:PORT
  HostPort admin{"127.0.0.1", 9091};
  std::string store;  ///< the --store spec; default_store_spec() when not given
  StoreSettings store_settings;
  unsigned threads = 0;  ///< 0: one per core
  std::string log_level = "info";
  Timeouts timeouts;
  std::string config_path;  ///< empty without --config
};

/// The command line, kept apart so that a reload (SIGHUP) applies the same overrides to
/// the re-read file.
struct CommandLine {
  std::optional<std::string> listen;
  std::optional<std::string> upstream;
  std::optional<std::string> admin;
  std::optional<std::string> store;
  std::optional<std::string> config;
  std::optional<unsigned> threads;
  std::optional<std::string> log_level;
};

/// A bad flag or setting: `what()` is the one line to print, naming the setting.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Parses argv. Returns the exit code when the process should stop now (--help, --version:
/// 0 after printing; a bad flag: 2 after printing one line to stderr).
std::variant<CommandLine, int> parse_command_line(int argc, char** argv);

/// Reads the TOML file named by --config (if any) and applies the flags over it.
/// Throws ConfigError. Runs at start-up and on SIGHUP, never on a request path.
GatewayConfig load_config(const CommandLine& command_line);

/// Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (all interfaces); throws ConfigError naming
/// `setting`.
HostPort parse_host_port(std::string_view text, std::string_view setting);

}  // namespace idem::gateway
