// Compiles `fingerprint_ignore` (RFC 6901 JSON Pointers) into a trie, so that the JSON
// canonicaliser decides per member with one lookup instead of matching every pointer.

#include "core/json_pointer.hpp"

#include <algorithm>
#include <stdexcept>

namespace idem {

namespace {

[[noreturn]] void reject(const std::string& pointer, const char* why) {
  throw std::invalid_argument("fingerprint_ignore: bad JSON Pointer \"" + pointer + "\": " + why);
}

/// Splits an RFC 6901 pointer into its unescaped reference tokens.
std::vector<std::string> parse_pointer(const std::string& pointer) {
  // The empty pointer names the whole document. Ignoring the whole body would make every
  // retry with the same key "match" whatever it carries, which hides exactly the client
  // bugs fingerprints exist to catch, so it is refused instead of honoured.
  if (pointer.empty()) reject(pointer, "the empty pointer names the whole body");
  if (pointer.front() != '/') reject(pointer, "it must start with '/'");

  std::vector<std::string> tokens;
  std::string token;
  for (std::size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    if (pointer[i] != '~') {
      token.push_back(pointer[i]);
      continue;
    }
    // RFC 6901 section 3: '~' only ever starts "~0" (a '~') or "~1" (a '/').
    char next = i + 1 < pointer.size() ? pointer[i + 1] : '\0';
    if (next == '0') {
      token.push_back('~');
    } else if (next == '1') {
      token.push_back('/');
    } else {
      reject(pointer, "'~' must be followed by '0' or '1'");
    }
    ++i;
  }
  return tokens;
}

JsonPointerSet::Node& child_of(JsonPointerSet::Node& node, const std::string& token) {
  auto it =
      std::lower_bound(node.children.begin(), node.children.end(), token,
                       [](const auto& child, const std::string& t) { return child.token < t; });
  if (it == node.children.end() || it->token != token) {
    it = node.children.insert(it, JsonPointerSet::Node{});
    it->token = token;
  }
  return *it;
}

}  // namespace

const JsonPointerSet::Node* JsonPointerSet::Node::find(
    std::string_view child_token) const noexcept {
  auto it = std::lower_bound(
      children.begin(), children.end(), child_token,
      [](const Node& child, std::string_view t) { return std::string_view(child.token) < t; });
  return it != children.end() && it->token == child_token ? &*it : nullptr;
}

JsonPointerSet::JsonPointerSet(const std::vector<std::string>& pointers) {
  if (pointers.empty()) return;
  root_ = std::make_unique<Node>();
  for (const auto& pointer : pointers) {
    Node* node = root_.get();
    for (const auto& token : parse_pointer(pointer)) node = &child_of(*node, token);
    node->terminal = true;
  }
}

JsonPointerSet::JsonPointerSet() noexcept = default;
JsonPointerSet::~JsonPointerSet() = default;

JsonPointerSet::JsonPointerSet(const JsonPointerSet& other)
    : root_(other.root_ ? std::make_unique<Node>(*other.root_) : nullptr) {}

JsonPointerSet& JsonPointerSet::operator=(const JsonPointerSet& other) {
  if (this != &other) root_ = other.root_ ? std::make_unique<Node>(*other.root_) : nullptr;
  return *this;
}

JsonPointerSet::JsonPointerSet(JsonPointerSet&&) noexcept = default;
JsonPointerSet& JsonPointerSet::operator=(JsonPointerSet&&) noexcept = default;

bool JsonPointerSet::empty() const noexcept { return root_ == nullptr; }

}  // namespace idem
