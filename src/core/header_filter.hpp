#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idem::detail {

/// Hop-by-hop per RFC 9110 section 7.6.1: these describe one connection, not the message.
bool is_hop_by_hop(std::string_view name) noexcept;

/// The headers of an upstream response that a replay may repeat: end-to-end headers
/// only, without the ones `Connection` names, without `Date` (a replay gets a fresh one),
/// without `Content-Length` (the sender frames the body), without `exclude`, and without
/// `replay_header`: only idem marks a replay, whatever the upstream sent.
std::vector<std::pair<std::string, std::string>> replayable_headers(
    const std::vector<std::pair<std::string, std::string>>& headers,
    const std::vector<std::string>& exclude, std::string_view replay_header);

}  // namespace idem::detail
