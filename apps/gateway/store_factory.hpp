#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "idem/store.hpp"

namespace idem::gateway {

/// A store built from a `--store` spec, and whether records outlive the process (which
/// decides whether a generated HMAC secret is good enough).
struct StoreHandle {
  std::shared_ptr<Store> store;
  bool durable = false;
};

/// Builds the store named by `spec`: `memory`; `lmdb:PATH` and `redis://HOST:PORT[/DB]`
/// are recognised but not part of this build yet. Throws ConfigError naming `origin`
/// (the flag or file setting the spec came from). Start-up only.
StoreHandle make_store(std::string_view spec, std::string_view origin);

}  // namespace idem::gateway
