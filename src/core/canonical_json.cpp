// RFC 8785 (JCS) canonical JSON on top of simdjson's On-Demand API.
//
// One pass over the document builds a small tree: every scalar is rendered canonically
// into one text buffer as it is met, and every container becomes a list of children,
// sorted (objects) and checked for duplicate names when the container closes. A second
// pass writes the tree out. Each byte is thus copied a bounded number of times whatever
// the nesting, and all buffers are per thread and reused, so a request costs no
// allocation beyond the result.

#include "core/canonical_json.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/json_pointer.hpp"

namespace idem {

namespace detail {

namespace {

namespace od = simdjson::ondemand;
using PointerNode = JsonPointerSet::Node;

/// Deeper documents are fingerprinted raw: real request bodies nest a few levels, and the
/// bound keeps the recursion well inside any thread's stack (sanitizer builds included).
constexpr int kMaxDepth = 256;
/// Buffers grown past this for one large body are not kept for the next request.
constexpr std::size_t kKeepCapacity = 1u << 20;

constexpr bool is_json_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && is_json_space(s.back())) s.remove_suffix(1);
  return s;
}

class Canonicalizer {
 public:
  bool run(std::string_view json, const PointerNode* ignore, std::string& out) {
    text_.clear();
    nodes_.clear();
    open_.clear();
    closed_.clear();
    // simdjson reads up to SIMDJSON_PADDING bytes past the end of its input.
    buffer_.resize(json.size() + simdjson::SIMDJSON_PADDING);
    std::copy(json.begin(), json.end(), buffer_.begin());
    end_ = buffer_.data() + json.size();

    od::document doc;
    if (parser_.iterate(buffer_.data(), json.size(), buffer_.size()).get(doc)) return false;
    bool scalar = false;
    if (doc.is_scalar().get(scalar)) return false;
    std::uint32_t root = 0;
    if (scalar) {
      if (!parse_root_scalar(doc, root)) return false;
    } else {
      od::value value;
      if (doc.get_value().get(value) || !parse(value, ignore, 0, root)) return false;
      if (!at_end(doc)) return false;
    }
    out.clear();
    out.reserve(text_.size() + json.size() / 2);
    emit(root, out);
    return true;
  }

 private:
  enum class Kind : std::uint8_t { scalar, object, array };
  /// A value of the document. Scalars are a range of text_, containers one of closed_.
  struct Node {
    Kind kind;
    std::uint32_t begin;
    std::uint32_t size;
  };
  /// A member (with its name) or an element (name empty) of a container.
  struct Child {
    std::string_view name;  // unescaped, in the parser's string buffer
    std::uint32_t node;
    bool ignored;
  };

  std::uint32_t add_scalar(std::size_t begin) {
    nodes_.push_back({Kind::scalar, static_cast<std::uint32_t>(begin),
                      static_cast<std::uint32_t>(text_.size() - begin)});
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  /// Whether the whole input was consumed: anything after the root value is an error.
  static bool at_end(od::document& doc) {
    const char* location = nullptr;
    return doc.current_location().get(location) == simdjson::OUT_OF_BOUNDS;
  }

  bool parse_root_scalar(od::document& doc, std::uint32_t& index) {
    od::json_type type;
    if (doc.type().get(type)) return false;
    std::size_t begin = text_.size();
    switch (type) {
      case od::json_type::number: {
        std::string_view token;
        // The token runs up to the next token: it must be the last one.
        if (doc.raw_json_token().get(token) || token.data() + token.size() != end_) return false;
        if (!append_json_number(trim_right(token), text_)) return false;
        break;
      }
      case od::json_type::string: {
        std::string_view s;
        if (doc.get_string().get(s)) return false;
        append_json_string(s, text_);
        break;
      }
      case od::json_type::boolean: {
        bool b = false;
        if (doc.get_bool().get(b)) return false;
        text_.append(b ? "true" : "false");
        break;
      }
      case od::json_type::null: {
        bool null = false;
        if (doc.is_null().get(null) || !null) return false;
        text_.append("null");
        break;
      }
      default:
        return false;
    }
    if (type != od::json_type::number && !at_end(doc)) return false;
    index = add_scalar(begin);
    return true;
  }

  bool parse(od::value value, const PointerNode* ignore, int depth, std::uint32_t& index) {
    od::json_type type;
    if (depth > kMaxDepth || value.type().get(type)) return false;
    std::size_t begin = text_.size();
    switch (type) {
      case od::json_type::object:
        return parse_object(value, ignore, depth, index);
      case od::json_type::array:
        return parse_array(value, ignore, depth, index);
      case od::json_type::number:
        if (!append_json_number(trim_right(value.raw_json_token()), text_)) return false;
        break;
      case od::json_type::string: {
        std::string_view s;
        if (value.get_string().get(s)) return false;
        append_json_string(s, text_);
        break;
      }
      case od::json_type::boolean: {
        bool b = false;
        if (value.get_bool().get(b)) return false;
        text_.append(b ? "true" : "false");
        break;
      }
      case od::json_type::null: {
        bool null = false;
        if (value.is_null().get(null) || !null) return false;
        text_.append("null");
        break;
      }
    }
    index = add_scalar(begin);
    return true;
  }

  bool parse_object(od::value value, const PointerNode* ignore, int depth, std::uint32_t& index) {
    od::object object;
    if (value.get_object().get(object)) return false;
    const std::size_t mark = open_.size();
    for (auto result : object) {
      od::field field;
      std::string_view name;
      if (std::move(result).get(field) || field.unescaped_key().get(name)) return false;
      // Members under an ignored pointer are still parsed: a document is canonical only
      // if all of it is valid and free of duplicate names, ignored parts included.
      const PointerNode* child = ignore ? ignore->find(name) : nullptr;
      std::uint32_t node = 0;
      if (!parse(field.value(), child, depth + 1, node)) return false;
      open_.push_back({name, node, child && child->terminal});
    }
    auto first = open_.begin() + static_cast<std::ptrdiff_t>(mark);
    std::sort(first, open_.end(),
              [](const Child& a, const Child& b) { return utf16_less(a.name, b.name); });
    auto duplicate = std::adjacent_find(
        first, open_.end(), [](const Child& a, const Child& b) { return a.name == b.name; });
    if (duplicate != open_.end()) return false;
    index = close(Kind::object, mark);
    return true;
  }

  bool parse_array(od::value value, const PointerNode* ignore, int depth, std::uint32_t& index) {
    od::array array;
    if (value.get_array().get(array)) return false;
    const std::size_t mark = open_.size();
    std::size_t position = 0;
    for (auto result : array) {
      od::value element;
      if (std::move(result).get(element)) return false;
      const PointerNode* child = nullptr;
      if (ignore && !ignore->children.empty()) {
        char token[24];
        auto [end, ec] = std::to_chars(token, token + sizeof token, position);
        child = ignore->find(std::string_view(token, end - token));
      }
      std::uint32_t node = 0;
      if (!parse(element, child, depth + 1, node)) return false;
      open_.push_back({{}, node, child && child->terminal});
      ++position;
    }
    index = close(Kind::array, mark);
    return true;
  }

  /// Moves the children of the container being closed (open_ from mark on) to closed_,
  /// leaving the ignored ones out, and adds the container's node.
  std::uint32_t close(Kind kind, std::size_t mark) {
    auto begin = static_cast<std::uint32_t>(closed_.size());
    for (std::size_t i = mark; i < open_.size(); ++i) {
      if (!open_[i].ignored) closed_.push_back(open_[i]);
    }
    open_.resize(mark);
    nodes_.push_back({kind, begin, static_cast<std::uint32_t>(closed_.size() - begin)});
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  void emit(std::uint32_t index, std::string& out) const {
    const Node& node = nodes_[index];
    if (node.kind == Kind::scalar) {
      out.append(text_, node.begin, node.size);
      return;
    }
    const bool object = node.kind == Kind::object;
    out.push_back(object ? '{' : '[');
    for (std::uint32_t i = node.begin; i < node.begin + node.size; ++i) {
      if (i != node.begin) out.push_back(',');
      if (object) {
        append_json_string(closed_[i].name, out);
        out.push_back(':');
      }
      emit(closed_[i].node, out);
    }
    out.push_back(object ? '}' : ']');
  }

  od::parser parser_;
  std::vector<char> buffer_;
  const char* end_ = nullptr;
  std::string text_;
  std::vector<Node> nodes_;
  std::vector<Child> open_;
  std::vector<Child> closed_;
};

}  // namespace

bool canonicalize_json_to(std::string_view json, const JsonPointerSet& ignore, std::string& out) {
  thread_local Canonicalizer reused;
  if (json.size() > kKeepCapacity) {
    // A large body gets buffers of its own, freed at once, so that one 10 MiB request
    // does not leave every worker thread holding tens of megabytes.
    auto once = std::make_unique<Canonicalizer>();
    return once->run(json, ignore.root(), out);
  }
  return reused.run(json, ignore.root(), out);
}

}  // namespace detail

std::optional<std::string> canonicalize_json(std::string_view json, const JsonPointerSet& ignore) {
  std::string out;
  if (!detail::canonicalize_json_to(json, ignore, out)) return std::nullopt;
  return out;
}

}  // namespace idem
