#pragma once

// RESP (the Redis protocol) in both directions: commands are encoded here, replies are
// parsed by hiredis's reader (redisReader), which is the tested part of hiredis and works the
// same in 0.14 and 1.x. Only the transport is ours (Boost.Asio).

#include <hiredis/hiredis.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "idem/result.hpp"

namespace idem::redis {

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
/// An owned hiredis reply. Never null once handed to a caller.
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

/// Appends one command in RESP form ("*N\r\n$len\r\narg\r\n..."). Arguments are binary safe.
class Command {
 public:
  Command() = default;
  Command(std::initializer_list<std::string_view> args) {
    begin(args.size());
    for (auto a : args) arg(a);
  }
  /// Starts a command of `argc` arguments; call arg() exactly that many times.
  void begin(std::size_t argc) {
    wire_ += '*';
    wire_ += std::to_string(argc);
    wire_ += "\r\n";
  }
  void arg(std::string_view a) {
    wire_ += '$';
    wire_ += std::to_string(a.size());
    wire_ += "\r\n";
    wire_.append(a);
    wire_ += "\r\n";
  }
  void arg(std::int64_t n) { arg(std::string_view(std::to_string(n))); }
  void reserve(std::size_t bytes) { wire_.reserve(bytes); }
  /// Appends a whole other command, for a pipelined pair sent as one unit.
  void append(const Command& other) { wire_ += other.wire_; }

  const std::string& wire() const noexcept { return wire_; }
  std::string take() && { return std::move(wire_); }

 private:
  std::string wire_;
};

inline std::string_view as_string(const redisReply& r) {
  return std::string_view(r.str ? r.str : "", r.str ? r.len : 0);
}

inline bool is_error(const redisReply& r) { return r.type == REDIS_REPLY_ERROR; }

/// Redis error replies ("-ERR ...", "-NOSCRIPT ...") as store errors. Scripts' own errors
/// are also here; none of them is a protocol outcome.
inline Error error_of(const redisReply& r) {
  return Error{Errc::store_unavailable, "redis: " + std::string(as_string(r))};
}

}  // namespace idem::redis
