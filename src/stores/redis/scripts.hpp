#pragma once

// The Lua scripts that make each store operation one atomic round trip. Their text and the
// argument conventions are in scripts.cpp; docs/redis-store.md explains the design.

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace idem::redis {

enum class Script : std::size_t { claim, complete, release, renew, get, erase, kCount };

struct ScriptText {
  std::string_view name;
  std::string body;  ///< the shared prelude followed by the script's own text
  std::string sha;   ///< SHA-1 of body in lowercase hex, as EVALSHA wants it
};

/// Every script, indexed by Script. Built once, thread-safe.
const std::array<ScriptText, static_cast<std::size_t>(Script::kCount)>& scripts();

inline const ScriptText& script(Script s) { return scripts()[static_cast<std::size_t>(s)]; }

/// Prefix of the error replies the scripts give for a stored value they cannot read.
inline constexpr std::string_view kCorruptReply = "IDEMCORRUPT";

}  // namespace idem::redis
