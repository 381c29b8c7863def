#pragma once

#include <openssl/evp.h>

namespace idem::detail {

/// OpenSSL's SHA-256, fetched once: an implicit fetch on every EVP_DigestInit_ex costs more
/// than hashing 1 KiB. Null only when OpenSSL offers no SHA-256 (checked at start-up).
const EVP_MD* sha256();

/// OpenSSL fails on the request path only when out of memory or misinstalled. A request
/// cannot be fingerprinted or named correctly without its hash, and a constant one could
/// hand somebody else's record out, so a failure is fatal (as Envoy's RELEASE_ASSERT on
/// digests): prints "idem: fatal: OpenSSL <call> failed while <during>" and aborts.
void check_openssl(int ok, const char* call, const char* during);

}  // namespace idem::detail
