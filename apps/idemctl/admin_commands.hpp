#pragma once

#include <CLI/CLI.hpp>

namespace idemctl {

/// Adds the commands that go through a running gateway's admin API (docs/configuration.md,
/// Admin API), whatever its store:
///
///   inspect --key K [--scope S] [--method M --path P] [--admin HOST:PORT] [--timeout D]
///   flush   --key K [--scope S] [--method M --path P] [--admin HOST:PORT] [--timeout D]
///
/// `inspect` prints the record as the admin API gives it (JSON: never the body or the
/// identity); `flush` erases it, so that the key's next request executes afresh. Each sets
/// `exit_code`: 0, or 1 after one line on stderr when there is no such record or the admin
/// API cannot be reached or refuses. Bad input throws UsageError naming the flag (exit 2).
void add_admin_commands(CLI::App& app, int& exit_code);

}  // namespace idemctl
