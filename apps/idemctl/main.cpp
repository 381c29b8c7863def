// idemctl: the operator's tool for idem. Each subcommand lives in its own file and adds
// itself to the CLI11 application here; bad input of any kind is one line and exit code 2.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "admin_commands.hpp"
#include "command.hpp"
#include "fingerprint_command.hpp"
#include "store_commands.hpp"

namespace {

int fail(std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::fprintf(stderr, "idemctl: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("idemctl: inspect what idem does with requests", "idemctl");
  app.require_subcommand(1);
  int exit_code = 0;
  idemctl::add_fingerprint_command(app, exit_code);
  idemctl::add_admin_commands(app, exit_code);
  idemctl::add_store_commands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 checks required flags before unexpected ones; the unexpected one is the better
    // clue ("--bodyfile" rather than "--body-file" said "--path is required" otherwise).
    if (auto extra = app.remaining(true); !extra.empty()) {
      return fail("unexpected argument: " + extra.front());
    }
    return fail(e.what());  // one line, not CLI11's usage screen
  } catch (const idemctl::UsageError& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return exit_code;
}
