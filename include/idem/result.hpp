#pragma once

#include <string>
#include <utility>
#include <variant>

namespace idem {

/// Why an operation on a request path failed. Protocol outcomes (a replay, a conflict,
/// a stale fencing token) are values, not errors; these are the failures.
enum class Errc {
  store_unavailable,  ///< the store cannot be reached or failed; answer 503
  store_full,         ///< the store's record or byte limit is reached; answer 503
  corrupt_record,     ///< stored bytes failed to decode
  invalid_argument,   ///< a caller passed something the operation cannot take
  timeout,            ///< the store did not answer in time
};

struct Error {
  Errc code;
  std::string message;
};

/// A value or an Error. A subset of std::expected's members, so that a later switch to
/// std::expected is one alias.
template <class T>
class [[nodiscard]] Result {
 public:
  Result() = delete;
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }

 private:
  Error error_{Errc::invalid_argument, {}};
  bool ok_ = true;
};

}  // namespace idem
