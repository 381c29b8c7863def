#pragma once

#include <memory>

#include "config.hpp"

namespace idem::gateway {

/// The whole gateway: store, engines, worker threads, admin listener, signals.
class Server {
 public:
  /// Builds everything that a bad configuration can break (store, engines, upstream
  /// address). Throws ConfigError with the one line to print (exit 2), or
  /// std::runtime_error when a store cannot be opened (exit 1).
  Server(CommandLine command_line, GatewayConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds the listeners, serves until SIGTERM/SIGINT and a drain, and returns the exit
  /// code. A listener that cannot bind: one line on stderr, exit 1.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace idem::gateway
