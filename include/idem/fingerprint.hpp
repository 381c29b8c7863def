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

/// A compiled set of RFC 6901 JSON Pointers (`fingerprint_ignore`).
class JsonPointerSet {
 public:
  JsonPointerSet() = default;
  /// Throws std::invalid_argument naming the bad pointer (start-up only).
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
/// names at any depth, or numbers out of double range: such bodies are fingerprinted raw.
std::optional<std::string> canonicalize_json(std::string_view json,
                                             const JsonPointerSet& ignore = {});

/// `application/x-www-form-urlencoded` (and query strings): parameters sorted by name then
/// value, bytes kept as sent.
std::string canonicalize_form(std::string_view form);

/// True for `application/json` and any `*+json` media type (parameters ignored).
bool is_json_media_type(std::string_view content_type) noexcept;
bool is_form_media_type(std::string_view content_type) noexcept;

struct FingerprintOptions {
  FingerprintAlgorithm algorithm = FingerprintAlgorithm::sha256;
  std::vector<std::string> ignore;   ///< `fingerprint_ignore`
  std::vector<std::string> headers;  ///< `fingerprint_headers`
};

/// Computes request fingerprints (contract section 6). Immutable and thread-safe once
/// built; build one per policy at start-up.
class Fingerprinter {
 public:
  /// Throws std::invalid_argument for a bad JSON Pointer (start-up only).
  explicit Fingerprinter(FingerprintOptions options = {});

  Digest fingerprint(const RequestView& request) const;

  /// The exact bytes that are hashed, rendered for people: one line per part
  /// (method, path, query, each fingerprint header, body kind) and then the body's
  /// canonical form. For `idemctl fingerprint`.
  std::string canonical_form(const RequestView& request) const;

  const FingerprintOptions& options() const noexcept { return options_; }

 private:
  FingerprintOptions options_;
  JsonPointerSet ignore_;
};

}  // namespace idem
