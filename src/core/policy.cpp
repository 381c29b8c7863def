#include "idem/policy.hpp"

#include <stdexcept>

namespace idem {

bool Policy::covers_method(std::string_view method) const noexcept {
  for (const auto& m : methods) {
    if (iequals(m, method)) return true;
  }
  return false;
}

PathPattern::PathPattern(std::string pattern) : text_(std::move(pattern)) {
  if (text_.empty() || text_.front() != '/') {
    throw std::invalid_argument("path: pattern '" + text_ + "' must start with '/'");
  }
  std::string_view rest = std::string_view(text_).substr(1);
  while (true) {
    auto slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    if (segment == "**") {
      if (slash != std::string_view::npos) {
        throw std::invalid_argument("path: '**' may only end the pattern '" + text_ + "'");
      }
      any_rest_ = true;
      break;
    }
    bool placeholder =
        segment == "*" || (segment.size() >= 2 && segment.front() == '{' && segment.back() == '}');
    segments_.emplace_back(placeholder ? std::string("*") : std::string(segment));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
}

bool PathPattern::matches(std::string_view path) const noexcept {
  if (path.empty() || path.front() != '/') return false;
  std::string_view rest = path.substr(1);
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (rest.data() == nullptr) return false;  // the path ran out of segments
    auto slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    if (segments_[i] == "*") {
      if (segment.empty()) return false;
    } else if (segment != segments_[i]) {
      return false;
    }
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  }
  // With "**" anything may follow; otherwise the path must end here.
  return any_rest_ || rest.data() == nullptr;
}

bool Route::matches(std::string_view method, std::string_view request_path) const noexcept {
  if (!methods.empty()) {
    bool any = false;
    for (const auto& m : methods) any = any || iequals(m, method);
    if (!any) return false;
  }
  return path.matches(request_path);
}

PolicySet::Match PolicySet::match(std::string_view method, std::string_view path) const noexcept {
  for (std::size_t i = 0; i < routes.size(); ++i) {
    if (routes[i].matches(method, path)) return {&routes[i].policy, routes[i].path.text(), i};
  }
  return {&defaults, {}, routes.size()};
}

}  // namespace idem
