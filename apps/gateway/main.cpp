// idem-gateway: parses the command line and the configuration file, then runs the server.
// Every configuration error ends here as one line on stderr and exit code 2.

#include <iostream>
#include <variant>

#include "config.hpp"
#include "server.hpp"

int main(int argc, char** argv) {
  using namespace idem::gateway;
  auto parsed = parse_command_line(argc, argv);
  if (auto* code = std::get_if<int>(&parsed)) return *code;
  const auto& command_line = std::get<CommandLine>(parsed);
  std::unique_ptr<Server> server;
  try {
    GatewayConfig config = load_config(command_line);
    server = std::make_unique<Server>(command_line, std::move(config));
  } catch (const ConfigError& e) {
    std::cerr << "idem-gateway: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    // The configuration is fine but the store cannot be opened (locked, unreachable).
    std::cerr << "idem-gateway: " << e.what() << '\n';
    return 1;
  }
  return server->run();
}
