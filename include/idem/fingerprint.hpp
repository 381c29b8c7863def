#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "idem/digest.hpp"
#include "idem/request.hpp"

namespace idem {

enum class FingerprintAlgorithm { sha256, xxh3_128 };

/// A compiled set of RFC 6901 JSON Pointers (`fingerprint_ignore`): `/a/b` names member
/// `b` of member `a`, `~1` stands for '/', `~0` for '~', and a decimal token also names an
/// array element (`/items/0`). Immutable once built; copies are deep.
class JsonPointerSet {
 public:
  JsonPointerSet() noexcept;
  /// Throws std::invalid_argument naming the bad pointer (start-up only): one that does not
  /// start with '/', has a '~' not followed by '0' or '1', or is empty (the whole body: see
  /// Fingerprinter).
  explicit JsonPointerSet(const std::vector<std::string>& pointers);
  ~JsonPointerSet();
  JsonPointerSet(const JsonPointerSet&);
  JsonPointerSet& operator=(const JsonPointerSet&);
  JsonPointerSet(JsonPointerSet&&) noexcept;
  JsonPointerSet& operator=(JsonPointerSet&&) noexcept;

  bool empty() const noexcept;

  struct Node;
  const Node* root() const noexcept { return root_.get(); }

 private:
  std::unique_ptr<Node> root_;
};

/// RFC 8785 canonical form of a JSON text, with the members named by `ignore` left out.
/// Numbers written without fraction or exponent that a double cannot hold exactly keep
/// their digits. Returns nullopt for text that does not parse, that has duplicate member
/// names at any depth (ignored parts included), numbers out of double range (overflow, or
/// a non-zero value that rounds to zero), or nesting deeper than 256: such bodies are
/// fingerprinted raw. Thread-safe (per-thread parser).
std::optional<std::string> canonicalize_json(std::string_view json,
                                             const JsonPointerSet& ignore = {});

/// `application/x-www-form-urlencoded` (and query strings): parameters sorted by name then
/// value, bytes kept as sent. Parameters are split on '&' and compared percent-decoded
/// ('+' as space), ties broken by the bytes as sent; empty parameters are dropped.
std::string canonicalize_form(std::string_view form);

/// True for `application/json` and any `*+json` media type (ASCII case-insensitive,
/// parameters such as `charset` ignored).
bool is_json_media_type(std::string_view content_type) noexcept;
/// True for `application/x-www-form-urlencoded` (case-insensitive, parameters ignored).
bool is_form_media_type(std::string_view content_type) noexcept;

struct FingerprintOptions {
  FingerprintAlgorithm algorithm = FingerprintAlgorithm::sha256;
  std::vector<std::string> ignore;   ///< `fingerprint_ignore`
  std::vector<std::string> headers;  ///< `fingerprint_headers`
};

/// A custom fingerprint (`Policy::fingerprint_strategy`), for requests whose meaning the
/// built-in canonical forms miss, e.g. a body with a volatile field outside JSON. Two
/// requests that mean the same operation must get the same digest. Implementations are
/// immutable and thread-safe, and never throw.
class FingerprintStrategy {
 public:
  virtual ~FingerprintStrategy() = default;
  virtual Digest fingerprint(const RequestView& request) const = 0;
};

/// Computes request fingerprints (contract section 6). Immutable and thread-safe once
/// built; build one per policy at start-up.
class Fingerprinter {
 public:
  /// Throws std::invalid_argument for a bad JSON Pointer (start-up only), naming it. The
  /// empty pointer (the whole body) is refused too: ignoring the whole body would let any
  /// retry with the same key match, hiding the client bugs fingerprints exist to catch.
  explicit Fingerprinter(FingerprintOptions options = {});

  /// SHA-256 (32 bytes) or XXH3-128 (16 bytes) over, each part length-prefixed: method,
  /// path, the sorted query, every `fingerprint_headers` header (absent and empty differ;
  /// all values of a repeated header, in order), the body kind (json, form, raw) and the
  /// body's canonical bytes. Never throws; uses per-thread buffers, no allocation once warm.
  /// Aborts the process if OpenSSL fails (out of memory): a constant digest instead could
  /// replay another request's response.
  Digest fingerprint(const RequestView& request) const;

  /// The exact parts that are hashed, rendered for people, one `name: value` line each
  /// (each ending in '\n'): `method`, `path`, `query`, `header <lowercase name>` per
  /// fingerprint header (`(absent)` when missing), and last `body (<kind>)` with the
  /// body's canonical form. Control bytes are shown as `\xHH`. For `idemctl fingerprint`.
  std::string canonical_form(const RequestView& request) const;

  /// The options as given.
  const FingerprintOptions& options() const noexcept { return options_; }

 private:
  FingerprintOptions options_;
  JsonPointerSet ignore_;
  std::vector<std::string> header_names_;  ///< lowercased, sorted, unique
};

}  // namespace idem
