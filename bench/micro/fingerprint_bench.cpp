// Cost of fingerprinting one request: the target is canonicalise + hash of a 1 KiB JSON
// body in at most 5 us (release build).

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "idem/fingerprint.hpp"

namespace {

// A payment intent as a typical API receives it: nested objects, an array of line items,
// numbers with fractions, escapes, members out of order. 1222 bytes; BM_Json1KiBSha256
// measures kJsonBody1KiB, the same document without two members.
const std::string kJsonBody = R"({
  "amount": 12999,
  "currency": "eur",
  "customer": {"id": "cus_Nf8a2kQv7LpX3z", "email": "jane.doe@example.com",
               "name": "Jane \"JD\" Doe", "address": {"line1": "12 Rue de la Paix",
               "city": "Paris", "postal_code": "75002", "country": "FR"}},
  "description": "Order #A-10293 \u2014 spring collection",
  "metadata": {"order_id": "A-10293", "channel": "web", "campaign": "spring-2026",
               "client_request_id": "7f9c2ba4-e88f-4c2b-9a1e-3d5b6c7d8e9f"},
  "line_items": [
    {"sku": "TSHIRT-BLK-M", "quantity": 2, "unit_price": 24.50, "tax_rate": 0.2},
    {"sku": "JEANS-IND-32", "quantity": 1, "unit_price": 79.99, "tax_rate": 0.2},
    {"sku": "SOCKS-WHT-42", "quantity": 3, "unit_price": 4.00, "tax_rate": 0.2},
    {"sku": "GIFT-WRAP", "quantity": 1, "unit_price": 0, "tax_rate": 0}
  ],
  "payment_method_types": ["card", "sepa_debit", "paypal"],
  "capture_method": "automatic",
  "confirm": true,
  "setup_future_usage": null,
  "statement_descriptor": "EXAMPLE SHOP",
  "shipping": {"carrier": "La Poste", "tracking_number": null, "rate": 5.9e0,
               "address": {"line1": "12 Rue de la Paix", "city": "Paris", "country": "FR"}},
  "timestamp": 1767225600123
})";

// The target's size: kJsonBody without "shipping" and "statement_descriptor", 1 KiB
// give or take a few bytes (the benchmark reports the exact size).
const std::string kJsonBody1KiB = [] {
  std::string body = kJsonBody;
  // The two members are adjacent, just before "timestamp".
  const auto begin = body.find("  \"statement_descriptor\"");
  body.erase(begin, body.find("  \"timestamp\"") - begin);
  return body;
}();

const std::string kFormBody =
    "currency=eur&amount=12999&customer=cus_Nf8a2kQv7LpX3z&description=Order+%23A-10293"
    "&metadata%5Border_id%5D=A-10293&metadata%5Bchannel%5D=web&payment_method_types%5B%5D=card"
    "&payment_method_types%5B%5D=sepa_debit&capture_method=automatic&confirm=true"
    "&statement_descriptor=EXAMPLE+SHOP&shipping%5Bcarrier%5D=La+Poste";

struct Request {
  std::vector<idem::HeaderField> headers;
  const std::string* body;

  explicit Request(const char* content_type, const std::string& b) : body(&b) {
    headers = {{"Host", "api.example.com"},
               {"Content-Type", content_type},
               {"Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
               {"Authorization", "Bearer sk_test_abc"}};
  }
  idem::RequestView view() const {
    return {"POST", "/v1/payment_intents?expand=customer&expand=latest_charge", headers, *body,
            "10.0.0.1"};
  }
};

void run(benchmark::State& state, const idem::Fingerprinter& fingerprinter, const Request& r) {
  idem::RequestView view = r.view();
  for (auto _ : state) benchmark::DoNotOptimize(fingerprinter.fingerprint(view));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * r.body->size()));
  state.counters["body_bytes"] = static_cast<double>(r.body->size());
}

idem::Fingerprinter make(idem::FingerprintAlgorithm algorithm) {
  idem::FingerprintOptions options;
  options.algorithm = algorithm;
  return idem::Fingerprinter(options);
}

void BM_JsonSha256(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::sha256), Request("application/json", kJsonBody));
}
BENCHMARK(BM_JsonSha256);

void BM_Json1KiBSha256(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::sha256), Request("application/json", kJsonBody1KiB));
}
BENCHMARK(BM_Json1KiBSha256);

void BM_JsonXxh3(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::xxh3_128), Request("application/json", kJsonBody));
}
BENCHMARK(BM_JsonXxh3);

void BM_JsonSha256WithIgnore(benchmark::State& state) {
  idem::FingerprintOptions options;
  options.ignore = {"/timestamp", "/metadata/client_request_id"};
  run(state, idem::Fingerprinter(options), Request("application/json", kJsonBody));
}
BENCHMARK(BM_JsonSha256WithIgnore);

// Baseline: the same bytes hashed as they are (no canonicalisation).
void BM_RawSha256(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::sha256), Request("text/plain", kJsonBody));
}
BENCHMARK(BM_RawSha256);

void BM_RawXxh3(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::xxh3_128), Request("text/plain", kJsonBody));
}
BENCHMARK(BM_RawXxh3);

void BM_FormSha256(benchmark::State& state) {
  run(state, make(idem::FingerprintAlgorithm::sha256),
      Request("application/x-www-form-urlencoded", kFormBody));
}
BENCHMARK(BM_FormSha256);

// Canonicalisation alone, to separate it from hashing.
void BM_CanonicalizeJsonOnly(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(idem::canonicalize_json(kJsonBody));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kJsonBody.size()));
}
BENCHMARK(BM_CanonicalizeJsonOnly);

}  // namespace

BENCHMARK_MAIN();
