#include "idem/status_set.hpp"

#include <charconv>
#include <stdexcept>
#include <string>

namespace idem {

StatusSet::StatusSet() {
  add(200, 499);
  for (int s : {408, 409, 425, 429}) remove(s, s);
}

void StatusSet::add(int lo, int hi) {
  for (int s = lo; s <= hi; ++s) bits_.set(static_cast<std::size_t>(s));
}

void StatusSet::remove(int lo, int hi) {
  for (int s = lo; s <= hi; ++s) bits_.reset(static_cast<std::size_t>(s));
}

namespace {

int parse_status(std::string_view text, std::string_view entry) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < 100 || value > 599) {
    throw std::invalid_argument("store_status: bad entry '" + std::string(entry) +
                                "' (use 200-499, 2xx, 404 or !408)");
  }
  return value;
}

}  // namespace

StatusSet StatusSet::parse(std::string_view setting) {
  StatusSet set = none();
  std::size_t pos = 0;
  while (pos <= setting.size()) {
    std::size_t comma = setting.find(',', pos);
    std::string_view entry =
        setting.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? setting.size() + 1 : comma + 1;
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    if (entry.empty()) continue;
    bool exclude = entry.front() == '!';
    std::string_view body = exclude ? entry.substr(1) : entry;
    int lo = 0, hi = 0;
    if (body.size() == 3 && (body[1] == 'x' || body[1] == 'X') &&
        (body[2] == 'x' || body[2] == 'X')) {
      if (body[0] < '1' || body[0] > '5') {
        throw std::invalid_argument("store_status: bad entry '" + std::string(entry) + "'");
      }
      lo = (body[0] - '0') * 100;
      hi = lo + 99;
    } else if (auto dash = body.find('-'); dash != std::string_view::npos) {
      lo = parse_status(body.substr(0, dash), entry);
      hi = parse_status(body.substr(dash + 1), entry);
      if (lo > hi) {
        throw std::invalid_argument("store_status: empty range '" + std::string(entry) + "'");
      }
    } else {
      lo = hi = parse_status(body, entry);
    }
    if (exclude) {
      set.remove(lo, hi);
    } else {
      set.add(lo, hi);
    }
  }
  return set;
}

}  // namespace idem
