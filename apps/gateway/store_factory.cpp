#include "store_factory.hpp"

#include "config.hpp"
#include "idem/memory_store.hpp"

namespace idem::gateway {

StoreHandle make_store(std::string_view spec, std::string_view origin) {
  auto error = [&](std::string_view what) {
    return ConfigError(std::string(origin) + ": " + std::string(what));
  };
  if (spec == "memory") return StoreHandle{make_memory_store(), false};
  if (spec.starts_with("lmdb:")) {
    if (spec.size() == 5) throw error("expected lmdb:PATH");
    throw error("the lmdb store is not available in this build (use --store memory)");
  }
  if (spec.starts_with("redis://")) {
    throw error("the redis store is not available in this build (use --store memory)");
  }
  throw error("unknown store '" + std::string(spec) +
              "'; expected memory, lmdb:PATH or redis://HOST:PORT[/DB]");
}

}  // namespace idem::gateway
