#include "config.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <iostream>
#include <thread>

#include "config_file.hpp"
#include "config_values.hpp"
#include "store_factory.hpp"

namespace idem::gateway {

using config_detail::FileSettings;
using config_detail::load_file;
using config_detail::parse_log_level;
using config_detail::parse_upstream;

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
