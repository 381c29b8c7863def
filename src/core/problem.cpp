#include "idem/problem.hpp"

#include <string>

#include "idem/json_text.hpp"

namespace idem {

namespace {

struct ProblemInfo {
  std::string_view name;
  int status;
  std::string_view title;
};

constexpr ProblemInfo kProblems[] = {
    {"missing-key", 400, "Idempotency key required"},
    {"invalid-key", 400, "Invalid idempotency key"},
    {"duplicate-request", 409, "Duplicate request"},
    {"key-reused", 422, "Idempotency key reused for a different request"},
    {"request-in-flight", 409, "A request with this idempotency key is in progress"},
    {"body-too-large", 413, "Request body too large"},
    {"store-unavailable", 503, "Idempotency store unavailable"},
    {"response-not-stored", 502, "Original response was not stored"},
    {"outcome-unknown", 409, "Outcome of the original request is unknown"},
};

const ProblemInfo& info(ProblemType type) noexcept {
  return kProblems[static_cast<std::size_t>(type)];
}

}  // namespace

std::string_view problem_name(ProblemType type) noexcept { return info(type).name; }
int problem_status(ProblemType type) noexcept { return info(type).status; }
std::string_view problem_title(ProblemType type) noexcept { return info(type).title; }

Response Problem::to_response(std::string_view type_base) const {
  Response r;
  r.status = problem_status(type);
  std::string& b = r.body;
  b.reserve(160 + detail.size());
  b += "{\"type\":";
  append_json_string(b, std::string(type_base) + std::string(problem_name(type)));
  b += ",\"title\":";
  append_json_string(b, problem_title(type));
  b += ",\"status\":" + std::to_string(r.status);
  b += ",\"detail\":";
  append_json_string(b, detail);
  if (original_status) b += ",\"original_status\":" + std::to_string(*original_status);
  b += "}";
  r.headers.emplace_back("Content-Type", "application/problem+json");
  if (retry_after_seconds)
    r.headers.emplace_back("Retry-After", std::to_string(*retry_after_seconds));
  return r;
}

}  // namespace idem
