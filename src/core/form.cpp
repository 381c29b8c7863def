// Canonical `application/x-www-form-urlencoded` bodies and query strings: the parameters
// in a stable order, each one's bytes as sent.

#include <algorithm>
#include <tuple>
#include <vector>

#include "core/canonical_json.hpp"

namespace idem {

namespace detail {

namespace {

/// Buffers grown past this for one large body are not kept for the next request.
constexpr std::size_t kKeepCapacity = 1u << 20;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class FormSorter {
 public:
  void run(std::string_view form, std::string& out) {
    pairs_.clear();
    decoded_.clear();
    // Decoded text is never longer than the form, so views into it stay valid.
    decoded_.reserve(form.size());
    for (std::size_t begin = 0; begin <= form.size();) {
      std::size_t end = std::min(form.find('&', begin), form.size());
      std::string_view raw = form.substr(begin, end - begin);
      begin = end + 1;
      if (raw.empty()) continue;  // "a=1&&b=2" and a trailing '&' carry nothing
      std::size_t eq = raw.find('=');
      std::string_view name = raw.substr(0, eq);
      std::string_view value =
          eq == std::string_view::npos ? std::string_view{} : raw.substr(eq + 1);
      pairs_.push_back({raw, decode(name), decode(value)});
    }
    // Compared as the application will see them (decoded), so "a=%31&b=2" and "b=2&a=1"
    // sort alike; the raw pair breaks ties so that the order never depends on the input.
    std::sort(pairs_.begin(), pairs_.end(), [](const Pair& a, const Pair& b) {
      return std::tie(a.name, a.value, a.raw) < std::tie(b.name, b.value, b.raw);
    });
    out.clear();
    out.reserve(form.size());
    for (const auto& pair : pairs_) {
      if (!out.empty()) out.push_back('&');
      out.append(pair.raw);
    }
  }

 private:
  struct Pair {
    std::string_view raw;    // as sent: what is emitted
    std::string_view name;   // decoded: what is compared
    std::string_view value;  // decoded
  };

  /// Percent-decodes (and turns '+' into ' ') for comparison. A '%' without two hex digits
  /// stays as it is, as lenient servers do.
  std::string_view decode(std::string_view s) {
    bool plain = true;
    for (char c : s) plain = plain && c != '%' && c != '+';
    if (plain) return s;
    std::size_t begin = decoded_.size();
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        decoded_.push_back(' ');
      } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
                 hex_value(s[i + 2]) >= 0) {
        decoded_.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
        i += 2;
      } else {
        decoded_.push_back(s[i]);
      }
    }
    return std::string_view(decoded_).substr(begin);
  }

  std::vector<Pair> pairs_;
  std::string decoded_;
};

}  // namespace

void canonicalize_form_to(std::string_view form, std::string& out) {
  thread_local FormSorter reused;
  if (form.size() > kKeepCapacity) {
    FormSorter once;
    once.run(form, out);
    return;
  }
  reused.run(form, out);
}

}  // namespace detail

std::string canonicalize_form(std::string_view form) {
  std::string out;
  detail::canonicalize_form_to(form, out);
  return out;
}

}  // namespace idem
