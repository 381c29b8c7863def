#pragma once

#include <bitset>
#include <string>
#include <string_view>

namespace idem {

/// Which response statuses are stored (`store_status`). Default: 200-499 except 408, 409,
/// 425 and 429.
class StatusSet {
 public:
  StatusSet();  ///< the default set
  /// Parses a list such as "200-499,!408,!409,!425,!429" or "2xx,404". Entries apply in
  /// order; `!` removes. Throws std::invalid_argument naming the bad entry (start-up).
  static StatusSet parse(std::string_view setting);
  static StatusSet none() { return StatusSet(std::bitset<600>{}); }

  bool contains(int status) const noexcept {
    return status >= 0 && status < 600 && bits_.test(static_cast<std::size_t>(status));
  }
  void add(int lo, int hi);
  void remove(int lo, int hi);

 private:
  explicit StatusSet(std::bitset<600> bits) : bits_(bits) {}
  std::bitset<600> bits_;
};

}  // namespace idem
