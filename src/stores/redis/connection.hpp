#pragma once

// One pipelined connection to Redis: commands are written as soon as they are sent (queued
// writes are coalesced into one), and replies are matched to them first in, first out, as
// Redis answers in order. Everything runs on one strand: no locks inside.

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "idem/clock.hpp"
#include "idem/result.hpp"
#include "stores/redis/resp.hpp"

namespace idem::redis {

using Strand = boost::asio::strand<boost::asio::any_io_executor>;
/// Called on the strand with the reply (which may be a Redis error reply) or a transport
/// error: Errc::timeout when not answered in time, Errc::store_unavailable otherwise.
using ReplyHandler = std::function<void(Result<Reply>)>;

struct Endpoint {
  std::string host;
  std::uint16_t port = 6379;
  Duration connect_timeout{};
  Duration command_timeout{};
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  Connection(Strand strand, Endpoint endpoint);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Resolves, connects and sends `handshake` (AUTH, SELECT, SCRIPT LOAD...) pipelined;
  /// `ready` is called once: ok when every handshake reply was not an error, else the first
  /// failure (and the connection is closed). All within connect_timeout.
  void start(std::vector<std::string> handshake, std::function<void(Result<void>)> ready);

  /// Sends one command; `done` is called exactly once. On a connection that is not open,
  /// `done` is called before send() returns, with store_unavailable.
  void send(std::string_view wire, ReplyHandler done);
  /// Sends without expecting a matched reply: for SUBSCRIBE on a push connection.
  void send_unmatched(std::string_view wire);

  /// Replies that match no sent command go here (pub/sub messages). Without a handler such
  /// a reply is a protocol error.
  void on_push(std::function<void(Reply)> handler) { push_ = std::move(handler); }
  /// Called once when the connection closes for any reason other than close().
  void on_lost(std::function<void(const Error&)> handler) { lost_ = std::move(handler); }

  /// Fails every pending command with `why` and closes, without calling on_lost.
  void close(const Error& why);
  /// The same, but as a failure: on_lost is called, so the owner reconnects.
  void abort(const Error& why) { fail(why); }

  bool open() const noexcept { return state_ == State::ready; }
  std::size_t in_flight() const noexcept { return pending_.size(); }

 private:
  enum class State { idle, connecting, handshake, ready, closed };
  struct Pending {
    ReplyHandler done;
    SteadyTime deadline;
  };

  void on_connected();
  void enqueue(std::string_view wire, ReplyHandler done);
  void read();
  void on_read(std::size_t n);
  void dispatch(Reply reply);
  void flush();
  void arm_timer();
  void on_timer();
  void fail(const Error& why);

  Strand strand_;
  Endpoint endpoint_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer timer_;  ///< the oldest command's deadline
  boost::asio::steady_timer connect_timer_;
  bool timer_armed_ = false;
  State state_ = State::idle;
  redisReader* reader_;
  std::deque<Pending> pending_;
  std::string out_;      ///< written next
  std::string writing_;  ///< being written now
  bool writing_now_ = false;
  std::array<char, 16 * 1024> in_{};
  std::function<void(Result<void>)> ready_;
  std::size_t handshake_left_ = 0;
  std::function<void(Reply)> push_;
  std::function<void(const Error&)> lost_;
};

}  // namespace idem::redis
