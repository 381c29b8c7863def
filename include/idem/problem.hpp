#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "idem/request.hpp"

namespace idem {

/// The problem types of contract section 3, each with its fixed status.
enum class ProblemType {
  missing_key,          // 400
  invalid_key,          // 400
  duplicate_request,    // 409
  key_reused,           // 422
  request_in_flight,    // 409
  body_too_large,       // 413
  store_unavailable,    // 503
  response_not_stored,  // 502
  outcome_unknown,      // 409
};

std::string_view problem_name(ProblemType type) noexcept;  ///< e.g. "key-reused"
int problem_status(ProblemType type) noexcept;
std::string_view problem_title(ProblemType type) noexcept;

/// An RFC 9457 problem that idem itself answers with. Never carries the request body or a
/// stored response.
struct Problem {
  ProblemType type;
  std::string detail;
  std::optional<int> original_status;      ///< response-not-stored
  std::optional<int> retry_after_seconds;  ///< request-in-flight

  /// `application/problem+json` response, `type` = base + name.
  Response to_response(std::string_view type_base = "urn:idem:problem:") const;
};

}  // namespace idem
