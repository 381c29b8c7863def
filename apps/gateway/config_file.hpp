#pragma once

// The TOML configuration file: global settings and [[route]] rules.

#include <optional>
#include <string>

#include "config.hpp"

namespace idem::gateway::config_detail {

/// The settings of the file that flags may override; load_config() decides.
struct FileSettings {
  std::optional<std::string> listen, upstream, admin, store, log_level;
  std::optional<unsigned> threads;
};

/// Reads the file at `path` into `config` (policies, routes, timeouts, limits) and `file`.
void load_file(GatewayConfig& config, FileSettings& file, const std::string& path);

}  // namespace idem::gateway::config_detail
