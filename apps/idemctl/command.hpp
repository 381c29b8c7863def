#pragma once

#include <stdexcept>
#include <string>

namespace idemctl {

/// Bad input to a subcommand (a flag, a setting of --config, an unreadable file): main()
/// prints it as one line, `idemctl: <what>`, and exits with code 2. The message names the
/// flag or setting, e.g. "--header: expected 'Name: value'".
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace idemctl
