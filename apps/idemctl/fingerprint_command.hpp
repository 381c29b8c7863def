#pragma once

#include <CLI/CLI.hpp>

namespace idemctl {

/// Adds `idemctl fingerprint` (contract section 6): prints the canonical form of a request
/// and, as its last line, `fingerprint: <lowercase hex>`, so that a user can see why a retry
/// was answered 422. Sets `exit_code` when it has run; throws UsageError on bad input.
void add_fingerprint_command(CLI::App& app, int& exit_code);

}  // namespace idemctl
