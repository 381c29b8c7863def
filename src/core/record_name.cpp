#include "idem/record_name.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdint>
#include <stdexcept>

namespace idem {

struct RecordNamer::State {
  EVP_MAC* mac = nullptr;
  // Keyed once; each name() duplicates it, which is cheaper than re-deriving the HMAC pads.
  EVP_MAC_CTX* keyed = nullptr;

  ~State() {
    EVP_MAC_CTX_free(keyed);
    EVP_MAC_free(mac);
  }
};

RecordNamer::RecordNamer(std::string secret) : state_(std::make_unique<State>()) {
  if (secret.size() < 16) throw std::invalid_argument("secret: at least 16 bytes are required");
  state_->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (state_->mac == nullptr) throw std::runtime_error("OpenSSL: HMAC is not available");
  state_->keyed = EVP_MAC_CTX_new(state_->mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (state_->keyed == nullptr ||
      EVP_MAC_init(state_->keyed, reinterpret_cast<const unsigned char*>(secret.data()),
                   secret.size(), params) != 1) {
    throw std::runtime_error("OpenSSL: cannot key HMAC-SHA-256");
  }
}

RecordNamer::~RecordNamer() = default;
RecordNamer::RecordNamer(RecordNamer&&) noexcept = default;
RecordNamer& RecordNamer::operator=(RecordNamer&&) noexcept = default;

RecordId RecordNamer::name(std::string_view scope, std::string_view key) const {
  // The scope's length goes first so that no (scope, key) pair can be re-split into another.
  std::uint8_t length[4];
  auto n = static_cast<std::uint32_t>(scope.size());
  for (int i = 0; i < 4; ++i) length[i] = static_cast<std::uint8_t>(n >> (8 * i));
  unsigned char out[32];
  std::size_t out_len = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(state_->keyed);
  bool ok =
      ctx != nullptr && EVP_MAC_update(ctx, length, sizeof length) == 1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(scope.data()), scope.size()) ==
          1 &&
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size()) == 1 &&
      EVP_MAC_final(ctx, out, &out_len, sizeof out) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok || out_len != sizeof out) {
    // Only reachable when OpenSSL cannot allocate: a programming/environment error.
    throw std::runtime_error("OpenSSL: HMAC-SHA-256 failed");
  }
  return RecordId(std::span<const std::uint8_t>(out, sizeof out));
}

std::string RecordNamer::generate_secret() {
  std::string secret(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                 static_cast<int>(secret.size())) != 1) {
    throw std::runtime_error("OpenSSL: no random bytes for a new secret");
  }
  return secret;
}

}  // namespace idem
