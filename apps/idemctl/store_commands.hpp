#pragma once

#include <CLI/CLI.hpp>

namespace idemctl {

/// Adds `idemctl store` with its subcommands, for the embedded durable store's data
/// directory (docs/durable-store.md):
///
///   store list    --store lmdb:PATH [--limit N]
///   store inspect --store lmdb:PATH (--id HEX | --key K [--scope S]) [--body]
///   store flush   --store lmdb:PATH (--id HEX | --key K [--scope S] | --all)
///   store compact --store lmdb:PATH
///
/// Each runs from its subcommand's callback and sets `exit_code`: 0, or 1 (after one line on
/// stderr) when the directory cannot be used or `inspect` finds no record. Bad input throws
/// UsageError naming the flag (main() prints it and exits 2).
void add_store_commands(CLI::App& app, int& exit_code);

}  // namespace idemctl
