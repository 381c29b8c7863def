// RFC 8785 (JCS) canonical JSON on top of simdjson's On-Demand API.
//
// One pass over the document builds a small tree: every scalar is either already canonical
// in the input (most strings, small integers, literals) or rendered canonically into a
// text buffer as it is met, and every container becomes a list of children,
// sorted (objects) and checked for duplicate names when the container closes. A second
// pass writes the tree out. Each byte is thus copied a bounded number of times whatever
// the nesting, and all buffers are per thread and reused, so that fingerprinting a
// request allocates nothing once a thread is warm.

#include "core/canonical_json.hpp"

#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <iterator>
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

/// A growable byte buffer written through raw pointers: the writers know an upper bound of
/// what they write, so one capacity check per value replaces one per byte.
class CharBuffer {
 public:
  /// Room for `extra` more bytes at the returned pointer; finish with commit().
  char* reserve(std::size_t extra) {
    if (size_ + extra > capacity_) grow(size_ + extra);
    return data_.get() + size_;
  }
  void commit(const char* end) noexcept { size_ = static_cast<std::size_t>(end - data_.get()); }
  void clear() noexcept { size_ = 0; }
  const char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::string_view view(std::size_t begin, std::size_t n) const noexcept {
    return {data_.get() + begin, n};
  }

 private:
  void grow(std::size_t needed) {
    std::size_t capacity = std::max({needed, 2 * capacity_, std::size_t{256}});
    auto bigger = std::make_unique<char[]>(capacity);
    if (size_ != 0) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = capacity;
  }

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

class Canonicalizer {
 public:
  /// On success `out` views the result, valid until the next run().
  bool run(std::string_view json, const PointerNode* ignore, std::string_view& out) {
    text_.clear();
    out_.clear();
    nodes_.clear();
    open_.clear();
    closed_.clear();
    // simdjson reads up to SIMDJSON_PADDING bytes past the end of its input.
    input_.clear();
    char* input = input_.reserve(json.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(input, json.data(), json.size());
    std::memset(input + json.size(), 0, simdjson::SIMDJSON_PADDING);
    end_ = input + json.size();

    od::document doc;
    if (parser_.iterate(input, json.size(), json.size() + simdjson::SIMDJSON_PADDING).get(doc)) {
      return false;
    }
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
    emit(root);
    out = out_.view(0, out_.size());
    return true;
  }

 private:
  enum class Kind : std::uint8_t { verbatim, text, object, array };
  /// A value of the document: a range of the input (a scalar already canonical), of text_
  /// (a scalar rendered canonically) or of closed_ (a container's children).
  struct Node {
    Kind kind;
    std::uint32_t begin;
    std::uint32_t size;
  };
  /// A member (with its name) or an element (name empty) of a container.
  struct Child {
    std::string_view name;  // unescaped: in the input, or in the parser's string buffer
    std::uint32_t node;
    bool plain_name;  // the name needs no escaping
    bool ignored;
  };

  std::uint32_t add_node(Kind kind, std::size_t begin, std::size_t size) {
    nodes_.push_back({kind, static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(size)});
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  /// A token of the input that is its own canonical form.
  std::uint32_t add_verbatim(std::string_view token) {
    return add_node(Kind::verbatim, token.data() - input_.data(), token.size());
  }

  /// Whether a number token is an integer of at most 15 characters (not "-0"): below 10^15
  /// every integer is a double printed with all its digits, and JSON integers have no
  /// leading zeros, so such a literal is already canonical.
  static bool is_short_integer(std::string_view token) noexcept {
    if (token.empty() || token.size() > 15 || token == "-0") return false;
    std::size_t i = token.front() == '-' ? 1 : 0;
    if (i == token.size() || (token[i] == '0' && token.size() > i + 1)) return false;
    for (; i < token.size(); ++i) {
      if (token[i] < '0' || token[i] > '9') return false;
    }
    return true;
  }

  /// Whether a string token needs nothing from RFC 8785: without a backslash, its bytes
  /// are plain UTF-8 (simdjson checked the encoding and the absence of raw controls).
  static bool is_plain_string(std::string_view token) noexcept {
    return token.find('\\') == std::string_view::npos;
  }

  /// The name of `field` straight from the input when it has no escapes: the bytes up to
  /// the first '"', unless a '\\' comes first. Scans 8 bytes at a time (the padding after
  /// the input makes the last reads safe); the lowest match of the zero-byte test is exact.
  bool plain_name(od::field& field, std::string_view& name) const noexcept {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
    auto zero_bytes = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
    const char* begin = field.key().raw();
    if constexpr (std::endian::native != std::endian::little) {  // the lowest match is exact
      for (const char* q = begin; q < end_ && *q != '\\'; ++q) {
        if (*q == '"') {
          name = std::string_view(begin, q - begin);
          return true;
        }
      }
      return false;
    }
    for (const char* q = begin; q < end_; q += 8) {
      std::uint64_t word;
      std::memcpy(&word, q, 8);
      std::uint64_t hits = zero_bytes(word ^ (kOnes * '"')) | zero_bytes(word ^ (kOnes * '\\'));
      if (hits == 0) continue;
      const char* at = q + std::countr_zero(hits) / 8;
      if (at >= end_ || *at != '"') return false;
      name = std::string_view(begin, at - begin);
      return true;
    }
    return false;
  }

  /// Whether the whole input was consumed: anything after the root value is an error.
  static bool at_end(od::document& doc) {
    const char* location = nullptr;
    return doc.current_location().get(location) == simdjson::OUT_OF_BOUNDS;
  }

  bool add_number(std::string_view token, std::uint32_t& index) {
    token = trim_right(token);
    if (is_short_integer(token)) {  // the usual case, canonical as written
      index = add_verbatim(token);
      return true;
    }
    std::size_t begin = text_.size();
    char* end = write_json_number(token, text_.reserve(token.size() + kNumberSlack));
    if (end == nullptr) return false;
    text_.commit(end);
    std::size_t size = text_.size() - begin;
    // Unchanged (the usual integer): point at the input, sparing a copy at emit time.
    if (size == token.size() && std::memcmp(text_.data() + begin, token.data(), size) == 0) {
      text_.commit(text_.data() + begin);
      index = add_verbatim(token);
    } else {
      index = add_node(Kind::text, begin, size);
    }
    return true;
  }

  /// `token` is the string's JSON token, which bounds the size of its canonical form.
  template <class Source>
  bool add_string(Source& source, std::string_view token, std::uint32_t& index) {
    token = trim_right(token);
    if (is_plain_string(token)) {
      // Consumed all the same: simdjson skips an unread string followed by ':' as if it
      // were a member name, which would let `["a":1}]`-like structure through unchecked.
      simdjson::ondemand::raw_json_string unused;
      if (source.get_raw_json_string().get(unused)) return false;
      index = add_verbatim(token);
      return true;
    }
    std::string_view s;
    if (source.get_string().get(s)) return false;
    std::size_t begin = text_.size();
    text_.commit(write_json_string(s, text_.reserve(token.size())));
    index = add_node(Kind::text, begin, text_.size() - begin);
    return true;
  }

  /// true, false and null, once their getter has checked them.
  std::uint32_t add_literal(std::string_view token) { return add_verbatim(trim_right(token)); }

  bool parse_root_scalar(od::document& doc, std::uint32_t& index) {
    od::json_type type;
    std::string_view token;
    if (doc.type().get(type) || doc.raw_json_token().get(token)) return false;
    // Every token runs up to the next one, so the only one must end where the input does.
    if (token.data() + token.size() != end_) return false;
    switch (type) {
      case od::json_type::number:
        return add_number(token, index);
      case od::json_type::string:
        return add_string(doc, token, index);
      case od::json_type::boolean:
      case od::json_type::null: {
        // simdjson 3.0.1 refuses a root literal followed by a few white space characters
        // ("false  ", " null "), so the token (the only one, checked above) is compared.
        std::string_view literal = trim_right(token);
        if (literal != "true" && literal != "false" && literal != "null") return false;
        index = add_literal(literal);
        return true;
      }
      default:
        return false;
    }
  }

  bool parse(od::value value, const PointerNode* ignore, int depth, std::uint32_t& index) {
    od::json_type type;
    if (depth > kMaxDepth || value.type().get(type)) return false;
    switch (type) {
      case od::json_type::object:
        return parse_object(value, ignore, depth, index);
      case od::json_type::array:
        return parse_array(value, ignore, depth, index);
      case od::json_type::number:
        return add_number(value.raw_json_token(), index);
      case od::json_type::string:
        return add_string(value, value.raw_json_token(), index);
      case od::json_type::boolean: {
        std::string_view token = value.raw_json_token();
        bool b = false;
        if (value.get_bool().get(b)) return false;
        index = add_literal(token);
        return true;
      }
      case od::json_type::null: {
        std::string_view token = value.raw_json_token();
        bool null = false;
        if (value.is_null().get(null) || !null) return false;
        index = add_literal(token);
        return true;
      }
    }
    return false;
  }

  bool parse_object(od::value value, const PointerNode* ignore, int depth, std::uint32_t& index) {
    od::object object;
    if (value.get_object().get(object)) return false;
    const std::size_t mark = open_.size();
    for (auto result : object) {
      od::field field;
      if (std::move(result).get(field)) return false;
      std::string_view name;
      const bool plain = plain_name(field, name);
      if (!plain && field.unescaped_key().get(name)) return false;
      // Members under an ignored pointer are still parsed: a document is canonical only
      // if all of it is valid and free of duplicate names, ignored parts included.
      const PointerNode* child = ignore ? ignore->find(name) : nullptr;
      std::uint32_t node = 0;
      if (!parse(field.value(), child, depth + 1, node)) return false;
      open_.push_back({name, node, plain, child && child->terminal});
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
      open_.push_back({{}, node, true, child && child->terminal});
      ++position;
    }
    index = close(Kind::array, mark);
    return true;
  }

  /// Moves the children of the container being closed (open_ from mark on) to closed_,
  /// leaving the ignored ones out, and adds the container's node.
  std::uint32_t close(Kind kind, std::size_t mark) {
    auto begin = static_cast<std::uint32_t>(closed_.size());
    std::remove_copy_if(open_.begin() + static_cast<std::ptrdiff_t>(mark), open_.end(),
                        std::back_inserter(closed_), [](const Child& c) { return c.ignored; });
    open_.resize(mark);
    nodes_.push_back({kind, begin, static_cast<std::uint32_t>(closed_.size() - begin)});
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }

  void emit(std::uint32_t index) {
    const Node& node = nodes_[index];
    if (node.kind == Kind::verbatim || node.kind == Kind::text) {
      const char* from = (node.kind == Kind::verbatim ? input_ : text_).data() + node.begin;
      char* p = out_.reserve(node.size);
      std::memcpy(p, from, node.size);
      out_.commit(p + node.size);
      return;
    }
    const bool object = node.kind == Kind::object;
    char* p = out_.reserve(1);
    *p++ = object ? '{' : '[';
    out_.commit(p);
    for (std::uint32_t i = node.begin; i < node.begin + node.size; ++i) {
      // Room for a separator, the escaped name (at most 6 bytes per byte), quotes and ':'.
      const std::string_view name = closed_[i].name;
      p = out_.reserve(4 + 6 * name.size());
      if (i != node.begin) *p++ = ',';
      if (object && closed_[i].plain_name) {
        *p++ = '"';
        std::memcpy(p, name.data(), name.size());
        p += name.size();
        *p++ = '"';
        *p++ = ':';
      } else if (object) {
        p = write_json_string(name, p);
        *p++ = ':';
      }
      out_.commit(p);
      emit(closed_[i].node);
    }
    p = out_.reserve(1);
    *p++ = object ? '}' : ']';
    out_.commit(p);
  }

  od::parser parser_;
  CharBuffer input_;
  const char* end_ = nullptr;
  CharBuffer text_;
  CharBuffer out_;
  std::vector<Node> nodes_;
  std::vector<Child> open_;
  std::vector<Child> closed_;
};

}  // namespace

bool canonicalize_json_into(std::string_view json, const JsonPointerSet& ignore, TextSink sink) {
  std::string_view canonical;
  if (json.size() > kKeepCapacity) {
    // A large body gets buffers of its own, freed on return, so that one 10 MiB request
    // does not leave every worker thread holding tens of megabytes.
    auto once = std::make_unique<Canonicalizer>();
    if (!once->run(json, ignore.root(), canonical)) return false;
    sink(canonical);
    return true;
  }
  thread_local Canonicalizer reused;
  if (!reused.run(json, ignore.root(), canonical)) return false;
  sink(canonical);
  return true;
}

}  // namespace detail

std::optional<std::string> canonicalize_json(std::string_view json, const JsonPointerSet& ignore) {
  std::optional<std::string> result;
  auto copy = [&](std::string_view canonical) { result.emplace(canonical); };
  detail::canonicalize_json_into(json, ignore, copy);
  return result;
}

}  // namespace idem
