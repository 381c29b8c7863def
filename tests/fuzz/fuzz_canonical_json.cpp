// Canonicalises arbitrary bytes as JSON. Request bodies are untrusted, so this must never
// misbehave (ASan and UBSan watch), and what it accepts must be a fixed point: the
// canonical text canonicalises to itself (idempotence, which also proves that it parses),
// and ignore pointers give the same result on the input and on its canonical form.
// simdjson's DOM parser, an independent validating front end, is the oracle for what is
// JSON at all; the binary floating-point path is the oracle for the decimal shortcut.

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "core/canonical_json.hpp"
#include "idem/fingerprint.hpp"

namespace {

/// Why a document DOM accepts may still be refused: duplicate names, nesting deeper than
/// the canonicaliser's bound, or a zero that may be a non-zero value rounded (1e-400).
bool may_be_refused(simdjson::dom::element e, int depth) {
  if (depth > 256) return true;
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      std::set<std::string_view> names;
      simdjson::dom::object object = e.get_object().value_unsafe();
      for (auto [name, value] : object) {
        if (!names.insert(name).second || may_be_refused(value, depth + 1)) return true;
      }
      return false;
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array array = e.get_array().value_unsafe();
      for (auto value : array) {
        if (may_be_refused(value, depth + 1)) return true;
      }
      return false;
    }
    case simdjson::dom::element_type::DOUBLE:
      return e.get_double().value_unsafe() == 0;
    default:
      return false;
  }
}

bool is_number_error(simdjson::error_code error) {
  // DOM refuses integers beyond 64 bits, which canonical JSON keeps (contract section 6).
  return error == simdjson::NUMBER_ERROR || error == simdjson::NUMBER_OUT_OF_RANGE;
}

void check_number(std::string_view token) {
  // The decimal shortcut must agree with from_chars/to_chars on every token.
  char fast[512], exact[512];
  if (token.size() > sizeof fast - idem::detail::kNumberSlack) return;
  char* fast_end = idem::detail::write_json_number(token, fast);
  char* exact_end = idem::detail::write_json_number_exact(token, exact);
  if ((fast_end == nullptr) != (exact_end == nullptr)) std::abort();
  if (fast_end &&
      std::string_view(fast, fast_end - fast) != std::string_view(exact, exact_end - exact)) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  static const idem::JsonPointerSet kNone;
  static const idem::JsonPointerSet kSome({"/a", "/0", "/b/1", "/c/d", "/~1", "/"});

  const std::optional<std::string> canonical = idem::canonicalize_json(input, kNone);
  if (canonical && idem::canonicalize_json(*canonical, kNone) != canonical) std::abort();
  // Leaving members out commutes with canonicalisation: names and array positions are the
  // same in the canonical text. (Not idempotent: dropping /0 twice drops two elements.)
  const std::optional<std::string> without = idem::canonicalize_json(input, kSome);
  if (without.has_value() != canonical.has_value()) std::abort();
  if (canonical && idem::canonicalize_json(*canonical, kSome) != without) std::abort();
  check_number(input);

  thread_local simdjson::dom::parser dom;
  simdjson::dom::element root;
  const simdjson::error_code error = dom.parse(input.data(), input.size()).get(root);
  if (canonical && error && !is_number_error(error)) std::abort();     // accepted non-JSON
  if (!canonical && !error && !may_be_refused(root, 0)) std::abort();  // refused JSON
  return 0;
}
