// Request fingerprints (contract section 6): what a request asks for, hashed so that two
// requests that mean the same thing (members reordered, parameters reordered) agree.

#include "idem/fingerprint.hpp"

#include <openssl/evp.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "core/canonical_json.hpp"
#include "core/openssl_sha256.hpp"

namespace idem {

namespace {

/// Buffers grown past this for one large body are not kept for the next request.
constexpr std::size_t kKeepCapacity = 1u << 20;
/// Separates these hashes from any other use of the same algorithm; bump the version
/// whenever what is hashed changes, since stored fingerprints then stop matching.
constexpr std::string_view kDomain = "idem-fingerprint-v1";

enum class BodyKind : char { raw = 'R', json = 'J', form = 'F' };

std::string_view kind_name(BodyKind kind) noexcept {
  switch (kind) {
    case BodyKind::json:
      return "json";
    case BodyKind::form:
      return "form";
    case BodyKind::raw:
      break;
  }
  return "raw";
}

void check(int ok, const char* call) { detail::check_openssl(ok, call, "fingerprinting"); }

using detail::sha256;

/// Streams length-prefixed parts into SHA-256 or XXH3-128. Per-thread hashing state is
/// reused, so a fingerprint allocates nothing.
class Hasher {
 public:
  explicit Hasher(FingerprintAlgorithm algorithm) : algorithm_(algorithm) {
    if (algorithm_ == FingerprintAlgorithm::sha256) {
      thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                               &EVP_MD_CTX_free);
      sha_ = ctx.get();
      check(sha_ != nullptr && sha256() != nullptr, "EVP_MD_CTX_new");
      check(EVP_DigestInit_ex(sha_, sha256(), nullptr), "EVP_DigestInit_ex");
    } else {
      thread_local std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(
          XXH3_createState(), &XXH3_freeState);
      xxh_ = state.get();
      if (xxh_ == nullptr) std::abort();  // out of memory at the first request of a thread
      XXH3_128bits_reset(xxh_);
    }
    update(kDomain);
  }

  /// One part: a tag, its length (8 bytes, little-endian), its bytes. The lengths make the
  /// encoding unambiguous: no two different requests produce the same byte stream.
  void part(char tag, std::string_view bytes) {
    char header[9];
    header[0] = tag;
    auto n = static_cast<std::uint64_t>(bytes.size());
    for (int i = 0; i < 8; ++i) header[1 + i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    update({header, sizeof header});
    update(bytes);
  }

  Digest finish() {
    if (algorithm_ == FingerprintAlgorithm::sha256) {
      std::uint8_t out[EVP_MAX_MD_SIZE];
      unsigned size = 0;
      check(EVP_DigestFinal_ex(sha_, out, &size), "EVP_DigestFinal_ex");
      return Digest({out, size});
    }
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(xxh_));
    return Digest({canonical.digest, sizeof canonical.digest});
  }

 private:
  void update(std::string_view bytes) {
    if (bytes.empty()) return;
    if (algorithm_ == FingerprintAlgorithm::sha256) {
      check(EVP_DigestUpdate(sha_, bytes.data(), bytes.size()), "EVP_DigestUpdate");
    } else {
      XXH3_128bits_update(xxh_, bytes.data(), bytes.size());
    }
  }

  FingerprintAlgorithm algorithm_;
  EVP_MD_CTX* sha_ = nullptr;
  XXH3_state_t* xxh_ = nullptr;
};

/// Per-thread buffers for the canonical query and body.
struct Scratch {
  std::string query;
  std::string body;

  void release_if_large() {
    if (query.capacity() > kKeepCapacity) std::string().swap(query);
    if (body.capacity() > kKeepCapacity) std::string().swap(body);
  }
};

Scratch& scratch() {
  thread_local Scratch buffers;
  return buffers;
}

std::string_view media_type_essence(std::string_view content_type) noexcept {
  content_type = content_type.substr(0, content_type.find(';'));
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!content_type.empty() && is_space(content_type.front())) content_type.remove_prefix(1);
  while (!content_type.empty() && is_space(content_type.back())) content_type.remove_suffix(1);
  return content_type;
}

char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

/// Appends `s` for a one-line human rendering: control bytes become \xHH.
void append_printable(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b != 0x7F) {
      out.push_back(c);
    } else {
      out.append("\\x");
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xF]);
    }
  }
}

void append_line(std::string& out, std::string_view label, std::string_view value) {
  out.append(label);
  out.push_back(':');
  if (!value.empty()) {
    out.push_back(' ');
    append_printable(value, out);
  }
  out.push_back('\n');
}

/// The query with its parameters sorted, in a per-thread buffer.
std::string_view canonical_query(const RequestView& request) {
  std::string& query = scratch().query;
  detail::canonicalize_form_to(request.query(), query);
  return query;
}

}  // namespace

bool is_json_media_type(std::string_view content_type) noexcept {
  std::string_view essence = media_type_essence(content_type);
  std::size_t slash = essence.find('/');
  if (slash == 0 || slash == std::string_view::npos) return false;
  std::string_view type = essence.substr(0, slash), subtype = essence.substr(slash + 1);
  if (iequals(type, "application") && iequals(subtype, "json")) return true;
  // Structured syntax suffix (RFC 6839): application/vnd.api+json, application/problem+json.
  constexpr std::string_view kSuffix = "+json";
  return subtype.size() > kSuffix.size() &&
         iequals(subtype.substr(subtype.size() - kSuffix.size()), kSuffix);
}

bool is_form_media_type(std::string_view content_type) noexcept {
  return iequals(media_type_essence(content_type), "application/x-www-form-urlencoded");
}

namespace {

/// Calls `use(kind, bytes, json_refused)` once with what the fingerprint holds of the body:
/// canonical JSON, sorted form, or the raw bytes (`json_refused` when a JSON media type's
/// body is not canonical JSON). The bytes may live in per-thread buffers only during the call.
template <class Use>
void with_canonical_body(const RequestView& request, const JsonPointerSet& ignore, Use&& use) {
  auto content_type = request.header("content-type");
  if (content_type && is_json_media_type(*content_type)) {
    auto json = [&](std::string_view canonical) { use(BodyKind::json, canonical, false); };
    if (!detail::canonicalize_json_into(request.body, ignore, json)) {
      use(BodyKind::raw, request.body, true);
    }
  } else if (content_type && is_form_media_type(*content_type)) {
    std::string& form = scratch().body;
    detail::canonicalize_form_to(request.body, form);
    use(BodyKind::form, form, false);
  } else {
    use(BodyKind::raw, request.body, false);
  }
}

}  // namespace

Fingerprinter::Fingerprinter(FingerprintOptions options)
    : options_(std::move(options)), ignore_(options_.ignore) {
  for (const auto& name : options_.headers) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
    header_names_.push_back(std::move(lower));
  }
  std::sort(header_names_.begin(), header_names_.end());
  header_names_.erase(std::unique(header_names_.begin(), header_names_.end()), header_names_.end());
  if (options_.algorithm == FingerprintAlgorithm::sha256 && sha256() == nullptr) {
    throw std::invalid_argument("fingerprint_algorithm: OpenSSL offers no SHA-256");
  }
}

Digest Fingerprinter::fingerprint(const RequestView& request) const {
  Hasher hasher(options_.algorithm);
  hasher.part('M', request.method);
  hasher.part('P', request.path());
  hasher.part('Q', canonical_query(request));
  for (const auto& name : header_names_) {
    hasher.part('H', name);
    // Every value in order, then an end marker: an absent header (no values) differs
    // from an empty one (one empty value).
    for (const auto& field : request.headers) {
      if (iequals(field.name, name)) hasher.part('V', field.value);
    }
    hasher.part('E', {});
  }
  with_canonical_body(request, ignore_, [&](BodyKind kind, std::string_view body, bool) {
    hasher.part(static_cast<char>(kind), body);
  });
  Digest digest = hasher.finish();
  scratch().release_if_large();
  return digest;
}

std::string Fingerprinter::canonical_form(const RequestView& request) const {
  std::string out;
  append_line(out, "method", request.method);
  append_line(out, "path", request.path());
  append_line(out, "query", canonical_query(request));
  for (const auto& name : header_names_) {
    bool present = false;
    for (const auto& field : request.headers) {
      if (!iequals(field.name, name)) continue;
      present = true;
      append_line(out, "header " + name, field.value);
    }
    if (!present) out.append("header ").append(name).append(": (absent)\n");
  }
  with_canonical_body(request, ignore_, [&](BodyKind kind, std::string_view body, bool refused) {
    std::string label = "body (" + std::string(kind_name(kind));
    if (kind == BodyKind::raw) {
      label += ", " + std::to_string(body.size()) + " bytes";
      if (refused) label += "; not canonical JSON: invalid or duplicate names";
    }
    label += ')';
    append_line(out, label, body);
  });
  scratch().release_if_large();
  return out;
}

}  // namespace idem
