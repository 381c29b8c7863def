#pragma once

#include <string>
#include <string_view>

namespace idem {

/// Appends `s` as a JSON string literal: quotes, backslashes and control characters
/// (and DEL) escaped, every other byte as it is. For the small JSON documents idem writes
/// itself: problems, log lines, admin answers.
void append_json_string(std::string& out, std::string_view s);

}  // namespace idem
