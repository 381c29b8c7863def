#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "idem/fingerprint.hpp"

namespace idem {

/// One step of a compiled `fingerprint_ignore` set: the tokens below it, and whether the
/// pointer ends here (then the member or element named by the path so far is left out).
struct JsonPointerSet::Node {
  std::string token;  ///< unescaped reference token leading to this node (empty at the root)
  bool terminal = false;
  std::vector<Node> children;  ///< sorted by token, so that lookups can bisect

  /// The child for an unescaped member name or a decimal array index, if any.
  const Node* find(std::string_view child_token) const noexcept;
};

}  // namespace idem
