#include "idem/record_name.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>

#include "core/openssl_sha256.hpp"

namespace idem {

namespace {

constexpr std::size_t kBlock = 64;  // SHA-256's block size, which HMAC pads the key to
constexpr std::size_t kDigest = 32;

void check(int ok, const char* call) { detail::check_openssl(ok, call, "naming a record"); }

using detail::sha256;

/// This thread's SHA-256 context. Re-initialising a context with the same digest reuses
/// its state, so naming a record allocates nothing (EVP_MAC_CTX_dup allocated four times).
EVP_MD_CTX* thread_context() {
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           &EVP_MD_CTX_free);
  check(ctx != nullptr ? 1 : 0, "EVP_MD_CTX_new");
  return ctx.get();
}

}  // namespace

/// HMAC (RFC 2104) spelled out over SHA-256: the key's two padded blocks are computed once.
struct RecordNamer::State {
  std::array<std::uint8_t, kBlock> inner_pad{};  // key ^ 0x36..
  std::array<std::uint8_t, kBlock> outer_pad{};  // key ^ 0x5c..

  ~State() {
    OPENSSL_cleanse(inner_pad.data(), inner_pad.size());
    OPENSSL_cleanse(outer_pad.data(), outer_pad.size());
  }
};

RecordNamer::RecordNamer(std::string secret) : state_(std::make_unique<State>()) {
  if (secret.size() < 16) throw std::invalid_argument("secret: at least 16 bytes are required");
  if (sha256() == nullptr) throw std::runtime_error("OpenSSL: SHA-256 is not available");
  std::array<std::uint8_t, kBlock> key{};
  if (secret.size() > kBlock) {  // longer keys are hashed first (RFC 2104, section 2)
    unsigned size = 0;
    if (EVP_Digest(secret.data(), secret.size(), key.data(), &size, sha256(), nullptr) != 1) {
      throw std::runtime_error("OpenSSL: cannot hash the secret");
    }
  } else {
    std::copy(secret.begin(), secret.end(), key.begin());
  }
  for (std::size_t i = 0; i < kBlock; ++i) {
    state_->inner_pad[i] = key[i] ^ 0x36;
    state_->outer_pad[i] = key[i] ^ 0x5c;
  }
  OPENSSL_cleanse(key.data(), key.size());
  OPENSSL_cleanse(secret.data(), secret.size());
}

RecordNamer::~RecordNamer() = default;
RecordNamer::RecordNamer(RecordNamer&&) noexcept = default;
RecordNamer& RecordNamer::operator=(RecordNamer&&) noexcept = default;

RecordId RecordNamer::name(std::string_view scope, std::string_view key) const {
  // The scope's length goes first so that no (scope, key) pair can be re-split into another.
  std::uint8_t length[4];
  auto n = static_cast<std::uint32_t>(scope.size());
  for (int i = 0; i < 4; ++i) length[i] = static_cast<std::uint8_t>(n >> (8 * i));
  EVP_MD_CTX* ctx = thread_context();
  std::uint8_t inner[kDigest];
  std::uint8_t out[kDigest];
  unsigned size = 0;
  check(EVP_DigestInit_ex(ctx, sha256(), nullptr), "EVP_DigestInit_ex");
  check(EVP_DigestUpdate(ctx, state_->inner_pad.data(), kBlock), "EVP_DigestUpdate");
  check(EVP_DigestUpdate(ctx, length, sizeof length), "EVP_DigestUpdate");
  check(EVP_DigestUpdate(ctx, scope.data(), scope.size()), "EVP_DigestUpdate");
  check(EVP_DigestUpdate(ctx, key.data(), key.size()), "EVP_DigestUpdate");
  check(EVP_DigestFinal_ex(ctx, inner, &size), "EVP_DigestFinal_ex");
  check(EVP_DigestInit_ex(ctx, sha256(), nullptr), "EVP_DigestInit_ex");
  check(EVP_DigestUpdate(ctx, state_->outer_pad.data(), kBlock), "EVP_DigestUpdate");
  check(EVP_DigestUpdate(ctx, inner, sizeof inner), "EVP_DigestUpdate");
  check(EVP_DigestFinal_ex(ctx, out, &size), "EVP_DigestFinal_ex");
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
