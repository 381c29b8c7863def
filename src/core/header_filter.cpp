#include "core/header_filter.hpp"

#include "idem/request.hpp"

namespace idem::detail {

bool is_hop_by_hop(std::string_view name) noexcept {
  for (std::string_view h :
       {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding",
        "Upgrade", "Proxy-Authenticate", "Proxy-Authorization"}) {
    if (iequals(h, name)) return true;
  }
  return false;
}

namespace {

bool named_by_connection(std::string_view name,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [n, v] : headers) {
    if (!iequals(n, "Connection")) continue;
    std::string_view list = v;
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string_view token = list.substr(0, comma);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      if (iequals(token, name)) return true;
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
  }
  return false;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> replayable_headers(
    const std::vector<std::pair<std::string, std::string>>& headers,
    const std::vector<std::string>& exclude, std::string_view replay_header) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(headers.size());
  for (const auto& h : headers) {
    const std::string& name = h.first;
    if (is_hop_by_hop(name) || iequals(name, "Date") || iequals(name, "Content-Length") ||
        iequals(name, replay_header)) {
      continue;
    }
    bool excluded = false;
    for (const auto& e : exclude) excluded = excluded || iequals(e, name);
    if (excluded || named_by_connection(name, headers)) continue;
    out.push_back(h);
  }
  return out;
}

}  // namespace idem::detail
