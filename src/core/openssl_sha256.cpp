#include "core/openssl_sha256.hpp"

#include <cstdio>
#include <cstdlib>

namespace idem::detail {

const EVP_MD* sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

void check_openssl(int ok, const char* call, const char* during) {
  if (ok == 1) return;
  std::fprintf(stderr, "idem: fatal: OpenSSL %s failed while %s\n", call, during);
  std::abort();
}

}  // namespace idem::detail
