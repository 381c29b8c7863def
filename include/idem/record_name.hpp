#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "idem/digest.hpp"

namespace idem {

/// Names records: HMAC-SHA-256(secret, len32le(scope) || scope || key). Thread-safe; the
/// padded key blocks are prepared once, and naming a record allocates nothing.
class RecordNamer {
 public:
  /// `secret` is raw bytes, at least 16 of them; throws std::invalid_argument otherwise.
  explicit RecordNamer(std::string secret);
  ~RecordNamer();
  RecordNamer(RecordNamer&&) noexcept;
  RecordNamer& operator=(RecordNamer&&) noexcept;

  RecordId name(std::string_view scope, std::string_view key) const;

  /// 32 random bytes from OpenSSL's CSPRNG, for a new secret.
  static std::string generate_secret();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace idem
