#pragma once

// A connection that comes back by itself: after a failure it reconnects with capped
// exponential backoff (with jitter, so that many gateways do not reconnect in step after a
// Redis restart), replaying its handshake (AUTH, SELECT, SCRIPT LOAD) each time.

#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "stores/redis/connection.hpp"

namespace idem::redis {

struct LinkOptions {
  Endpoint endpoint;
  Duration backoff_min{50};
  Duration backoff_max{1000};
  std::vector<std::string> handshake;
};

class Link : public std::enable_shared_from_this<Link> {
 public:
  Link(Strand strand, LinkOptions options);

  /// Starts connecting; all of Link runs on the strand.
  void start();
  /// Closes and stops reconnecting; pending commands fail with `why`.
  void stop(const Error& why);

  /// Drops the current connection as failed; it is replaced after the usual backoff.
  void reset(const Error& why) {
    if (conn_) conn_->abort(why);
  }
  /// The open connection, or null while (re)connecting.
  Connection* ready() const noexcept { return conn_ && conn_->open() ? conn_.get() : nullptr; }
  /// Why the last attempt or connection failed, for error messages.
  const Error& last_error() const noexcept { return last_error_; }

  /// Called on the strand each time a connection is up (after its handshake).
  void on_ready(std::function<void(Connection&)> f) { on_ready_ = std::move(f); }
  /// Called on the strand each time a connection (or an attempt) is lost.
  void on_down(std::function<void(const Error&)> f) { on_down_ = std::move(f); }
  /// Replies that match no command (pub/sub messages), set on every new connection.
  void on_push(std::function<void(Reply)> f) { on_push_ = std::move(f); }

 private:
  void connect();
  void retry_later(const Error& why);

  Strand strand_;
  LinkOptions options_;
  boost::asio::steady_timer retry_timer_;
  std::shared_ptr<Connection> conn_;
  Duration backoff_;
  Error last_error_{Errc::store_unavailable, "redis: not connected yet"};
  bool stopped_ = false;
  std::minstd_rand jitter_;
  std::function<void(Connection&)> on_ready_;
  std::function<void(const Error&)> on_down_;
  std::function<void(Reply)> on_push_;
};

}  // namespace idem::redis
